"""``baseguard audit --uses BASE --fixable CRITICAL``: the running workloads whose base
carries fixable criticals, read from the scans attached to their images. API double for
the cluster, the real registry for images and scans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.kube_api import ApiDouble
from support.kube_objects import pod
from support.registry import RegistryProcess
from support.scans import cosign_attest, findings, push_app, trivy_report, vuln_statement

from controller.cli.commands import audit as audit_cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    import argparse

    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    code = audit_cli.run(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_uses_with_fixable_lists_only_workloads_whose_base_has_them(
    double: ApiDouble, kubeconfig: Path, registry: RegistryProcess, unique_repo: str,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _, patched = push_app(registry, f"{unique_repo}/a")
    clean = trivy_report(patched.reference, [], created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, patched, [vuln_statement(patched, clean, finished="2026-12-06T10:00:00Z")]
    )
    _, exposed = push_app(registry, f"{unique_repo}/b")
    report = trivy_report(exposed.reference, findings(exposed), created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, exposed, [vuln_statement(exposed, report, finished="2026-12-06T10:00:00Z")]
    )
    double.apply(pod("patched", "team-a", patched.reference))
    double.apply(pod("exposed", "team-b", exposed.reference))
    config = tmp_path / "r.yaml"
    config.write_text(f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    base = f"{registry.host}/{unique_repo}/*/python:3.12-slim"
    common = (
        "--kubeconfig",
        str(kubeconfig),
        "--registry-config",
        str(config),
        "--now",
        "2026-12-07",
    )
    code, out, _ = run(capsys, *common, "--uses", base, "--format", "json")
    assert code == 1 and json.loads(out)["count"] == 2  # both run on it
    code, out, _ = run(capsys, *common, "--uses", base, "--fixable", "CRITICAL", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["count"] == 1, doc
    (found,) = doc["workloads"]
    assert (found["namespace"], found["name"]) == ("team-b", "exposed")
    assert found["fixable"] == ["CVE-2024-5535 libssl3 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1"]
    code, out, _ = run(capsys, *common, "--uses", base, "--fixable", "CRITICAL")
    assert "fixable in the base: CVE-2024-5535 libssl3 3.0.11-1~deb12u2 -> 3.0.15-1~deb12u1" in out
    assert "1 workload (1 image(s)) of 2 audited use" in out


def test_fixable_without_uses_is_refused(
    kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--kubeconfig", str(kubeconfig), "--fixable", "CRITICAL")
    assert code == 2 and "--fixable lists the workloads --uses finds" in err
