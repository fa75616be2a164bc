"""The chart's CRDs are the schema `policy validate` uses, and their CEL rules say what
the structural schema cannot -- the same things `policy validate` says.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from support.chart import CHART, KUBE_VERSIONS, ROOT

from controller.policy.compile import check_policy
from controller.policy.schema import crd_manifests, openapi_schema


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sync = load_script("sync_crds")


@functools.cache
def chart_crds() -> dict[str, dict[str, Any]]:
    return {
        path.name: yaml.safe_load(path.read_text()) for path in sorted((CHART / "crds").glob("*.yaml"))
    }


# --- one source of truth ----------------------------------------------------------------


def test_chart_crds_are_the_schema_crds() -> None:
    expected = {f"{crd['metadata']['name']}.yaml": crd for crd in crd_manifests()}
    assert chart_crds() == expected


def test_chart_is_in_sync(capsys: pytest.CaptureFixture[str]) -> None:
    code = sync.main(["--check"])
    assert (code, capsys.readouterr().err) == (0, "")


def test_drift_is_reported_by_file() -> None:
    """`--check` can fail: a changed schema, a missing and a stale file are each named."""
    expected = dict(sync.expected_files())
    crd = next(p for p in expected if p.parent == sync.CRD_DIR)
    policy = next(p for p in expected if p.parent.parent == sync.POLICY_DIR)
    expected[crd] += "# a field added to the schema\n"
    expected[sync.POLICY_DIR / "eol" / "eol-new.yaml"] = "kind: ClusterBaseImagePolicy\n"
    del expected[policy]
    problems = sync.drift(expected)
    assert f"out of date: {crd.relative_to(ROOT)}" in problems
    assert "missing: charts/baseguard/policies/eol/eol-new.yaml" in problems
    assert f"stale: {policy.relative_to(ROOT)}" in problems


def test_bundled_policies_are_verbatim_copies() -> None:
    source = sync.library_policies()
    assert source, "policies/ holds the library"
    copies = sorted(p.relative_to(sync.POLICY_DIR) for p in sync.POLICY_DIR.rglob("*.yaml"))
    assert copies == source
    for rel in source:
        assert (sync.POLICY_DIR / rel).read_bytes() == (ROOT / "policies" / rel).read_bytes()


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crds_are_valid_kubernetes_objects(version: str) -> None:
    """Strict: a CEL rule field the oldest supported apiserver does not know would fail."""
    for name, crd in chart_crds().items():
        try:
            kubernetes_validate.validate(crd, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")


@pytest.mark.parametrize(
    ("kind", "short", "scope"),
    [("ClusterBaseImagePolicy", "cbip", "Cluster"), ("BaseImagePolicy", "bip", "Namespaced")],
    ids=["cluster", "namespaced"],
)
def test_kubectl_get_shows_mode_ready_violations(kind: str, short: str, scope: str) -> None:
    [crd] = [c for c in chart_crds().values() if c["spec"]["names"]["kind"] == kind]
    assert crd["spec"]["names"]["shortNames"] == [short]
    assert crd["spec"]["scope"] == scope
    [version] = crd["spec"]["versions"]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Mode", "Ready", "Violations"]
    assert version["subresources"] == {"status": {}}


# --- CEL rules --------------------------------------------------------------------------


def cel_rules(node: dict[str, Any], path: str = "", in_list: bool = False) -> Iterator[tuple[str, bool, dict[str, Any]]]:
    """(schema path, whether the node repeats inside a list, rule) for every rule."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path, in_list, rule
    for name, child in node.get("properties", {}).items():
        yield from cel_rules(child, f"{path}.{name}", in_list)
    if isinstance(node.get("items"), dict):
        yield from cel_rules(node["items"], f"{path}[]", True)
    if isinstance(node.get("additionalProperties"), dict):
        yield from cel_rules(node["additionalProperties"], f"{path}{{}}", True)


SELECTOR = ".spec.match.{}.matchExpressions[]"

