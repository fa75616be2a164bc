"""The rule functions one by one: what they match, and what their messages tell a developer."""

from __future__ import annotations

import datetime as dt

import pytest
from support.policy_builders import D_IMG, D_NEW, D_OLD, NOW, g, lvl, plat, pol

from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source
from controller.policy import rules
from controller.policy.facts import ImageFacts
from controller.policy.model import (
    Action,
    BaseEntry,
    DeprecatedEntry,
    LineageSettings,
    Mode,
    OnOutcome,
    Pinning,
    Require,
    RuleCode,
    Verify,
)
from controller.reference import parse
from controller.roles import ImageRole


def subject(text: str, role: ImageRole = ImageRole.CONTAINER) -> rules.Subject:
    ref = parse(text)
    return rules.Subject(ImageFacts(image=text, role=role, reference=ref), ref)


def chain(
    *ancestors: Level, end: End = End.KNOWN_BASE, depth: int = 4, verify: Verify = Verify.LAYERS
) -> rules.Chain:
    return rules.chain_of(
        plat("linux/amd64", "ghcr.io/acme/app:1.0.0", *ancestors, end=end),
        max_depth=depth,
        verify=verify,
    )


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(
    ("action", "outcome", "expected"),
    [
        (Action.DENY, OnOutcome.DENY, Action.DENY),
        (Action.WARN, OnOutcome.DENY, Action.WARN),
        (Action.AUDIT, OnOutcome.DENY, Action.AUDIT),
        (Action.DENY, OnOutcome.WARN, Action.WARN),
        (Action.WARN, OnOutcome.WARN, Action.WARN),
        (Action.AUDIT, OnOutcome.WARN, Action.AUDIT),
        (Action.DENY, OnOutcome.ALLOW, None),
        (Action.AUDIT, OnOutcome.ALLOW, None),
    ],
    ids=lambda x: str(x),
)
def test_lowered_never_raises_severity(
    action: Action, outcome: OnOutcome, expected: Action | None
) -> None:
    assert rules.lowered(action, outcome) == expected


# --------------------------------------------------------------------------- versions and entries


@pytest.mark.parametrize(
    ("tag", "full"),
    [
        ("3.12.3-slim", True),
        ("v1.2.3", True),
        ("1.25.3-alpine3.18", True),
        ("release-2.4.1", True),
        ("3.12-slim", False),
        ("bookworm-20240110", False),
        ("3", False),
        ("latest", False),
        ("alpine3.18", False),
    ],
    ids=lambda x: str(x),
)
def test_full_version(tag: str, full: bool) -> None:
    assert rules.has_full_version(tag) is full


