"""Scan evidence read from the real docker-registry and judged through ``baseguard check``.

Each test pushes a base (two layers) and an application built on it (one more
layer, the base claimed by annotation), then what scanners leave behind: cosign
vuln attestations (DSSE at the ``.att`` tag), Trivy JSON reports as OCI
artifacts, OpenVEX documents. What is asserted is what ``check`` prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.images import layer
from support.registry import RegistryProcess
from support.scans import (
    APP_L,
    BASE_L1,
    BASE_L2,
    NEW_BASE_L2,
    TRIVY,
    VULN,
    cosign_attest,
    findings,
    openvex,
    push_app,
    push_artifact,
    trivy_report,
    vuln_statement,
)

from controller.cli.main import main

NOW = "2026-12-07"


def write_inputs(tmp_path: Path, registry: RegistryProcess, image: str, evidence: str) -> list[str]:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: shop, namespace: shop}\n"
        f"spec: {{containers: [{{name: app, image: '{image}'}}]}}\n"
    )
    (tmp_path / "policy.yaml").write_text(
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\n"
        f"metadata: {{name: patched}}\nspec: {{mode: Enforce, evidence: {evidence}}}\n"
    )
    (tmp_path / "r.yaml").write_text(
        f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n'
    )
    return [
        "check", str(tmp_path / "pod.yaml"), "-p", str(tmp_path / "policy.yaml"),
        "--registry-config", str(tmp_path / "r.yaml"), "--now", NOW, "--format", "json",
    ]  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[dict[str, object]]]:
    code = main(argv)
    out, _ = capsys.readouterr()
    (result,) = json.loads(out)["results"]
    return code, result["violations"]


def by_rule(violations: list[dict[str, object]], rule: str) -> list[str]:
    return [str(v["message"]) for v in violations if v["rule"] == rule]


def test_fixable_criticals_in_the_base_are_told_apart_from_the_applications(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app), created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")]
    )
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL, HIGH]}")
    code, violations = run(capsys, argv)
    assert code == 1
    fixable = by_rule(violations, "fixable-vulnerabilities")
    assert len(fixable) == 2, violations
    in_base = next(m for m in fixable if "in its base's layers" in m)
    assert "1 fixable CRITICAL/HIGH vulnerability in its base's layers" in in_base
    assert "CRITICAL CVE-2024-5535 libssl3 3.0.11-1~deb12u2, fixed in 3.0.15-1~deb12u1" in in_base
    assert "CVE-2024-0001" not in in_base  # no fixed version: not fixable
    assert (
        "python:3.12-slim has not been rebuilt since; update libssl3 to 3.0.15-1~deb12u1" in in_base
    )
    in_app = next(m for m in fixable if "own layers" in m)
    assert "HIGH CVE-2024-6345 setuptools 65.5.1, fixed in 70.0.0" in in_app and in_app.endswith(
        "update setuptools to 70.0.0"
    )
    # scope: Base judges only what the base's layers carry
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL], scope: Base}")
    code, violations = run(capsys, argv)
    assert [m for m in by_rule(violations, "fixable-vulnerabilities")] == [
        in_base.replace("CRITICAL/HIGH", "CRITICAL").replace("(CRITICAL CVE", "(CVE")
    ]


def test_a_rebuilt_base_whose_scan_is_clean_is_the_fix(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app)[:1], created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")]
    )
    # python:3.12-slim is rebuilt with the fixed openssl, and its scan is clean of it
    rebuilt = registry.pusher.push_image(
        f"{unique_repo}/python", "3.12-slim", [BASE_L1, NEW_BASE_L2]
    )
    clean = trivy_report(rebuilt.reference, [], created="2026-12-06T11:00:00Z")
    push_artifact(
        registry.pusher,
        rebuilt,
        [
            (
                TRIVY,
                json.dumps(clean).encode(),
                {"org.opencontainers.image.created": "2026-12-06T11:00:00Z"},
            )
        ],
    )
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL]}")
    code, violations = run(capsys, argv)
    assert code == 1
    (message,) = by_rule(violations, "fixable-vulnerabilities")
    assert "; the base was rebuilt since and scans clean of them; rebuild on the current" in message
    assert message.endswith(
        f"rebuild on the current {registry.host}/{unique_repo}/python:3.12-slim"
    )
    assert (
        by_rule(violations, "stale-base") == []
    )  # no bases section: stale-base is not this policy's


def test_a_rebuilt_base_that_still_has_them_says_update_the_package(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app)[:1], created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")]
    )
    rebuilt = registry.pusher.push_image(
        f"{unique_repo}/python", "3.12-slim", [BASE_L1, layer({"x": "y"})]
    )
    still = trivy_report(rebuilt.reference, findings(app)[:1], created="2026-12-06T11:00:00Z")
    push_artifact(registry.pusher, rebuilt, [(TRIVY, json.dumps(still).encode(), {})])
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL]}")
    _, violations = run(capsys, argv)
    (message,) = by_rule(violations, "fixable-vulnerabilities")
    assert "python:3.12-slim still has 1 of them; update libssl3 to 3.0.15-1~deb12u1" in message


def test_vex_not_affected_suppresses_and_a_trivy_artifact_is_read(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app), created="2026-12-06T10:00:00Z")
    other = openvex(app, ["CVE-2024-6345"], product="pkg:oci/other@sha256%3A" + "1" * 64)
    push_artifact(registry.pusher, app, [
        (TRIVY, json.dumps(report).encode(), {"org.opencontainers.image.created": "2026-12-06T10:00:00Z"}),
        ("application/vnd.openvex+json", openvex(app, ["CVE-2024-5535"]), {}),
        ("application/vnd.openvex+json", other, {}),  # about another image: suppresses nothing here
        ("application/spdx+json", b"{}", {}),  # an SBOM: never fetched
    ])  # fmt: skip
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL, HIGH]}")
    code, violations = run(capsys, argv)
    assert code == 1
    (message,) = by_rule(violations, "fixable-vulnerabilities")
    assert "CVE-2024-6345" in message and "own layers" in message


def test_missing_and_stale_scans(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    argv = write_inputs(
        tmp_path, registry, app.reference, "{maxScanAge: 7d, denyFixable: [CRITICAL]}"
    )
    code, violations = run(capsys, argv)
    assert code == 1
    (missing,) = by_rule(violations, "scan-missing")
    assert (
        "has no vulnerability scan attached; attach a scan with cosign attest --type vuln"
        in missing
    )
    report = trivy_report(app.reference, [], created="2026-11-01T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-11-01T10:00:00Z")]
    )
    code, violations = run(capsys, argv)
    assert code == 1
    assert by_rule(violations, "scan-missing") == []
    (stale,) = by_rule(violations, "scan-stale")
    assert "finished 2026-11-01 (36d ago), older than evidence.maxScanAge (7d)" in stale
    # a fresh scan with nothing fixable: allowed
    fresh = trivy_report(app.reference, [], created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, fresh, finished="2026-12-06T10:00:00Z")]
    )
    code, violations = run(capsys, argv)
    assert (code, violations) == (0, [])


def test_the_predicate_without_https_and_a_review_out_of_requests(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app)[:1], created="2026-12-06T10:00:00Z")
    statement = vuln_statement(app, report, finished="2026-12-06T10:00:00Z")
    statement["predicateType"] = VULN.removeprefix("https://")
    cosign_attest(registry.pusher, app, [statement])
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL]}")
    code, violations = run(capsys, argv)
    assert code == 1 and len(by_rule(violations, "fixable-vulnerabilities")) == 1


def test_scans_attached_to_the_index_speak_for_the_platform_they_scanned(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cosign attest`` on a multi-arch tag attaches to the index: each report is used for the
    platform whose layers it records (Trivy's ``Metadata.DiffIDs``), never for the other."""
    pusher = registry.pusher
    arm_l1, arm_l2, arm_app = (layer({"arch": f"arm64 {i}"}) for i in range(3))
    base_amd = pusher.push_image(f"{unique_repo}/python", None, [BASE_L1, BASE_L2])
    base_arm = pusher.push_image(f"{unique_repo}/python", None, [arm_l1, arm_l2], arch="arm64")
    base = pusher.push_index(
        f"{unique_repo}/python", "3.12-slim", [(base_amd, "linux/amd64"), (base_arm, "linux/arm64")]
    )
    ann = {"org.opencontainers.image.base.name": f"{registry.host}/{unique_repo}/python:3.12-slim",
           "org.opencontainers.image.base.digest": base.digest}  # fmt: skip
    amd = pusher.push_image(f"{unique_repo}/shop", None, [BASE_L1, BASE_L2, APP_L], annotations=ann)
    arm = pusher.push_image(
        f"{unique_repo}/shop", None, [arm_l1, arm_l2, arm_app], annotations=ann, arch="arm64"
    )
    app = pusher.push_index(
        f"{unique_repo}/shop", "1.0.0", [(amd, "linux/amd64"), (arm, "linux/arm64")]
    )
    amd_report = trivy_report(app.reference, findings(app)[:1], created="2026-12-06T10:00:00Z")
    amd_report["Metadata"]["DiffIDs"] = list(amd.diff_ids)
    arm_report = trivy_report(app.reference, [], created="2026-12-06T10:00:00Z")
    arm_report["Metadata"]["DiffIDs"] = list(arm.diff_ids)
    cosign_attest(pusher, app, [
        vuln_statement(app, amd_report, finished="2026-12-06T10:00:00Z"),
        vuln_statement(app, arm_report, finished="2026-12-06T10:00:00Z"),
    ])  # fmt: skip
    argv = write_inputs(
        tmp_path, registry, f"{registry.host}/{unique_repo}/shop:1.0.0", "{denyFixable: [CRITICAL]}"
    )
    code, violations = run(capsys, argv)
    assert code == 1
    (message,) = by_rule(violations, "fixable-vulnerabilities")
    assert (
        "shop:1.0.0 (linux/amd64) has 1 fixable CRITICAL vulnerability in its base's layers"
        in message
    )
    assert [v for v in violations if v["rule"] != "fixable-vulnerabilities"] == []


