"""``baseguard audit`` against the API double with a kubeconfig: table, JSON, ``--uses``, exit codes;
and the argument checks of ``baseguard run``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from support.kube_api import ApiDouble
from support.kube_objects import NO_LATEST, cluster_policy, ns_policy, pod

from controller.cli.commands import audit as audit_cli
from controller.cli.commands import run
from controller.errors import InputError


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def seed(double: ApiDouble) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    double.apply(
        ns_policy(
            "hub-only", "team-b", {"mode": "Warn", "registries": {"allowed": ["docker.io/*"]}}
        )
    )
    double.apply(cluster_policy("broken", {"pinning": {"require": "Sometimes"}}))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:latest"}]}}},
    }
    double.apply(deployment)
    double.apply(pod("tool", "team-b", "ghcr.io/acme/tool:1.0.0"))
    double.apply(pod("debian-box", "team-b", "debian:buster"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = audit_cli.run(cli(*argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_names_what_would_be_denied(
    double: ApiDouble, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(double)
    code, out, err = run_cli(capsys, "--kubeconfig", str(kubeconfig), "--offline")
    assert code == 1
    assert "DENY  Deployment/team-a/web" in out
    assert "disallowed-tag [no-latest] deny:" in out
    assert "WARN  Pod/team-b/tool" in out
    assert "3 object(s) audited" in out
    assert "ClusterBaseImagePolicy no-latest: 3 object(s), 1 violating" in out
    assert "invalid policy, not applied: ClusterBaseImagePolicy broken: spec.pinning.require" in err
    writes = [r for r in double.requests if r.method != "GET"]
    assert writes == []  # read-only


def test_the_table_wraps_at_width_and_not_in_a_pipe(
    double: ApiDouble, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(double)
    _, whole, _ = run_cli(capsys, "--kubeconfig", str(kubeconfig), "--offline")
    assert max(len(line) for line in whole.splitlines()) > 100  # a pipe: one line per finding
    code, wrapped, _ = run_cli(capsys, "--kubeconfig", str(kubeconfig), "--offline", "--width", "60")
    assert code == 1
    assert all(len(line) <= 60 or " " not in line.strip() for line in wrapped.splitlines()), wrapped
    assert wrapped.split() == whole.split()
    code, _, err = run_cli(capsys, "--kubeconfig", str(kubeconfig), "--width", "60", "--format", "json")
    assert code == 2 and "--width shapes the report's text; --format json is never wrapped" in err


def test_json_and_one_namespace(
    double: ApiDouble, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(double)
    code, out, _ = run_cli(
        capsys, "--kubeconfig", str(kubeconfig), "--offline", "-n", "team-b", "--format", "json"
    )
    doc: dict[str, Any] = json.loads(out)
    assert code == 0  # only a warning in team-b
    assert {(r["kind"], r["name"], r["verdict"]) for r in doc["results"]} == {
        ("Pod", "tool", "warn"),
        ("Pod", "debian-box", "allow"),
    }
    assert doc["summary"] == {"deny": 0, "warn": 1, "audit": 0, "allow": 1}
    assert doc["policies"]["BaseImagePolicy/team-b/hub-only"] == {"objects": 2, "violations": 1}
    assert doc["policyErrors"][0].startswith("ClusterBaseImagePolicy broken: spec.pinning.require")
    assert {r.path for r in double.recorded("GET") if "pods" in r.path} == {
        "/api/v1/namespaces/team-b/pods"
    }


def test_uses_lists_the_workloads_running_a_base(
    double: ApiDouble, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(double)
    code, out, _ = run_cli(
        capsys,
        "--kubeconfig",
        str(kubeconfig),
        "--offline",
        "--uses",
        "debian:buster",
        "--format",
        "json",
    )
    doc = json.loads(out)
    assert code == 1
    assert doc["count"] == 1
    assert doc["workloads"] == [
        {
            "kind": "Pod",
            "namespace": "team-b",
            "name": "debian-box",
            "container": "app",
            "image": "debian:buster",
            "depth": 0,
            "matched": ["docker.io/library/debian:buster"],
        }
    ]
    code, out, _ = run_cli(capsys, "--kubeconfig", str(kubeconfig), "--offline", "--uses", "alpine")
    assert code == 0
    assert "0 workloads (0 image(s)) of 3 audited use alpine" in out


def test_an_unreachable_cluster_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.registry import free_port

    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    code, _, err = run_cli(capsys, "--kubeconfig", str(config), "--offline")
    assert code == 2
    assert "baseguard audit: the cluster did not answer" in err


def test_a_missing_kubeconfig_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--kubeconfig", str(tmp_path / "nope"), "--offline")
    assert code == 2
    assert "cannot load the Kubernetes connection settings" in err


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "needs a serving certificate"),
        (("--tls-cert", "c"), "go together"),
        (("--tls-secret", "s", "--tls-cert", "c", "--tls-key", "k"), "not both"),
        (("--tls-cert", "c", "--tls-key", "k", "--manage-certificates"), "needs --tls-secret"),
        (
            ("--tls-secret", "s", "--cert-validity", "1d", "--cert-renew-before", "2d"),
            "--cert-renew-before",
        ),
    ],
    ids=[
        "no-certificate",
        "cert-without-key",
        "secret-and-files",
        "manage-without-secret",
        "renew-after-expiry",
    ],
)
def test_run_refuses_contradicting_options(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        run.config_from(run_args(*argv))


def test_run_options_become_the_config() -> None:
    config = run.config_from(
        run_args(
            "--tls-secret",
            "tls",
            "--manage-certificates",
            "--namespace",
            "sec",
            "--identity",
            "pod-1",
            "--audit-interval",
            "90s",
            "--cert-validity",
            "30d",
            "--cert-renew-before",
            "10d",
            "--webhook-configuration",
            "a",
            "--webhook-configuration",
            "b",
        )
    )
    assert (config.namespace, config.identity, config.tls_secret, config.manage_certificates) == (
        "sec",
        "pod-1",
        "tls",
        True,
    )
    assert config.audit_interval == 90.0
    assert config.lifetimes.serving.days == 30 and config.lifetimes.renew_before.days == 10
    assert config.webhook_configurations == ("a", "b")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5h", 5400.0), ("10m", 600.0), ("90d", 7776000.0), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert run.duration(text) == seconds


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        run.duration("soon")


def test_a_namespace_that_is_not_a_name_is_refused_before_any_request(
    double: ApiDouble, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(double.requests)
    code, _, err = run_cli(
        capsys, "--kubeconfig", str(kubeconfig), "--offline", "-n", "team-a/../../apis"
    )
    assert code == 2
    assert "is not a namespace name" in err
    assert double.requests[before:] == []
