"""The text of ``check``: skipped inputs listed with their reason, ``--quiet``, repeats said once,
Helm charts skipped whichever way their files arrive."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.cli.main import main

PINS = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec: {mode: Enforce, pinning: {require: Version}}
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def deployment(name: str, image: str) -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: web}}\n"
        f"spec:\n  template:\n    spec:\n      containers: [{{name: app, image: '{image}'}}]\n"
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    write(root / "chart" / "Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    write(root / "chart" / "templates" / "deploy.yaml", "{{- if .Values.enabled }}\nkind: Deployment\n")
    write(root / "docker-compose.yml", "services: {web: {image: nginx}}\n")
    write(root / "k8s" / "apps.yaml", "---\n".join(deployment(n, "nginx:latest") for n in ("a", "b", "c")))
    write(root / "k8s" / "ok.yaml", deployment("ok", "nginx:1.27.2"))
    write(root / "pins.yaml", PINS)
    monkeypatch.chdir(root)
    return root


def test_skipped_inputs_are_listed_with_their_reason_and_the_helm_command(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "check", ".", "-p", "pins.yaml", "--offline")
    assert code == 1
    assert "4 image(s): 3 deny, 0 warn, 0 audit, 1 allow; 2 skipped\n" in out
    listed = out.split("skipped (not judged):\n", 1)[1].splitlines()
    assert sorted(listed) == [
        "  ./chart/ (a Helm chart: its templates are YAML only once rendered; "
        "helm template ./chart | baseguard check -)",
        "  ./docker-compose.yml#1 (not a Kubernetes object: no apiVersion and no kind)",
    ]


def test_the_pre_commit_hook_s_file_by_file_call_skips_the_chart_too(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It failed with `chart/Chart.yaml: … no kind` and template errors (exit 2)."""
    code, out, err = run(
        capsys, "check", "--allow-empty", "-p", "pins.yaml", "--offline",
        "chart/Chart.yaml", "chart/templates/deploy.yaml", "k8s/ok.yaml",
    )
    assert (code, err) == (0, "")
    assert "  chart/ (a Helm chart: its templates are YAML only once rendered; helm template chart | baseguard check -)\n" in out


def test_identical_findings_are_said_once_with_a_count(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "check", "k8s", "-p", "pins.yaml", "--offline")
    assert out.count('uses the tag "latest", which names no full version') == 1
    assert "      (and for 2 more image(s) below: said once)\n" in out
    assert out.count("      the same 2 findings as Deployment/web/a app\n") == 2
    assert out.count("DENY  app: docker.io/library/nginx:latest") == 3  # every image still has its line


def test_quiet_shows_only_what_fails(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", ".", "-p", "pins.yaml", "--offline", "--quiet")
    assert code == 1
    assert "ok" not in out.replace("look", "") and "ALLOW" not in out
    assert "DENY  Deployment/web/a" in out
    assert "skipped (not judged)" not in out
    assert "4 image(s): 3 deny, 0 warn, 0 audit, 1 allow; 2 skipped\n" in out
    code, _, err = run(capsys, "check", ".", "-p", "pins.yaml", "--offline", "-q", "--format", "json")
    assert code == 2 and "--quiet shapes the text output" in err


def test_quiet_shows_warnings_when_they_fail_the_build(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo / "warn.yaml", PINS.replace("Enforce", "Warn").replace("pins", "soft"))
    _, out, _ = run(capsys, "check", "k8s", "-p", "warn.yaml", "--offline", "-q")
    assert "WARN" not in out
    code, out, _ = run(capsys, "check", "k8s", "-p", "warn.yaml", "--offline", "-q", "--warn-exit-code", "1")
    assert code == 1 and "WARN  Deployment/web/a" in out