def test_a_dockerfile_from_a_base_with_fixable_criticals(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For a Dockerfile the FROM image is the base: all it carries is the base's."""
    base, _ = push_app(registry, unique_repo)
    report = trivy_report(base.reference, findings(base)[:1], created="2026-12-06T10:00:00Z")
    push_artifact(registry.pusher, base, [(TRIVY, json.dumps(report).encode(), {})])
    argv = write_inputs(tmp_path, registry, "unused", "{denyFixable: [CRITICAL], scope: Base}")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {registry.host}/{unique_repo}/python:3.12-slim\nRUN true\n"
    )
    argv[1] = str(tmp_path / "Dockerfile")
    code, violations = run(capsys, argv)
    assert code == 1
    (message,) = by_rule(violations, "fixable-vulnerabilities")
    assert "base image" in message and "carries 1 fixable CRITICAL vulnerability" in message
    assert message.endswith("update libssl3 to 3.0.15-1~deb12u1")


def test_a_scan_the_reader_cannot_judge_is_named_and_the_image_is_unscanned(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    grype = vuln_statement(app, {"matches": []}, finished="2026-12-06T10:00:00Z")
    grype["predicate"]["scanner"].update(uri="pkg:github/anchore/grype@0.80.0", version="0.80.0")
    cosign_attest(registry.pusher, app, [grype])
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL]}")
    code, violations = run(capsys, argv)
    assert code == 1
    (missing,) = by_rule(violations, "scan-missing")
    assert (
        "found but not used:" in missing
        and "grype 0.80.0: scanner.result is not a Trivy JSON report" in missing
    )
    assert missing.endswith("; attach a scan with cosign attest --type vuln")


def test_the_rules_follow_the_mode_and_the_policys_exceptions(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app)[:1], created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")]
    )
    argv = write_inputs(tmp_path, registry, app.reference, "{denyFixable: [CRITICAL]}")
    policy = tmp_path / "policy.yaml"
    enforce = policy.read_text()
    policy.write_text(enforce.replace("mode: Enforce", "mode: Warn"))
    code, violations = run(capsys, argv)
    assert code == 0 and [(v["rule"], v["action"]) for v in violations] == [
        ("fixable-vulnerabilities", "warn")
    ]
    waiver = (
        f", exceptions: [{{images: ['{registry.host}/{unique_repo}/shop'], until: '2026-12-31', "
        "reason: 'SEC-42: base rebuild scheduled'}]"
    )
    policy.write_text(enforce.replace("mode: Enforce", "mode: Enforce" + waiver))
    code, violations = run(capsys, argv)
    (waived,) = violations
    assert code == 0 and (waived["rule"], waived["action"]) == ("fixable-vulnerabilities", "allow")
    assert "SEC-42" in str(waived.get("waived")), waived
