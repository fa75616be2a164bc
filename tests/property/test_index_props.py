"""The policy index answers exactly what the linear scan answers, in the same order.

The index only decides which policies are *worth testing*; if it ever left out
one that covers the object, that policy would silently stop applying. So the
property is equality with :func:`applicable` over policies and objects drawn
from a deliberately tiny alphabet, where names, globs and prefixes collide.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.assess import Assessor
from controller.globs import GlobSet
from controller.policy.evaluate import applicable, applicable_indexed
from controller.policy.facts import ObjectFacts
from controller.policy.index import PolicyIndex, literal_prefix
from controller.policy.model import (
    CLUSTER_KIND,
    NAMESPACED_KIND,
    CompiledPolicy,
    LabelRequirement,
    LabelSelector,
    Match,
)


def _strings(alphabet: str, longest: int) -> list[str]:
    out = [""]
    for _ in range(longest):
        out += [s + c for s in out if len(s) == len(out[-1]) for c in alphabet]
    return sorted(set(out), key=lambda s: (len(s), s))


# Small pools, drawn from with sampled_from: cheap to generate, and collisions are the point.
NAMES = _strings("ab-", 3)
PATTERNS = _strings("ab-*?", 3)
LABELS = [{}, {"app": "a"}, {"app": "b"}, {"team": "a"}, {"app": "a", "team": "b"}]
SELECTORS = [
    LabelSelector(),
    LabelSelector(match_labels=(("app", "a"),)),
    LabelSelector(match_labels=(("app", "a"), ("team", "b"))),
    LabelSelector(match_expressions=(LabelRequirement("app", "In", frozenset({"a", "b"})),)),
    LabelSelector(match_expressions=(LabelRequirement("team", "NotIn", frozenset({"a"})),)),
    LabelSelector(match_expressions=(LabelRequirement("app", "Exists"),)),
    LabelSelector(match_expressions=(LabelRequirement("team", "DoesNotExist"),)),
]

namespaces = st.sampled_from(NAMES)
glob_sets = st.none() | st.lists(st.sampled_from(PATTERNS), max_size=3).map(lambda ps: GlobSet(tuple(ps)))
labels = st.sampled_from(LABELS)
selectors = st.none() | st.sampled_from(SELECTORS)


policies = st.builds(
    lambda own, match: CompiledPolicy(
        kind=CLUSTER_KIND if own is None else NAMESPACED_KIND, name="p", namespace=own, match=match
    ),
    st.none() | namespaces,
    st.builds(
        Match,
        namespaces=glob_sets,
        exclude_namespaces=glob_sets,
        namespace_selector=selectors,
        object_selector=selectors,
    ),
)
policy_lists = st.lists(policies, max_size=25).map(tuple)
objects = st.builds(
    ObjectFacts,
    kind=st.just("Pod"),
    namespace=st.none() | namespaces,
    labels=labels,
    namespace_labels=st.none() | labels,
)


@given(policy_lists, st.lists(objects, min_size=1, max_size=5))
def test_indexed_applicable_equals_the_scan(
    chosen: tuple[CompiledPolicy, ...], objs: list[ObjectFacts]
) -> None:
    index = PolicyIndex.of(chosen)
    assert index.policies is chosen
    for obj in objs:
        scanned = applicable(chosen, obj)
        indexed = applicable_indexed(index, obj)
        assert [id(p) for p in indexed] == [id(p) for p in scanned]
        # the candidates are a superset: the predicate only ever removes
        candidates = {id(p) for p in index.candidates(obj.namespace)}
        assert {id(p) for p in scanned} <= candidates


@given(st.text("ab-*?", max_size=6), st.text("ab-", max_size=6))
def test_a_glob_only_matches_names_starting_with_its_literal_prefix(pattern: str, name: str) -> None:
    if GlobSet((pattern,)).matches(name):
        assert name.startswith(literal_prefix(pattern))


def test_the_assessor_builds_one_index_per_snapshot() -> None:
    """A store publishes a new tuple per change: same tuple, same index; a list is never trusted."""
    assessor = Assessor(None)
    first = (CompiledPolicy(kind=CLUSTER_KIND, name="a"),)
    assert assessor.index_of(first) is assessor.index_of(first)
    second = (*first, CompiledPolicy(kind=NAMESPACED_KIND, name="b", namespace="team"))
    assert assessor.index_of(second).policies is second
    mutable = list(second)
    stale = assessor.index_of(mutable)
    mutable.pop()
    assert assessor.index_of(mutable) is not stale
    assert assessor.index_of(mutable).policies == tuple(mutable)
