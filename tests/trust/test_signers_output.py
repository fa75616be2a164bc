"""Who signed each level, as ``baseguard lineage -p`` and ``check`` print it (text and JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import signing
from support.cosign_push import push_signature
from support.images import layer

from controller.cli.main import main
from controller.registry import media

from .test_policy_check import check, pod, policy, write


def chain(registry: Any, repo: str, key: Any) -> tuple[Any, Any]:
    os_layer = layer({"etc/os-release": repo})
    base = registry.push_image(f"{repo}/base", "1", [os_layer], annotations={media.BASE_NAME: "scratch"})
    push_signature(registry.pusher, f"{repo}/base", base.digest, key)
    app = registry.push_image(
        f"{repo}/app", "1", [os_layer, layer({"app": repo})],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )  # fmt: skip
    return base, app


def test_lineage_says_who_signed_each_level(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.new_key("p256")
    _, app = chain(registry, unique_repo, key)
    rules = policy(tmp_path, key, applies_to="All")
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    code = main(["lineage", app.tagged, "-p", rules, "--registry-config", config])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    [me] = [line for line in lines if "[image" in line]
    [parent] = [line for line in lines if f"{unique_repo}/base" in line]
    assert me.endswith(f"{unique_repo}/app:1  [image, unsigned]")
    assert "[annotation, verified, signed by platform[0] (authority platform)]" in parent
    code = main(["lineage", app.tagged, "-p", rules, "--registry-config", config, "--format", "json"])
    levels = json.loads(capsys.readouterr().out)["platforms"][0]["levels"]
    assert [lv["signedBy"] for lv in levels] == [[], ["platform[0] (authority platform)"]]


def test_check_text_and_json_carry_the_signers(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.new_key("p256")
    base, app = chain(registry, unique_repo, key)
    rules = policy(tmp_path, key, applies_to="Bases")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, app.reference), "-p", rules)
    assert code == 0, out
    assert f"signed: {registry.host}/{unique_repo}/base@sha256:" in out
    assert "by platform[0] (authority platform)" in out
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, app.reference), "-p", rules, "--format", "json")
    result = json.loads(out)["results"][0]
    assert result["signedBy"] == [
        {"image": f"{registry.host}/{unique_repo}/base", "digest": base.digest, "signers": ["platform[0] (authority platform)"]}
    ]
    assert [lv.get("signedBy") for lv in result["lineage"]] == [None, ["platform[0] (authority platform)"]]


def test_sarif_names_who_signed_beside_the_finding(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The base is signed, the image is not: the alert says so, and who signed the base."""
    key = signing.new_key("p256")
    base, app = chain(registry, unique_repo, key)
    rules = policy(tmp_path, key, applies_to="All")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, app.reference), "-p", rules, "--format", "sarif")
    assert code == 1, out
    [alert] = json.loads(out)["runs"][0]["results"]
    assert alert["ruleId"] == "unsigned"
    assert alert["properties"]["signedBy"] == {
        f"{registry.host}/{unique_repo}/base@{base.digest}": ["platform[0] (authority platform)"]
    }
    rules_listed = {r["id"]: r for r in json.loads(out)["runs"][0]["tool"]["driver"]["rules"]}
    assert "no signature from the policy's authorities" in rules_listed["unsigned"]["shortDescription"]["text"]
