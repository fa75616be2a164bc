"""``audit`` and ``run`` without the operator extra: a message naming the extra, exit 2.

The extra is hidden the way a plain ``pip install baseguard`` leaves it: an import hook
makes ``kubernetes`` and ``kopf`` unimportable in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HIDDEN = """\
import sys
class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("kubernetes", "kopf"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hidden())
from controller.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def without_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDDEN, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "argv", [["audit", "--offline"], ["run", "--offline", "--tls-cert", "c.pem", "--tls-key", "k.pem"]]
)
def test_the_missing_extra_is_named_not_a_traceback(argv: list[str]) -> None:
    done = without_extra(*argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"baseguard {argv[0]}: {argv[0]} needs the operator extra, and kubernetes is not installed: "
        "pip install 'baseguard[operator]'"
    ) in done.stderr


def test_check_works_without_the_extra(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.12.7-slim\n")
    (tmp_path / "p.yaml").write_text(
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: pins}\n"
        "spec: {mode: Enforce, pinning: {require: Version}}\n"
    )
    done = without_extra("check", str(tmp_path / "Dockerfile"), "-p", str(tmp_path / "p.yaml"), "--offline")
    assert done.returncode == 0, done.stderr
