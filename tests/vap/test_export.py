"""``baseguard export vap`` and the objects it prints: names, actions, scope, annotations, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import celpy
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from vap.vapcel import _program

from controller.cli.main import main
from controller.globs import GlobSet
from controller.policy.compile import compile_policy
from controller.vap import cel
from controller.vap.generate import export, object_name

POLICY = """
apiVersion: baseguard.io/v1alpha1
kind: BaseImagePolicy
metadata: {name: web, namespace: shop}
spec:
  mode: Warn
  registries: {allowed: ["registry.corp.example/*"]}
  pinning: {require: Digest}
  bases: {allowed: [{image: "docker.io/library/python"}]}
  exceptions:
    - {images: ["docker.io/library/nginx"], until: "2026-07-01", reason: "migrating"}
    - {images: ["docker.io/library/redis"], until: "2026-06-10", reason: "soon"}
    - {images: ["docker.io/library/httpd"], until: "2026-01-01", reason: "old"}
"""


def _write(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_export_prints_a_policy_and_binding_per_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", "vap", "-p", str(_write(tmp_path)), "--now", "2026-06-01"])
    out, err = capsys.readouterr()
    assert code == 0
    vap, binding = yaml.safe_load_all(out)
    assert vap["kind"] == "ValidatingAdmissionPolicy"
    assert vap["metadata"]["name"] == "baseguard.ns.shop.web"
    assert binding["spec"] == {"policyName": "baseguard.ns.shop.web", "validationActions": ["Warn"]}
    notes = vap["metadata"]["annotations"]
    assert notes["baseguard.io/regenerate-by"] == "2026-06-11"  # redis's exception ends first
    assert (
        notes["baseguard.io/exported-rules"]
        == "invalid-reference,registry-not-allowed,disallowed-tag,unpinned"
    )
    assert "bases.allowed (base-not-allowed" in notes["baseguard.io/not-exported"]
    assert {"name": "policy-namespace", "expression": "request.namespace == 'shop'"} in vap["spec"][
        "matchConditions"
    ]
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert vap["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
    ]
    assert "shop/web: not exported: bases.allowed" in err
    assert "shop/web: 1 expired exception(s) left out" in err
    assert "regenerate by 2026-06-11" in err
    judged = next(v for v in vap["spec"]["variables"] if v["name"] == "judged")["expression"]
    assert "docker.io/library/nginx" in judged and "docker.io/library/httpd" not in judged


def test_modes_become_validation_actions(tmp_path: Path) -> None:
    for mode, action in [("Enforce", "Deny"), ("Warn", "Warn"), ("Audit", "Audit")]:
        policy = compile_policy(
            {
                "apiVersion": "baseguard.io/v1alpha1",
                "kind": "ClusterBaseImagePolicy",
                "metadata": {"name": "p"},
                "spec": {"mode": mode, "pinning": {}},
            }
        )
        result = export(policy, today=dt.date(2026, 1, 1))
        assert result.binding["spec"]["validationActions"] == [action]
        assert result.policy["metadata"]["name"] == "baseguard.cluster.p"
        assert object_name(policy) == "baseguard.cluster.p"


def test_json_output_and_namespace_exclusions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path)
    assert (
        main(
            [
                "export",
                "vap",
                "-p",
                str(path),
                "-o",
                "json",
                "--exclude-namespace=",
                "--now",
                "2026-06-01",
            ]
        )
        == 0
    )
    listed = json.loads(capsys.readouterr().out)
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    assert "namespaceSelector" not in listed["items"][0]["spec"]["matchConstraints"]
    assert (
        main(
            [
                "export",
                "vap",
                "-p",
                str(path),
                "--exclude-namespace",
                "baseguard",
                "--now",
                "2026-06-01",
            ]
        )
        == 0
    )
    vap = next(yaml.safe_load_all(capsys.readouterr().out))
    assert vap["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0][
        "values"
    ] == ["baseguard"]


def test_bad_input_is_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["export", "vap", "-p", str(_write(tmp_path)), "--exclude-namespace", "Bad_NS"]) == 2
    )
    assert "--exclude-namespace 'Bad_NS': not a namespace name" in capsys.readouterr().err
    broken = _write(tmp_path, POLICY.replace("Digest", "Sometimes"))
    assert main(["export", "vap", "-p", str(broken)]) == 2
    assert "spec.pinning.require" in capsys.readouterr().err
    assert main(["export", "vap", "-p", str(tmp_path / "missing.yaml")]) == 2


_GLOB_CHARS = "ab.-/:*?[]@_"


@settings(deadline=None)
@given(
    patterns=st.lists(st.text(_GLOB_CHARS, min_size=1, max_size=6), min_size=1, max_size=3),
    value=st.text("ab.-/:[]@_*?\\^$(|)+", max_size=8),
)
def test_globs_translate_exactly(patterns: list[str], value: str) -> None:
    """``*`` any run, ``?`` one character, the rest literal, anchored: as GlobSet matches."""
    globs = GlobSet(tuple(patterns))
    program = _program(cel.glob_test(globs, "v"))
    assert bool(program.evaluate({"v": celpy.json_to_cel(value)})) == globs.matches(value)