@pytest.mark.parametrize(
    ("entry", "rung", "matches"),
    [
        (
            BaseEntry(g("docker.io/library/python")),
            rules.level_rung(lvl("python:3.12-slim"), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/*")),
            rules.level_rung(lvl("ghcr.io/acme/python:3.12"), 1),
            False,
        ),
        (
            BaseEntry(g("docker.io/library/python"), tags=g("3.12*-slim*")),
            rules.level_rung(lvl("python:3.12.3-slim"), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/python"), tags=g("3.12*-slim*")),
            rules.level_rung(lvl("python:3.11-slim"), 1),
            False,
        ),
        (
            BaseEntry(g("docker.io/library/python"), tags=g("latest")),
            rules.level_rung(lvl("python"), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/python"), tags=g("*")),
            rules.level_rung(lvl(f"python@{D_OLD}"), 1),
            False,
        ),
        (
            BaseEntry(g("docker.io/library/python"), tags=g()),
            rules.level_rung(lvl(f"python@{D_OLD}"), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/python"), digests=frozenset({D_OLD})),
            rules.level_rung(lvl("python:3.12", digest=D_OLD), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/python"), digests=frozenset({D_OLD})),
            rules.level_rung(lvl(f"python:3.12@{D_OLD}"), 1),
            True,
        ),
        (
            BaseEntry(g("docker.io/library/python"), digests=frozenset({D_OLD})),
            rules.level_rung(lvl("python:3.12", digest=D_NEW), 1),
            False,
        ),
        (
            BaseEntry(g("docker.io/library/python"), digests=frozenset()),
            rules.level_rung(lvl("python:3.12", digest=D_NEW), 1),
            True,
        ),
        (BaseEntry(g("scratch")), rules.level_rung(lvl(None), 1), True),
    ],
    ids=[
        "repository",
        "other-registry",
        "tag-glob",
        "tag-glob-miss",
        "no-tag-is-latest",
        "digest-only-has-no-tag",
        "empty-tags-any",
        "level-digest",
        "reference-digest",
        "digest-miss",
        "empty-digests-any",
        "scratch",
    ],
)
def test_entry_matches(entry: BaseEntry, rung: rules.Rung, matches: bool) -> None:
    assert rules.entry_matches(entry, rung) is matches


# --------------------------------------------------------------------------- chains


def test_chain_is_cut_at_max_depth_and_the_cut_is_a_failure_of_its_own() -> None:
    """A policy whose depth stops short of a failed level is not told about that failure,
    but it is told that it was cut: what lies above its last rung was not evaluated."""
    lin = PlatformLineage(
        "linux/amd64",
        (
            lvl("ghcr.io/acme/app:1", source=Source.IMAGE),
            lvl("ghcr.io/acme/base:1"),
            lvl("python:3.12"),
        ),
        End.LOOKUP_FAILED,
        failure="timeout",
    )
    short = rules.chain_of(lin, max_depth=1, verify=Verify.LAYERS)
    full = rules.chain_of(lin, max_depth=4, verify=Verify.LAYERS)
    assert [r.display for r in short.rungs] == ["ghcr.io/acme/base:1"]
    assert short.failed is True and short.cut is True
    assert full.cut is False
    assert [r.display for r in full.rungs] == [
        "ghcr.io/acme/base:1",
        "docker.io/library/python:3.12",
    ]
    assert full.failed is True


def test_chain_built_from_scratch_gets_a_scratch_rung() -> None:
    c = chain(end=End.SCRATCH)
    assert [r.display for r in c.rungs] == ["scratch"]
    assert [r.display for r in chain(lvl(None), end=End.SCRATCH).rungs] == ["scratch"]


@pytest.mark.parametrize(
    ("verify", "trusted"),
    [
        (Verify.LAYERS, ["ghcr.io/acme/base:1"]),
        (Verify.ANNOTATIONS, ["ghcr.io/acme/base:1", "docker.io/library/python:3.12-slim"]),
    ],
    ids=["layers-stops-at-contradiction", "annotations-trusts-claims"],
)
def test_trusted_rungs(verify: Verify, trusted: list[str]) -> None:
    c = chain(
        lvl("ghcr.io/acme/base:1", verified=None),
        lvl("python:3.12-slim", verified=False),
        verify=verify,
    )
    assert [r.display for r in c.trusted] == trusted


# --------------------------------------------------------------------------- reference rules


def test_invalid_reference_says_why_and_how_to_write_it() -> None:
    facts = ImageFacts(
        image="Python:3.12",
        invalid="invalid reference 'Python:3.12': repository name must be lower case",
    )
    v = rules.invalid_reference(pol(), facts)
    assert v is not None and v.rule is RuleCode.INVALID_REFERENCE and v.action is Action.DENY
    assert "repository name must be lower case" in v.message
    assert "docker.io/library/python:3.12.3-slim" in v.message


def test_registry_not_allowed_names_repository_and_allowed_globs() -> None:
    p = pol(registries_allowed=g("docker.io/library/*", "ghcr.io/acme/*"))
    v = rules.registry_not_allowed(p, subject("quay.io/team/app:1.2.3"))
    assert v is not None
    assert v.message.startswith("image quay.io/team/app:1.2.3 comes from quay.io/team/app")
    assert "docker.io/library/*, ghcr.io/acme/*" in v.message
    assert rules.registry_not_allowed(p, subject("ghcr.io/acme/app:1.2.3")) is None
    assert rules.registry_not_allowed(pol(), subject("quay.io/team/app:1.2.3")) is None


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("python:latest", 'uses the tag "latest"'),
        ("python", 'has no tag, so it pulls "latest"'),
        ("ghcr.io/acme/app:edge", 'uses the tag "edge"'),
        ("python:latest@" + D_IMG, 'uses the tag "latest"'),
        ("python@" + D_IMG, None),
        ("python:3.12.3", None),
    ],
    ids=[
        "explicit-latest",
        "implied-latest",
        "glob",
        "latest-with-digest",
        "digest-only",
        "version",
    ],
)
def test_disallowed_tag(image: str, fragment: str | None) -> None:
    p = pol(pinning=Pinning(disallowed_tags=g("latest", "edge*")))
    v = rules.disallowed_tag(p, subject(image))
    if fragment is None:
        assert v is None
        return
    assert v is not None and fragment in v.message
    assert "pin a version tag or a digest" in v.message
    assert f"{parse(image).name}@sha256:<digest>" in v.message


@pytest.mark.parametrize(
    ("require", "image", "fragment"),
    [
        (
            Require.DIGEST,
            "python:3.12.3-slim",
            "use docker.io/library/python:3.12.3-slim@sha256:<digest>",
        ),
        (Require.DIGEST, f"python:3.12.3-slim@{D_IMG}", None),
        (
            Require.VERSION,
            "python:3.12-slim",
            'uses the tag "3.12-slim", which names no full version',
        ),
        (Require.VERSION, "debian:bookworm-20240110", 'uses the tag "bookworm-20240110"'),
        (Require.VERSION, "python", 'uses the tag "latest"'),
        (Require.VERSION, "python:3.12.3-slim", None),
        (Require.VERSION, f"python:3.12-slim@{D_IMG}", None),
        (Require.NONE, "python", None),
    ],
    ids=[
        "digest-missing",
        "digest-present",
        "version-minor-only",
        "version-date",
        "version-none",
        "version-full",
        "version-by-digest",
        "none",
    ],
)
def test_unpinned(require: Require, image: str, fragment: str | None) -> None:
    v = rules.unpinned(pol(pinning=Pinning(require=require)), subject(image))
    if fragment is None:
        assert v is None
        return
    assert v is not None and v.rule is RuleCode.UNPINNED
    assert fragment in v.message


# --------------------------------------------------------------------------- lineage rules

PY38 = DeprecatedEntry(
    g("docker.io/library/python"),
    tags=g("3.8*"),
    reason="Python 3.8 reached end of life on 2024-10-07",
    replacement="docker.io/library/python:3.12-slim",
)


def test_deprecated_ancestor_message_is_the_documented_one() -> None:
    entry = DeprecatedEntry(
        g("docker.io/library/python"),
        tags=g("3.8"),
        reason=PY38.reason,
        replacement=PY38.replacement,
    )
    s = subject("python:3.8-slim")
    rung = rules.level_rung(lvl("python:3.8"), 1)
    [v] = rules.deprecated_base(
        pol(bases_deprecated=(entry,)), s, [rules.self_rung(s, None), rung], today=NOW.date()
    )
    assert v.message == (
        "image docker.io/library/python:3.8-slim is built on docker.io/library/python:3.8 "
        "(deprecated: Python 3.8 reached end of life on 2024-10-07); use docker.io/library/python:3.12-slim"
    )


def test_deprecated_entry_is_reported_once_at_the_closest_level() -> None:
    debian = DeprecatedEntry(
        g("docker.io/library/debian"), tags=g("buster*"), reason="Debian 10 is EOL"
    )
    s = subject("python:3.8-slim")
    ancestors = [
        rules.level_rung(lvl("python:3.8"), 1),
        rules.level_rung(lvl("debian:buster-slim"), 2),
    ]
    out = rules.deprecated_base(
        pol(bases_deprecated=(PY38, debian)),
        s,
        [rules.self_rung(s, None), *ancestors],
        today=NOW.date(),
    )
    assert [v.message.split(";")[0] for v in out] == [
        "image docker.io/library/python:3.8-slim is deprecated (Python 3.8 reached end of life on 2024-10-07)",
        "image docker.io/library/python:3.8-slim is built on docker.io/library/debian:buster-slim (deprecated: Debian 10 is EOL)",
    ]
    assert out[1].message.endswith("; move to a supported base")


def test_deprecated_self_and_base_role_wording() -> None:
    s = subject("python:3.8", ImageRole.BASE)
    [v] = rules.deprecated_base(
        pol(bases_deprecated=(PY38,)), s, [rules.self_rung(s, None)], today=NOW.date()
    )
    assert v.message == (
        "base image docker.io/library/python:3.8 is deprecated (Python 3.8 reached end of life "
        "on 2024-10-07); use docker.io/library/python:3.12-slim"
    )


@pytest.mark.parametrize(
    ("mode", "enforce_after", "action", "suffix"),
    [
        (Mode.ENFORCE, dt.date(2025, 9, 1), Action.WARN, "; enforced from 2025-09-01"),
        (Mode.ENFORCE, dt.date(2025, 6, 1), Action.DENY, ""),
        (Mode.ENFORCE, dt.date(2025, 1, 1), Action.DENY, ""),
        (Mode.AUDIT, dt.date(2025, 9, 1), Action.AUDIT, ""),
        (Mode.WARN, dt.date(2025, 9, 1), Action.WARN, ""),
    ],
    ids=["enforce-before", "enforce-on-the-day", "enforce-after", "audit-before", "warn-before"],
)
def test_deprecated_enforce_after(
    mode: Mode, enforce_after: dt.date, action: Action, suffix: str
) -> None:
    entry = DeprecatedEntry(
        g("docker.io/library/python"), tags=g("3.8*"), reason="EOL", enforce_after=enforce_after
    )
    s = subject("python:3.8")
    [v] = rules.deprecated_base(
        pol(mode=mode, bases_deprecated=(entry,)), s, [rules.self_rung(s, None)], today=NOW.date()
    )
    assert v.action is action
    assert v.message.endswith("move to a supported base" + suffix)


def test_base_not_allowed_lists_the_lineage_and_the_allowlist() -> None:
    p = pol(
        bases_allowed=(
            BaseEntry(g("docker.io/library/python"), tags=g("3.12*-slim*", "3.13*-slim*")),
        )
    )
    c = chain(lvl("ghcr.io/acme/base:1"), lvl("python:3.11-slim"))
    [v] = rules.base_not_allowed(p, subject("ghcr.io/acme/app:1.0.0"), [c])
    assert v.message == (
        "image ghcr.io/acme/app:1.0.0 is built on ghcr.io/acme/base:1 → docker.io/library/python:3.11-slim, "
        "but no base in that lineage matches bases.allowed (docker.io/library/python:3.12*-slim*, "
        "docker.io/library/python:3.13*-slim*); rebuild it FROM an allowed base"
    )
    assert (
        rules.base_not_allowed(
            p, subject("ghcr.io/acme/app:1.0.0"), [chain(lvl("python:3.12.3-slim"))]
        )
        == []
    )


def test_unknown_base_names_platforms_and_the_fix() -> None:
    c1 = rules.chain_of(
        plat("linux/arm64", "ghcr.io/acme/app:1", end=End.UNCLAIMED),
        max_depth=4,
        verify=Verify.LAYERS,
    )
    c2 = rules.chain_of(
        plat("linux/amd64", "ghcr.io/acme/app:1", end=End.UNCLAIMED),
        max_depth=4,
        verify=Verify.LAYERS,
    )
    v = rules.unknown_base(pol(), subject("ghcr.io/acme/app:1"), [c1, c2])
    assert v is not None
    assert v.message.startswith(
        "no base could be established for image ghcr.io/acme/app:1 (linux/amd64, linux/arm64)"
    )
    assert "org.opencontainers.image.base.name" in v.message and "lineage.catalog" in v.message


@pytest.mark.parametrize(
    ("end", "fires"),
    [
        (End.UNCLAIMED, True),
        (End.LOOKUP_FAILED, False),
        (End.MAX_DEPTH, False),
        (End.SCRATCH, False),
        (End.KNOWN_BASE, False),
    ],
    ids=str,
)
def test_unknown_base_only_when_nothing_was_claimed(end: End, fires: bool) -> None:
    c = rules.chain_of(
        plat("linux/amd64", "ghcr.io/acme/app:1", end=end), max_depth=4, verify=Verify.LAYERS
    )
    assert (rules.unknown_base(pol(), subject("ghcr.io/acme/app:1"), [c]) is not None) is fires


def test_lineage_mismatch_says_who_claimed_what() -> None:
    c = chain(
        lvl(
            "python:3.12-slim",
            source=Source.LABEL,
            verified=False,
            note="3 of 5 base layers differ",
        )
    )
    [v] = rules.lineage_mismatch(pol(), subject("ghcr.io/acme/app:1"), [c])
    assert v.message.startswith(
        "image ghcr.io/acme/app:1 claims (label, linux/amd64) to be built on docker.io/library/python:3.12-slim, "
        "but docker.io/library/python:3.12-slim is not a layer prefix of it (3 of 5 base layers differ)"
    )
    assert (
        rules.lineage_mismatch(
            pol(lineage=LineageSettings(verify=Verify.ANNOTATIONS)),
            subject("ghcr.io/acme/app:1"),
            [c],
        )
        == []
    )


def test_stale_base_moved_tag_names_the_new_digest() -> None:
    c = chain(lvl("python:3.12-slim", digest=D_OLD, moved_to=D_NEW))
    [v] = rules.stale_base(pol(), subject("ghcr.io/acme/app:1"), [c], now=NOW)
    assert v.action is Action.WARN  # staleBase defaults to Warn
    assert v.message == (
        f"image ghcr.io/acme/app:1 is built on docker.io/library/python:3.12-slim, but that tag now points to "
        f"{D_NEW} (linux/amd64); rebuild it to pick up the current base"
    )


@pytest.mark.parametrize(
    ("created", "fires"),
    [
        (dt.datetime(2024, 11, 1, tzinfo=dt.UTC), True),
        (dt.datetime(2024, 11, 1), True),  # naive: read as UTC
        (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), False),
        (None, False),
    ],
    ids=["old", "old-naive", "young", "unknown-date"],
)
def test_stale_base_by_age(created: dt.datetime | None, fires: bool) -> None:
    p = pol(lineage=LineageSettings(max_base_age=dt.timedelta(days=180)))
    c = chain(lvl("python:3.12-slim", created=created))
    out = rules.stale_base(p, subject("ghcr.io/acme/app:1"), [c], now=NOW)
    if not fires:
        assert out == []
        return
    [v] = out
    assert v.message == (
        "image ghcr.io/acme/app:1 is built on docker.io/library/python:3.12-slim, created 2024-11-01 "
        "(212 days ago), older than lineage.maxBaseAge (180 days); rebuild it on a current base"
    )


def test_lookup_failed_whole_and_partial() -> None:
    s = subject("ghcr.io/acme/app:1")
    whole = Lineage(reference=s.reference, digest=None, failure="401 Unauthorized from ghcr.io")
    [v] = rules.lookup_failed(pol(), s, whole, [])
    assert v.message.startswith(
        "the lineage of image ghcr.io/acme/app:1 could not be looked up: 401 Unauthorized"
    )
    assert "lineage.onLookupFailure: Deny" in v.message and "credentials" in v.message
    partial = rules.chain_of(
        PlatformLineage(
            "linux/arm64",
            (lvl("ghcr.io/acme/app:1"), lvl("ghcr.io/acme/base:1")),
            End.LOOKUP_FAILED,
            failure="timed out after 2s",
        ),
        max_depth=4,
        verify=Verify.LAYERS,
    )
    [v] = rules.lookup_failed(pol(), s, Lineage(reference=s.reference, digest=D_IMG), [partial])
    assert v.message.startswith(
        "the lineage of image ghcr.io/acme/app:1 stops at ghcr.io/acme/base:1 (linux/arm64): timed out after 2s"
    )
