"""``baseguard check`` of one pod against a plain-HTTP test registry, read as its JSON result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main


def check_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str, policy: Path, image: str
) -> tuple[int, dict[str, Any]]:
    """(exit code, the one result) of checking a pod in namespace ``shop`` naming ``image``."""
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\n"
        f'spec:\n  containers:\n    - {{name: app, image: "{image}"}}\n'
    )
    code = main(
        ["check", str(pod), "-p", str(policy), "--registry-config", str(config), "--format", "json"]
    )
    out, err = capsys.readouterr()
    assert out, err
    (result,) = json.loads(out)["results"]
    return code, result
