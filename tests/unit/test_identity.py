"""The identity facts, pure: tag history, and images judged by what their digest is."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.globs import GlobSet
from controller.lineage.identity import KnownTags, TagHistory, identity_key
from controller.policy import evaluate as ev
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.lookups import identity_targets, repositories_to_index
from controller.policy.model import (
    CLUSTER_KIND,
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
    RuleCode,
)
from controller.reference import parse

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POD = ObjectFacts(kind="Pod", name="p", namespace="shop")
PY = "docker.io/library/python"
D38, D312, DOLD, DNEW = ("sha256:" + c * 64 for c in "8abc")
EOL = DeprecatedEntry(GlobSet((PY,)), tags=GlobSet(("3.8*",)), reason="EOL")
ALLOW = BaseEntry(GlobSet((PY,)), tags=GlobSet(("3.12*",)))


def _history() -> TagHistory:
    h = TagHistory()
    h.record(PY, "3.8-slim", {D38})
    h.record(PY, "3.12-slim", {D312})
    return h


def _judge(image: str, history: TagHistory, *entries: object) -> list[tuple[str, str]]:
    policy = CompiledPolicy(
        kind=CLUSTER_KIND,
        name="p",
        bases_allowed=tuple(e for e in entries if isinstance(e, BaseEntry)) or None,
        bases_deprecated=tuple(e for e in entries if isinstance(e, DeprecatedEntry)),
    )
    ref = parse(image)
    keys = [(ref.name, ref.digest)] if ref.digest else []
    facts = ImageFacts(image=image, reference=ref, identities=history.facts(keys))
    [result] = ev.evaluate([policy], POD, [facts], now=NOW)
    return [(v.rule.value, v.action.value) for v in result.violations]


def test_history_keeps_what_a_tag_named_before_it_moved() -> None:
    h = TagHistory()
    h.record(PY, "3.12-slim", {DOLD})
    h.record(PY, "3.12-slim", {DNEW})
    assert h.known(PY, DOLD) == KnownTags(frozenset({"3.12-slim"}), frozenset())
    assert h.known(PY, DNEW) == KnownTags(frozenset({"3.12-slim"}), frozenset({"3.12-slim"}))
    assert h.known("docker.io/library/other", DNEW) is None  # per repository


def test_history_is_bounded_per_tag_and_in_all() -> None:
    h = TagHistory(history_per_tag=2, max_tags=2)
    for i in range(5):
        h.record(PY, "3.12-slim", {f"sha256:{i:064x}"})
    assert h.known(PY, f"sha256:{0:064x}") is None and h.known(PY, f"sha256:{2:064x}") is not None
    h.record(PY, "a", {D38})
    h.record(PY, "b", {D312})  # a third tag: the least recently recorded goes
    assert len(h) == 2 and h.known(PY, f"sha256:{4:064x}") is None


@pytest.mark.parametrize(
    ("image", "entries", "expected"),
    [
        (f"python:3.12-slim@{D38}", (EOL, ALLOW), [("tag-mismatch", "deny"), ("deprecated-base", "deny")]),
        (f"python@{D38}", (EOL,), [("deprecated-base", "deny")]),
        (f"python@{D312}", (ALLOW,), []),
        (f"python:3.8-slim@{D38}", (EOL,), [("deprecated-base", "deny")]),
        (f"python:3.12-slim@{DNEW}", (ALLOW,), []),  # never seen: judged by its tag
        (f"python:3.12-slim@{D38}", (BaseEntry(GlobSet(("docker.io/library/*",))),), []),
    ],
    ids=["lying-tag", "digest-only-eol", "digest-only-allowed", "honest", "unknown", "not-named"],
)
def test_images_are_judged_by_their_digest(image: str, entries: tuple[object, ...], expected: list[tuple[str, str]]) -> None:
    assert _judge(image, _history(), *entries) == expected


def test_a_pinned_digest_stays_its_tag_after_the_tag_moves() -> None:
    h = _history()
    h.record(PY, "3.12-slim", {DNEW})
    assert _judge(f"python:3.12-slim@{D312}", h, EOL, ALLOW) == []


def test_an_unverified_pin_is_not_evaluated_offline() -> None:
    """Without the index (offline), a tag@digest the policy judges by tag is left open."""
    policy = CompiledPolicy(kind=CLUSTER_KIND, name="p", bases_deprecated=(EOL,))
    ref = parse(f"python:3.12-slim@{D38}")
    [result] = ev.evaluate([policy], POD, [ImageFacts(image=str(ref), reference=ref)], now=NOW)
    assert RuleCode.TAG_MISMATCH in result.not_evaluated


def test_identity_targets_are_the_repositories_judged_by_tag() -> None:
    policy = CompiledPolicy(
        kind=CLUSTER_KIND,
        name="p",
        bases_allowed=(ALLOW, BaseEntry(GlobSet(("docker.io/library/*",)), tags=GlobSet(("1",)))),
        bases_deprecated=(EOL, DeprecatedEntry(GlobSet(("docker.io/library/node",)))),
    )
    targets = identity_targets(policy)
    assert targets == {PY: frozenset({"3.8*", "3.12*"}), "docker.io/library/*": frozenset({"1"})}
    # Only repositories where something is pinned are listed; globs pick them up too.
    assert repositories_to_index(targets, [PY, "docker.io/library/node", "ghcr.io/x/y"]) == {
        PY: frozenset({"3.8*", "3.12*", "1"}),
        "docker.io/library/node": frozenset({"1"}),
    }
    assert identity_key(PY, D38) == f"{PY}@{D38}"


@pytest.mark.parametrize(
    ("image", "excluded"),
    [
        (f"python:3.12-slim@{D38}", False),  # the lying tag does not buy the exclusion
        (f"python:3.12-slim@{D312}", True),
        (f"python@{D312}", True),  # a digest-only pin is excluded as the tag it is
        (f"python:3.12-slim@{DNEW}", True),  # never seen: judged by its written tag
    ],
    ids=["lying-tag", "honest", "digest-only", "unknown"],
)
def test_exclusions_by_tag_judge_what_the_digest_is(image: str, excluded: bool) -> None:
    policy = CompiledPolicy(
        kind=CLUSTER_KIND,
        name="p",
        bases_deprecated=(EOL,),
        bases_allowed=(ALLOW,),
        exclude_images=GlobSet((f"{PY}:3.12*",)),
    )
    ref = parse(image)
    facts = ImageFacts(
        image=image, reference=ref, identities=_history().facts([(ref.name, ref.digest or "")])
    )
    [result] = ev.evaluate([policy], POD, [facts], now=NOW)
    assert (result.policies == ()) is excluded


def test_a_review_is_told_only_the_tags_its_own_namespace_watches() -> None:
    """The history is filled for every policy of the process: a tag that only another
    tenant's globs listed (``evil-*``) is not part of what this namespace is told."""
    history = TagHistory()
    digest = "sha256:" + "ab" * 32
    history.record("docker.io/library/python", "3.12-slim", [digest])
    history.record("docker.io/library/python", "evil-3.12", [digest])
    everything = history.facts([("docker.io/library/python", digest)])
    assert everything["docker.io/library/python@" + digest].tags == {"3.12-slim", "evil-3.12"}
    own = history.facts(
        [("docker.io/library/python", digest)],
        within={"docker.io/library/python": frozenset({"3.12*"})},
    )
    assert own["docker.io/library/python@" + digest].tags == {"3.12-slim"}
    assert history.facts([("docker.io/library/python", digest)], within={}) == {}


def test_the_tag_history_bound_evicts_tenants_tags_before_the_cluster_policies() -> None:
    """A tenant's glob listing thousands of tags cannot erase what a digest was tagged while
    the cluster policies watched it."""
    history = TagHistory(max_tags=2)
    history.share({"docker.io/library/python": frozenset({"3.8*"})})
    old = "sha256:" + "38" * 32
    history.record("docker.io/library/python", "3.8-slim", [old])
    for i in range(5):
        history.record("ghcr.io/evil/flood", f"t{i}", ["sha256:" + f"{i:02d}" * 32])
    known = history.known("docker.io/library/python", old)
    assert known is not None and known.tags == {"3.8-slim"}
    assert len(history) == 2
