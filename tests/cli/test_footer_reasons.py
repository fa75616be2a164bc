"""The footer of ``check`` says why rules were not evaluated: offline, a failed lookup, or a base
that could not be established (every lookup answered). Against the real registry of the fixtures."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.images import layer

from controller.cli.main import main


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def allowlist(tmp_path: Path, repository: str) -> str:
    return write(
        tmp_path / "p.yaml",
        f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {{name: bases}}
        spec:
          mode: Enforce
          bases:
            allowed: [{{image: "{repository}", tags: ["*-slim"]}}]
        """,
    )


def pod(tmp_path: Path, image: str) -> str:
    return write(
        tmp_path / "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\n"
        f"spec: {{containers: [{{name: app, image: '{image}'}}]}}\n",
    )


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["check", *argv, "--now", "2026-11-23"])
    return code, capsys.readouterr().out


def test_an_unknown_base_is_not_called_a_failed_lookup(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every lookup answered; the image claims no base and none is detected."""
    registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "x"})])
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    policy = allowlist(tmp_path, f"{registry.host}/{unique_repo}/python")
    manifest = pod(tmp_path, f"{registry.host}/{unique_repo}/app:1.0.0")
    code, out = check(capsys, manifest, "-p", policy, "--registry-config", config)
    assert code == 1
    assert "unknown-base [bases] deny" in out
    assert "a registry lookup failed" not in out
    assert (
        "not evaluated (no base could be established, so unknown-base decides instead): "
        "base-not-allowed" in out
    )


def test_a_failed_lookup_is_named_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    policy = allowlist(tmp_path, f"{host}/shop/python")
    manifest = pod(tmp_path, f"{host}/shop/app:1.0.0")
    code, out = check(capsys, manifest, "-p", policy, "--registry-config", config, "--budget", "5")
    assert code == 3
    assert "not evaluated (a registry lookup failed, see lookup-failed): " in out


def test_offline_says_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = allowlist(tmp_path, "docker.io/library/python")
    manifest = pod(tmp_path, "ubuntu:22.04")
    _, out = check(capsys, manifest, "-p", policy, "--offline")
    assert "not evaluated (--offline: no registry lookups): " in out