#: Per rule: values of `self` it must accept and refuse, and where in a policy they go.
CASES: dict[str, dict[str, Any]] = {
    SELECTOR.format("namespaceSelector"): {
        "good": [
            {"key": "team", "operator": "In", "values": ["a"]},
            {"key": "team", "operator": "NotIn", "values": ["a", "b"]},
            {"key": "team", "operator": "Exists"},
            {"key": "team", "operator": "DoesNotExist", "values": []},
        ],
        "bad": [
            {"key": "team", "operator": "In"},
            {"key": "team", "operator": "NotIn", "values": []},
            {"key": "team", "operator": "Exists", "values": ["a"]},
        ],
        "place": lambda v: {"match": {"namespaceSelector": {"matchExpressions": [v]}}},
        "field": "spec.match.namespaceSelector.matchExpressions[0].values",
    },
    SELECTOR.format("objectSelector"): {
        "good": [{"key": "app", "operator": "In", "values": ["api"]}, {"key": "app", "operator": "Exists"}],
        "bad": [{"key": "app", "operator": "In"}, {"key": "app", "operator": "DoesNotExist", "values": ["x"]}],
        "place": lambda v: {"match": {"objectSelector": {"matchExpressions": [v]}}},
        "field": "spec.match.objectSelector.matchExpressions[0].values",
    },
    ".spec.exceptions[].namespaceSelector.matchExpressions[]": {
        "good": [{"key": "tier", "operator": "In", "values": ["legacy"]}, {"key": "tier", "operator": "Exists"}],
        "bad": [{"key": "tier", "operator": "In"}, {"key": "tier", "operator": "Exists", "values": ["x"]}],
        "place": lambda v: {"exceptions": [{"until": "2027-01-01", "namespaceSelector": {"matchExpressions": [v]}}]},
        "field": "spec.exceptions[0].namespaceSelector.matchExpressions[0].values",
    },
    ".spec.lineage.maxBaseAge": {
        "good": ["1d", "180d", "12h", "26w", "10d", "36525d", "876600h", "5217w", "0036525d"],
        "bad": ["0d", "00h", "0w", "36526d", "876601h", "5218w", "900000000d", "99999999999d"],
        "place": lambda v: {"lineage": {"maxBaseAge": v}},
        "field": "spec.lineage.maxBaseAge",
    },
    ".spec.trust.authorities[]": {
        "good": [{"name": "a", "keyless": {"issuer": "https://i", "subject": "s"}}],
        "bad": [{"name": "a"}],
        "place": lambda v: {"trust": {"authorities": [v]}},
        "field": "spec.trust.authorities[0]",
    },
    ".spec.trust.authorities[].keyless": {
        "good": [{"issuer": "https://i", "subject": "s"}, {"issuer": "https://i", "subjectRegExp": "^s$"}],
        "bad": [{"issuer": "https://i"}, {"issuer": "https://i", "subject": "s", "subjectRegExp": "s"}],
        "place": lambda v: {"trust": {"authorities": [{"name": "a", "keyless": v}]}},
        "field": "spec.trust.authorities[0].keyless",
    },
    ".spec.evidence.maxScanAge": {
        "good": ["1d", "7d", "24h", "2w", "36525d"],
        "bad": ["0d", "0h", "36526d", "876601h"],
        "place": lambda v: {"evidence": {"maxScanAge": v}},
        "field": "spec.evidence.maxScanAge",
    },
}


def all_rules() -> list[tuple[str, bool, dict[str, Any]]]:
    return list(cel_rules(openapi_schema()))


def evaluate(rule: str, value: Any) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    return bool(program.evaluate({"self": celpy.json_to_cel(value)}))


def test_every_rule_has_cases() -> None:
    assert sorted({path for path, _, _ in all_rules()}) == sorted(CASES)


def test_every_rule_has_a_message() -> None:
    for path, _, rule in all_rules():
        assert rule.get("message"), path


@pytest.mark.parametrize("path", sorted(CASES))
def test_cel_rules_accept_and_refuse(path: str) -> None:
    [rule] = [r for p, _, r in all_rules() if p == path]
    case = CASES[path]
    assert [evaluate(rule["rule"], v) for v in case["good"]] == [True] * len(case["good"])
    assert [evaluate(rule["rule"], v) for v in case["bad"]] == [False] * len(case["bad"])


@pytest.mark.parametrize("path", sorted(CASES))
def test_policy_validate_refuses_what_the_cel_rules_refuse(path: str) -> None:
    """The apiserver and `baseguard policy validate` agree: one source of truth."""
    case = CASES[path]

    def doc(spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy", "metadata": {"name": "p"}, "spec": spec}

    for good in case["good"]:
        assert check_policy(doc(case["place"](good))) == [], good
    for bad in case["bad"]:
        errors = check_policy(doc(case["place"](bad)))
        assert [e.path for e in errors] == [case["field"]], bad


#: Functions whose cost grows with the length of a string or list.
_SCANS = re.compile(r"\.(matches|contains|startsWith|endsWith|all|exists|exists_one|map|filter)\(")


def test_rules_stay_inside_the_apiserver_cost_budget() -> None:
    """The apiserver refuses a CRD whose rules may cost too much, estimating every
    unbounded list at its largest (~100k items in a 3 MiB object) and every unbounded
    string at 3 MiB. So a rule that repeats inside a list must not scan strings or lists;
    a scanning rule is allowed once per object (maxBaseAge: ~1M units of a 10M budget).
    """
    for path, in_list, rule in all_rules():
        if in_list:
            assert not _SCANS.search(rule["rule"]), (path, rule["rule"])


def test_date_fields_are_checked_by_format_not_cel() -> None:
    """`format: date` makes the apiserver parse the value as a calendar date (and CEL
    sees a timestamp, not a string): no regex rule is needed, and none would compile."""
    schema = openapi_schema()["properties"]["spec"]["properties"]
    until = schema["exceptions"]["items"]["properties"]["until"]
    after = schema["bases"]["properties"]["deprecated"]["items"]["properties"]["enforceAfter"]
    for node in (until, after):
        assert node["format"] == "date"
        assert "x-kubernetes-validations" not in node


def test_crd_files_say_they_are_generated() -> None:
    for path in (CHART / "crds").glob("*.yaml"):
        assert path.read_text().startswith("# GENERATED by scripts/sync_crds.py"), path

