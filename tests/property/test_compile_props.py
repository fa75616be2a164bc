"""Policy compilation: any document compiles or yields field-path errors, never another exception.

A policy author's mistake must come back as ``Ready=False`` with the field to
fix, not as a crashed operator handler that leaves every other policy stale.
Documents are fuzzed three ways: arbitrary JSON, a valid policy with one
subtree replaced by arbitrary JSON (the common mistake: right field, wrong
shape), and specs assembled from the real field names with values of any type.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError
from controller.policy.compile import compile_checked, compile_policy
from controller.policy.model import CompiledPolicy
from controller.policy.schema import field_path

ROOT = Path(__file__).resolve().parents[2]
VALID = sorted(
    [*ROOT.joinpath("tests/data/policies/valid").glob("*.yaml"), *ROOT.joinpath("policies").glob("*/*.yaml")]
)
# The small ones: the big EOL catalogs add nothing but time (their entries repeat one shape).
DOCS = [
    doc
    for path in VALID
    for doc in yaml.safe_load_all(path.read_text())
    if isinstance(doc, dict) and len(repr(doc)) < 3000
]

FIELDS = [
    "apiVersion", "kind", "metadata", "name", "namespace", "spec", "status", "mode", "match",
    "namespaces", "excludeNamespaces", "namespaceSelector", "objectSelector", "matchLabels",
    "matchExpressions", "key", "operator", "values", "exclude", "images", "exceptions", "until",
    "reason", "registries", "allowed", "pinning", "require", "disallowedTags", "mutateToDigest",
    "bases", "image", "tags", "digests", "deprecated", "replacement", "enforceAfter", "lineage",
    "maxDepth", "verify", "catalog", "onUnknownBase", "onLookupFailure", "maxBaseAge", "staleBase",
    "platforms",
]
WORDS = [
    "", "*", "?", "Enforce", "Warn", "Audit", "Deny", "Allow", "None", "Version", "Digest", "Layers",
    "Annotations", "In", "NotIn", "Exists", "DoesNotExist", "latest", "prod-*", "kube-system",
    "docker.io/library/python", "docker.io/library/*", "python", "3.12*-slim*", "2026-02-30",
    "2025-01-01", "180d", "0d", "-1d", "linux/amd64", "linux", "sha256:" + "a" * 64, "sha256:xyz",
    "ClusterBaseImagePolicy", "BaseImagePolicy", "baseguard.io/v1alpha1", "Python/3", "a b",
    "scratch", "x" * 300, "900000000d", "99999999999d", "36526d", "9999-12-31", "0001-01-01",
    "docker.io/library/[abc", "[::1]:5000/*", "docker.io/" + "*a" * 20,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8), st.integers(-3, 3))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*here, i))
    return out


@st.composite
def mutated_policies(draw: st.DrawFn) -> Any:
    """A valid policy with one node replaced, removed, or given an extra key."""
    doc = copy.deepcopy(draw(st.sampled_from(DOCS)))
    where = draw(st.sampled_from(_paths(doc)))
    if not where:
        return draw(json_values)
    parent = doc
    for part in where[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "remove", "extra"]))
    if action == "remove" and isinstance(parent, dict):
        del parent[where[-1]]
    elif action == "extra" and isinstance(parent[where[-1]], dict):
        parent[where[-1]][draw(keys)] = draw(json_values)
    else:
        parent[where[-1]] = draw(json_values)
    return doc


field_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    max_leaves=30,
)
assembled_policies = st.fixed_dictionaries(
    {
        "apiVersion": st.just("baseguard.io/v1alpha1"),
        "kind": st.sampled_from(["ClusterBaseImagePolicy", "BaseImagePolicy"]),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["p", "team.policy", "Bad_Name"])}),
        "spec": st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6),
    }
)

documents = st.one_of(json_values, mutated_policies(), assembled_policies)

_SEGMENT = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[([^\]]*)\]")


def _segments(path: str) -> list[str | int] | None:
    """A field path back into keys and indexes; ``None`` when it cannot be read back exactly."""
    out: list[str | int] = []
    for m in _SEGMENT.finditer(path):
        name, index, key = m.groups()
        out.append(name if name is not None else int(index) if index is not None else key)
    return out if field_path(out) == path else None


def _resolve(doc: Any, segments: list[str | int]) -> bool:
    node = doc
    for part in segments:
        if isinstance(node, dict) and str(part) in {str(k) for k in node}:
            node = next(v for k, v in node.items() if str(k) == str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    return True


@given(documents)
def test_any_document_compiles_or_names_the_field_to_fix(doc: Any) -> None:
    policy, errors = compile_checked(doc)  # must not raise

    assert (policy is None) == bool(errors)
    assert all(isinstance(e, PolicyError) for e in errors)
    if policy is not None:
        assert isinstance(policy, CompiledPolicy)
        assert compile_policy(doc) == policy
        return
    try:
        compile_policy(doc)
    except PolicyError as first:
        assert str(first) == str(errors[0])
    else:
        raise AssertionError("compile_policy accepted a document compile_checked refused")

    for error in errors:
        assert isinstance(error.path, str) and isinstance(error.reason, str) and error.reason
        assert str(error) == (f"{error.path}: {error.reason}" if error.path else error.reason)
        if not isinstance(doc, dict):
            assert error.path == ""
            continue
        assert error.path, f"an error without a field: {error.reason}"
        segments = _segments(error.path)
        if segments is None or "missing" in error.reason:
            continue
        # The field, or (for a missing one) its parent, is where the path says.
        assert _resolve(doc, segments) or _resolve(doc, segments[:-1]), (error.path, error.reason)
