"""``check --namespace NS`` judges Dockerfiles as in NS; flags that would do nothing are refused."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from controller.cli.main import main

SHOP_PINS = """\
apiVersion: baseguard.io/v1alpha1
kind: BaseImagePolicy
metadata: {name: shop-pins, namespace: shop}
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


def test_a_namespaced_policy_judges_a_dockerfile_with_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n")
    policy = write(tmp_path / "shop.yaml", SHOP_PINS)
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline")
    assert code == 0
    assert "--namespace NS judges it as in NS" in out
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--namespace", "shop")
    assert code == 1
    assert f"DENY  {dockerfile} (as in namespace shop)  (policies: shop/shop-pins)" in out
    assert "unpinned [shop/shop-pins] deny" in out
    _, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--namespace", "shop", "--format", "json")
    assert json.loads(out)["results"][0]["namespace"] == "shop"


def test_another_namespaces_policy_never_judges_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Isolation: shop's policy shapes verdicts in shop only."""
    dockerfile = write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n")
    policy = write(tmp_path / "shop.yaml", SHOP_PINS)
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--namespace", "billing")
    assert code == 0
    assert "every policy's match/exclude leaves it out" in out


def test_a_manifest_keeps_its_own_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(
        tmp_path / "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: billing}\n"
        "spec: {containers: [{name: app, image: 'ubuntu:22.04'}]}\n",
    )
    policy = write(tmp_path / "shop.yaml", SHOP_PINS)
    code, _, _ = run(capsys, "check", manifest, "-p", policy, "--offline", "--namespace", "shop")
    assert code == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--registry-config", "r.yaml"], "--registry-config does nothing with --offline"),
        (["--docker-config", "c.json"], "--docker-config does nothing with --offline"),
        (["--budget", "3"], "--budget does nothing with --offline"),
        (["--budget", "3", "--registry-config", "r.yaml"], "--registry-config and --budget do nothing"),
    ],
)
def test_flags_that_do_nothing_offline_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    dockerfile = write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n")
    policy = write(tmp_path / "shop.yaml", SHOP_PINS)
    code, _, err = run(capsys, "check", dockerfile, "-p", policy, "--offline", *flags)
    assert code == 2
    assert named in err and "drop --offline" in err


def test_audit_refuses_a_registry_config_offline(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "--offline", "--registry-config", "r.yaml")
    assert code == 2
    assert "--registry-config does nothing with --offline" in err
