"""The evaluator end to end: scope, exclusions, waivers, lowering, offline and failed lookups."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import pytest
from support.policy_builders import (
    D_IMG,
    D_NEW,
    D_OLD,
    NOW,
    built_on,
    g,
    img,
    lvl,
    nspol,
    plat,
    pol,
)

from controller.globs import GlobSet
from controller.lineage.model import End, PlatformLineage, Source
from controller.policy import evaluate as ev
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.model import (
    Action,
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
    LabelRequirement,
    LabelSelector,
    LineageSettings,
    Match,
    Mode,
    OnOutcome,
    Pinning,
    Require,
    RuleCode,
    Verify,
    Waiver,
    most_severe,
)
from controller.policy.verdict import ImageResult
from controller.roles import ImageRole

PROD = ObjectFacts(kind="Pod", name="web", namespace="prod-eu", labels={"app": "web"})
CI = ObjectFacts(kind="Dockerfile", name="Dockerfile")

A = "ghcr.io/acme/app:1.0.0"
PY312 = "docker.io/library/python:3.12-slim"
PY38 = DeprecatedEntry(
    GlobSet(("docker.io/library/python",)),
    tags=GlobSet(("3.8*",)),
    reason="Python 3.8 reached end of life on 2024-10-07",
    replacement="docker.io/library/python:3.12-slim",
)
ALLOW_PY312 = BaseEntry(GlobSet(("docker.io/library/python",)), tags=GlobSet(("3.12*-slim*",)))


def one(policies: list[CompiledPolicy], image: ImageFacts, obj: ObjectFacts = PROD) -> ImageResult:
    [result] = ev.evaluate(policies, obj, [image], now=NOW)
    return result


def seen(result: ImageResult) -> list[tuple[str, str, str]]:
    return [(v.policy, v.rule.value, v.action.value) for v in result.violations]


# --------------------------------------------------------------------------- scope


@dataclass
class Scope:
    id: str
    policy: CompiledPolicy
    obj: ObjectFacts
    applies: bool


SCOPES = [
    Scope("no-match-applies", pol(), PROD, True),
    Scope("namespaces-glob", pol(match=Match(namespaces=g("prod-*"))), PROD, True),
    Scope("namespaces-glob-miss", pol(match=Match(namespaces=g("dev-*"))), PROD, False),
    Scope("namespaces-empty-is-absent", pol(match=Match(namespaces=g())), PROD, True),
    Scope("exclude-namespaces", pol(match=Match(exclude_namespaces=g("prod-*"))), PROD, False),
    Scope(
        "exclude-namespaces-miss", pol(match=Match(exclude_namespaces=g("kube-system"))), PROD, True
    ),
    Scope(
        "namespace-selector-default-name-label",
        pol(
            match=Match(
                namespace_selector=LabelSelector(
                    match_labels=(("kubernetes.io/metadata.name", "prod-eu"),)
                )
            )
        ),
        PROD,
        True,
    ),
    Scope(
        "namespace-selector-labels",
        pol(match=Match(namespace_selector=LabelSelector(match_labels=(("tier", "prod"),)))),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={"tier": "prod"}),
        True,
    ),
    Scope(
        "namespace-selector-miss",
        pol(match=Match(namespace_selector=LabelSelector(match_labels=(("tier", "prod"),)))),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={"tier": "dev"}),
        False,
    ),
    Scope(
        "namespace-selector-in",
        pol(
            match=Match(
                namespace_selector=LabelSelector(
                    match_expressions=(
                        LabelRequirement("tier", "In", frozenset({"prod", "stage"})),
                    )
                )
            )
        ),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={"tier": "stage"}),
        True,
    ),
    Scope(
        "namespace-selector-notin",
        pol(
            match=Match(
                namespace_selector=LabelSelector(
                    match_expressions=(LabelRequirement("tier", "NotIn", frozenset({"dev"})),)
                )
            )
        ),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={"tier": "dev"}),
        False,
    ),
    Scope(
        "namespace-selector-exists",
        pol(
            match=Match(
                namespace_selector=LabelSelector(
                    match_expressions=(LabelRequirement("baseguard.io/enforce", "Exists"),)
                )
            )
        ),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={}),
        False,
    ),
    Scope(
        "namespace-selector-does-not-exist",
        pol(
            match=Match(
                namespace_selector=LabelSelector(
                    match_expressions=(LabelRequirement("baseguard.io/skip", "DoesNotExist"),)
                )
            )
        ),
        ObjectFacts(kind="Pod", namespace="x", namespace_labels={}),
        True,
    ),
    Scope(
        "object-selector",
        pol(match=Match(object_selector=LabelSelector(match_labels=(("app", "web"),)))),
        PROD,
        True,
    ),
    Scope(
        "object-selector-miss",
        pol(match=Match(object_selector=LabelSelector(match_labels=(("app", "db"),)))),
        PROD,
        False,
    ),
    Scope("namespaced-policy-own-namespace", nspol("prod-eu"), PROD, True),
    Scope("namespaced-policy-other-namespace", nspol("dev"), PROD, False),
    # A Dockerfile (no namespace) is covered only by policies not restricted to namespaces.
    Scope(
        "no-namespace-not-covered-by-namespace-globs",
        pol(match=Match(namespaces=g("dev-*"))),
        CI,
        False,
    ),
    Scope(
        "no-namespace-not-covered-by-namespace-selector",
        pol(match=Match(namespace_selector=LabelSelector(match_labels=(("env", "prod"),)))),
        CI,
        False,
    ),
    Scope(
        "no-namespace-covered-despite-exclusions",
        pol(match=Match(exclude_namespaces=g("kube-*"))),
        CI,
        True,
    ),
    Scope(
        "no-namespace-object-selector-needs-labels",
        pol(match=Match(object_selector=LabelSelector(match_labels=(("a", "b"),)))),
        CI,
        False,
    ),
    Scope("no-namespace-not-covered-by-namespaced-policy", nspol("dev"), CI, False),
]


@pytest.mark.parametrize("case", SCOPES, ids=[c.id for c in SCOPES])
def test_applicable(case: Scope) -> None:
    assert (ev.applicable([case.policy], case.obj) == [case.policy]) is case.applies
    result = one([case.policy], img("python", offline=True), case.obj)
    assert result.policies == ((case.policy.key,) if case.applies else ())


# --------------------------------------------------------------------------- laziness


@pytest.mark.parametrize(
    ("policies", "image", "obj", "needed"),
    [
        ([pol(pinning=Pinning(require=Require.DIGEST))], img(A, offline=True), PROD, False),
        ([pol(bases_deprecated=(PY38,))], img(A, offline=True), PROD, True),
        ([pol(lineage_declared=True)], img(A, offline=True), PROD, True),
        (
            [pol(bases_allowed=(ALLOW_PY312,), exclude_images=g("ghcr.io/acme/*"))],
            img(A, offline=True),
            PROD,
            False,
        ),
        (
            [pol(bases_allowed=(ALLOW_PY312,), match=Match(namespaces=g("dev")))],
            img(A, offline=True),
            PROD,
            False,
        ),
        ([pol(bases_allowed=(ALLOW_PY312,))], img("Bad:Ref"), PROD, False),
        (
            [pol(bases_allowed=(ALLOW_PY312,))],
            img(A, offline=True, role=ImageRole.BUILD),
            CI,
            False,
        ),
        ([pol(bases_allowed=(ALLOW_PY312,))], img(A, offline=True, role=ImageRole.BASE), CI, True),
        ([pol(pinning=Pinning(mutate_to_digest=True))], img(A, offline=True), PROD, True),
        (
            [pol(pinning=Pinning(mutate_to_digest=True))],
            img(f"{A}@{D_IMG}", offline=True),
            PROD,
            False,
        ),
        ([], img(A, offline=True), PROD, False),
    ],
    ids=[
        "pinning-only",
        "deprecated-list",
        "lineage-declared",
        "excluded-image",
        "policy-does-not-match",
        "invalid-reference",
        "build-stage",
        "dockerfile-base",
        "mutate-needs-digest",
        "mutate-already-pinned",
        "no-policy",
    ],
)
def test_needs_lineage(
    policies: list[CompiledPolicy], image: ImageFacts, obj: ObjectFacts, needed: bool
) -> None:
    assert ev.needs_lineage(policies, obj, image) is needed


# --------------------------------------------------------------------------- the rule table


@dataclass
class Case:
    id: str
    policies: list[CompiledPolicy]
    image: ImageFacts
    expect: list[tuple[str, str, str]]  # (policy, rule, action), in output order
    says: tuple[str, ...] = ()  # fragments the messages must contain
    not_evaluated: tuple[RuleCode, ...] = ()
    obj: ObjectFacts = field(default_factory=lambda: PROD)


def _with_layer_bases(image: ImageFacts, *bases: str) -> ImageFacts:
    """``image`` whose platforms' own layers start with those of ``bases`` (closest first)."""
    assert image.lineage is not None
    found = tuple(lvl(b, source=Source.LAYERS) for b in bases)
    platforms = tuple(replace(p, layer_bases=found) for p in image.lineage.platforms)
    return replace(image, lineage=replace(image.lineage, platforms=platforms))


CASES = [
    # reference rules
    Case(
        "invalid-reference",
        [pol()],
        img("Python:3.12"),
        [("p", "invalid-reference", "deny")],
        ("repository name must be lower case",),
    ),
    Case(
        "registry-not-allowed",
        [pol(registries_allowed=g("docker.io/library/*"))],
        img("quay.io/team/app:1.2.3", offline=True),
        [("p", "registry-not-allowed", "deny")],
        ("quay.io/team/app", "docker.io/library/*"),
    ),
    Case(
        "registry-allowed",
        [pol(registries_allowed=g("docker.io/library/*"))],
        img("python:3.12.3", offline=True),
        [],
    ),
    Case(
        "registries-allowed-empty-allows-nothing",
        [pol(registries_allowed=g())],
        img("python:3.12.3", offline=True),
        [("p", "registry-not-allowed", "deny")],
    ),
    Case(
        "disallowed-tag-implied",
        [pol()],
        img("python", offline=True),
        [("p", "disallowed-tag", "deny")],
        ('has no tag, so it pulls "latest"',),
    ),
    Case(
        "disallowed-tag-warn-mode",
        [pol(mode=Mode.WARN)],
        img("python:latest", offline=True),
        [("p", "disallowed-tag", "warn")],
    ),
    Case(
        "disallowed-tag-audit-mode",
        [pol(mode=Mode.AUDIT)],
        img("python:latest", offline=True),
        [("p", "disallowed-tag", "audit")],
    ),
    Case(
        "unpinned-digest",
        [pol(pinning=Pinning(require=Require.DIGEST))],
        img("python:3.12.3-slim", offline=True),
        [("p", "unpinned", "deny")],
        ("use docker.io/library/python:3.12.3-slim@sha256:<digest>",),
    ),
    Case(
        "unpinned-version",
        [pol(pinning=Pinning(require=Require.VERSION))],
        img("python:3.12-slim", offline=True),
        [("p", "unpinned", "deny")],
        ("3.12-slim",),
    ),
    Case(
        "pinned-version",
        [pol(pinning=Pinning(require=Require.VERSION))],
        img("nginx:1.25.3-alpine3.18", offline=True),
        [],
    ),
    # deprecated
    Case(
        "deprecated-self-offline",
        [pol(bases_deprecated=(PY38,))],
        img("python:3.8-slim", offline=True),
        [("p", "deprecated-base", "deny")],
        (
            "image docker.io/library/python:3.8-slim is deprecated (Python 3.8 reached end of life on 2024-10-07); use docker.io/library/python:3.12-slim",
        ),
        # a deprecated-only policy does not judge unknown bases (judges_unknown_base)
        (RuleCode.LINEAGE_MISMATCH, RuleCode.STALE_BASE),
    ),
    Case(
        "deprecated-ancestor",
        [pol(bases_deprecated=(PY38,))],
        built_on(A, "python:3.8-slim", "debian:bookworm-slim"),
        [("p", "deprecated-base", "deny")],
        (
            "image ghcr.io/acme/app:1.0.0 is built on docker.io/library/python:3.8-slim (deprecated: Python 3.8",
            "use docker.io/library/python:3.12-slim",
        ),
    ),
    Case(
        "deprecated-dockerfile-from-offline",
        [pol(bases_deprecated=(PY38,))],
        img("python:3.8", role=ImageRole.BASE, offline=True),
        [("p", "deprecated-base", "deny")],
        ("base image docker.io/library/python:3.8 is deprecated",),
        (RuleCode.LINEAGE_MISMATCH, RuleCode.STALE_BASE),
    ),
    Case(
        "deprecated-same-ancestor-two-platforms-once",
        [pol(bases_deprecated=(PY38,))],
        img(
            A,
            plat("linux/amd64", A, lvl("python:3.8-slim")),
            plat("linux/arm64", A, lvl("python:3.8-slim")),
        ),
        [("p", "deprecated-base", "deny")],
    ),
    Case(
        "deprecated-enforce-after-ahead-warns",
        [
            pol(
                bases_deprecated=(
                    DeprecatedEntry(
                        g("docker.io/library/python"),
                        tags=g("3.9*"),
                        reason="EOL 2025-10",
                        enforce_after=dt.date(2025, 10, 31),
                    ),
                )
            )
        ],
        built_on(A, "python:3.9-slim"),
        [("p", "deprecated-base", "warn")],
        ("enforced from 2025-10-31",),
    ),
    Case(
        "deprecated-enforce-after-passed-denies",
        [
            pol(
                bases_deprecated=(
                    DeprecatedEntry(
                        g("docker.io/library/python"),
                        tags=g("3.9*"),
                        reason="EOL",
                        enforce_after=dt.date(2025, 1, 1),
                    ),
                )
            )
        ],
        built_on(A, "python:3.9-slim"),
        [("p", "deprecated-base", "deny")],
    ),
    # allowlist
    Case(
        # Both platforms are built on the same base: one violation, not one per platform.
        "base-not-allowed-two-platforms-once",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(
            A,
            plat("linux/amd64", A, lvl("ghcr.io/acme/base:1")),
            plat("linux/arm64", A, lvl("ghcr.io/acme/base:1")),
        ),
        [("p", "base-not-allowed", "deny")],
    ),
    Case(
        "base-not-allowed",
        [pol(bases_allowed=(ALLOW_PY312,))],
        built_on(A, "ghcr.io/acme/base:1", "python:3.11-slim"),
        [("p", "base-not-allowed", "deny")],
        (
            "ghcr.io/acme/base:1 → docker.io/library/python:3.11-slim",
            "docker.io/library/python:3.12*-slim*",
            "rebuild it FROM an allowed base",
        ),
    ),
    Case(
        "allowed-grandparent",
        [pol(bases_allowed=(ALLOW_PY312,))],
        built_on(A, "ghcr.io/acme/base:1", "python:3.12.3-slim-bookworm"),
        [],
    ),
    Case(
        "allowed-self-offline",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img("python:3.12-slim", offline=True),
        [],
        (),
        (RuleCode.LINEAGE_MISMATCH, RuleCode.STALE_BASE),
    ),
    Case("allowed-self-no-base-found", [pol(bases_allowed=(ALLOW_PY312,))], img(PY312), []),
    Case(
        "allowed-scratch",
        [pol(bases_allowed=(BaseEntry(g("scratch")),))],
        img(
            "ghcr.io/acme/static:1.0.0",
            plat("linux/amd64", "ghcr.io/acme/static:1.0.0", end=End.SCRATCH),
        ),
        [],
    ),
    Case(
        "not-allowed-offline-is-not-evaluated",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(A, offline=True),
        [],
        (),
        (
            RuleCode.BASE_NOT_ALLOWED,
            RuleCode.UNKNOWN_BASE,
            RuleCode.LINEAGE_MISMATCH,
            RuleCode.STALE_BASE,
        ),
    ),
    Case(
        "unknown-base-not-doubled-by-base-not-allowed",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(A),
        [("p", "unknown-base", "deny")],
        ("no base could be established for image ghcr.io/acme/app:1.0.0 (linux/amd64)",),
        (RuleCode.BASE_NOT_ALLOWED,),
    ),
    Case(
        "deprecated-only-policy-does-not-judge-unknown-base",
        [pol(bases_deprecated=(PY38,))],
        img("ghcr.io/acme/app:1.0.0"),
        [],
    ),
    Case(
        "dockerfile-from-is-never-unknown",
        [pol(lineage_declared=True)],
        img("ghcr.io/acme/base:1", role=ImageRole.BASE),
        [],
    ),
    Case(
        "dockerfile-from-not-allowed",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img("ghcr.io/acme/base:1", role=ImageRole.BASE),
        [("p", "base-not-allowed", "deny")],
        ("base image ghcr.io/acme/base:1 is not an allowed base",),
    ),
    Case(
        "dockerfile-from-built-on-allowed",
        [pol(bases_allowed=(ALLOW_PY312,))],
        built_on("ghcr.io/acme/base:1", "python:3.12-slim", role=ImageRole.BASE),
        [],
    ),
    Case(
        "build-stage-reference-rules-only",
        [pol(bases_deprecated=(PY38,), bases_allowed=(ALLOW_PY312,))],
        img("python:3.8", role=ImageRole.BUILD, offline=True),
        [],
    ),
    Case(
        "build-stage-disallowed-tag",
        [pol(bases_deprecated=(PY38,))],
        img("golang", role=ImageRole.BUILD, offline=True),
        [("p", "disallowed-tag", "deny")],
    ),
    # lineage-mismatch and verification
    Case(
        "lineage-mismatch",
        [pol(lineage_declared=True)],
        img(
            A,
            plat(
                "linux/amd64",
                A,
                lvl(
                    PY312,
                    source=Source.LABEL,
                    verified=False,
                    note="the base's 4 layers are not a prefix",
                ),
            ),
        ),
        [("p", "lineage-mismatch", "deny")],
        (
            "claims (label, linux/amd64) to be built on docker.io/library/python:3.12-slim",
            "the base's 4 layers are not a prefix",
        ),
    ),
    Case(
        "contradicted-claim-does-not-pass-allowlist",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(A, plat("linux/amd64", A, lvl(PY312, source=Source.LABEL, verified=False))),
        [("p", "base-not-allowed", "deny"), ("p", "lineage-mismatch", "deny")],
        (
            "has no verified base: its claimed base docker.io/library/python:3.12-slim is contradicted by its layers",
        ),
    ),
    Case(
        "annotations-mode-trusts-claims",
        [pol(bases_allowed=(ALLOW_PY312,), lineage=LineageSettings(verify=Verify.ANNOTATIONS))],
        img(A, plat("linux/amd64", A, lvl(PY312, source=Source.LABEL, verified=False))),
        [],
    ),
    Case(
        "unverifiable-claim-is-kept",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(A, plat("linux/amd64", A, lvl(PY312, verified=None))),
        [],
    ),
    # stale
    Case(
        "stale-moved-tag",
        [pol(lineage_declared=True)],
        img(A, plat("linux/amd64", A, lvl(PY312, digest=D_OLD, moved_to=D_NEW))),
        [("p", "stale-base", "warn")],
        (f"that tag now points to {D_NEW} (linux/amd64); rebuild it",),
    ),
    Case(
        "stale-max-age-dockerfile-from",
        [pol(lineage=LineageSettings(max_base_age=dt.timedelta(days=30)), lineage_declared=True)],
        img(
            PY312,
            PlatformLineage(
                "linux/amd64",
                (lvl(PY312, source=Source.DOCKERFILE, created=dt.datetime(2025, 3, 1)),),
                End.KNOWN_BASE,
            ),
            role=ImageRole.BASE,
        ),
        [("p", "stale-base", "warn")],
        (
            "base image docker.io/library/python:3.12-slim was created 2025-03-01 (92 days ago), older than lineage.maxBaseAge (30 days); pull a freshly built tag",
        ),
    ),
    # lookups
    Case(
        "lookup-failed-whole",
        [pol(bases_allowed=(ALLOW_PY312,), bases_deprecated=(PY38,))],
        img(A, failure="timed out after 2.0s"),
        [("p", "lookup-failed", "deny")],
        ("could not be looked up: timed out after 2.0s",),
        (
            RuleCode.DEPRECATED_BASE,
            RuleCode.BASE_NOT_ALLOWED,
            RuleCode.UNKNOWN_BASE,
            RuleCode.LINEAGE_MISMATCH,
            RuleCode.STALE_BASE,
        ),
    ),
    Case(
        "lookup-failed-whole-still-judges-own-reference",
        [
            pol(
                bases_deprecated=(PY38,),
                lineage=LineageSettings(on_lookup_failure=OnOutcome.ALLOW),
                lineage_declared=True,
            )
        ],
        img("python:3.8-slim", failure="401 Unauthorized"),
        [("p", "deprecated-base", "deny")],
        (),
        (RuleCode.UNKNOWN_BASE, RuleCode.LINEAGE_MISMATCH, RuleCode.STALE_BASE),
    ),
    Case(
        "lookup-failed-partial-leaves-allowlist-open",
        [pol(bases_allowed=(ALLOW_PY312,))],
        img(
            A,
            plat(
                "linux/amd64",
                A,
                lvl("ghcr.io/acme/base:1"),
                end=End.LOOKUP_FAILED,
                failure="timed out",
            ),
        ),
        [("p", "lookup-failed", "deny")],
        ("stops at ghcr.io/acme/base:1 (linux/amd64): timed out",),
        (RuleCode.BASE_NOT_ALLOWED,),
    ),
    Case(
        "lookup-failed-partial-after-allowed-base",
        [
            pol(
                bases_allowed=(ALLOW_PY312,),
                lineage=LineageSettings(on_lookup_failure=OnOutcome.ALLOW),
            )
        ],
        img(A, plat("linux/amd64", A, lvl(PY312), end=End.LOOKUP_FAILED, failure="timed out")),
        [],
    ),
    # depth and platforms
    Case(
        # A cut is never silence: what lies past maxDepth was not evaluated.
        "max-depth-cut-is-lookup-failed",
        [pol(bases_deprecated=(PY38,), lineage=LineageSettings(max_depth=2))],
        built_on(A, "ghcr.io/acme/base:2", "ghcr.io/acme/core:2", "python:3.8"),
        [("p", "lookup-failed", "deny")],
        says=("was not evaluated past ghcr.io/acme/core:2", "lineage.maxDepth 2 was reached"),
        not_evaluated=(RuleCode.DEPRECATED_BASE,),
    ),
    Case(
        "max-depth-reaches-deprecated",
        [pol(bases_deprecated=(PY38,), lineage=LineageSettings(max_depth=3))],
        built_on(A, "ghcr.io/acme/base:2", "ghcr.io/acme/core:2", "python:3.8"),
        [("p", "deprecated-base", "deny")],
    ),
    Case(
        # The image's own layers start with a catalog base past the cut: judged all the same.
        "max-depth-cut-deprecated-base-found-by-layers",
        [pol(bases_deprecated=(PY38,), lineage=LineageSettings(max_depth=2))],
        _with_layer_bases(
            built_on(A, "ghcr.io/acme/base:2", "ghcr.io/acme/core:2", "python:3.8"), "python:3.8"
        ),
        [("p", "deprecated-base", "deny"), ("p", "lookup-failed", "deny")],
        says=("is built on docker.io/library/python:3.8 (deprecated",),
    ),
    Case(
        "max-depth-cut-allowed-base-found-by-layers",
        [pol(bases_allowed=(ALLOW_PY312,), lineage=LineageSettings(max_depth=1))],
        _with_layer_bases(built_on(A, "ghcr.io/acme/base:2", PY312), PY312),
        [("p", "lookup-failed", "deny")],
    ),
    Case(
        "max-depth-too-short-for-allowlist",
        [pol(bases_allowed=(ALLOW_PY312,), lineage=LineageSettings(max_depth=1))],
        built_on(A, "ghcr.io/acme/base:2", PY312),
        [("p", "lookup-failed", "deny")],
        not_evaluated=(RuleCode.BASE_NOT_ALLOWED,),
    ),
    Case(
        "platform-filter-skips-arm",
        [pol(bases_deprecated=(PY38,), lineage=LineageSettings(platforms=("linux/amd64",)))],
        img(A, plat("linux/amd64", A, lvl(PY312)), plat("linux/arm64/v8", A, lvl("python:3.8"))),
        [],
    ),
    Case(
        "platform-filter-arm64-is-arm64-v8",
        [pol(bases_deprecated=(PY38,), lineage=LineageSettings(platforms=("linux/arm64",)))],
        img(A, plat("linux/amd64", A, lvl(PY312)), plat("linux/arm64/v8", A, lvl("python:3.8"))),
        [("p", "deprecated-base", "deny")],
    ),
    Case(
        "platform-filter-arm-is-arm-v7",
        [pol(lineage_declared=True, lineage=LineageSettings(platforms=("linux/arm/v7",)))],
        img(A, plat("linux/amd64", A, lvl(PY312)), plat("linux/arm", A, end=End.UNCLAIMED)),
        [("p", "unknown-base", "deny")],
        ("(linux/arm)",),
    ),
    # several policies, exclusions
    Case(
        "most-severe-wins-and-order-is-stable",
        [
            pol("warn-eol", mode=Mode.WARN, bases_deprecated=(PY38,)),
            pol("enforce-pins", pinning=Pinning(require=Require.DIGEST)),
        ],
        img("python:3.8-slim", offline=True),
        [("enforce-pins", "unpinned", "deny"), ("warn-eol", "deprecated-base", "warn")],
        (),
        (RuleCode.LINEAGE_MISMATCH, RuleCode.STALE_BASE),
    ),
    Case(
        "exclude-by-repository",
        [pol(exclude_images=g("docker.io/library/*"))],
        img("python", offline=True),
        [],
    ),
    Case(
        "exclude-by-normalized",
        [pol(exclude_images=g("*:latest"))],
        img("python", offline=True),
        [],
    ),
    Case(
        "exclude-other-image",
        [pol(exclude_images=g("ghcr.io/acme/*"))],
        img("python", offline=True),
        [("p", "disallowed-tag", "deny")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rules(case: Case) -> None:
    result = one(case.policies, case.image, case.obj)
    assert seen(result) == case.expect
    text = "\n".join(v.message for v in result.violations)
    for fragment in case.says:
        assert fragment in text
    assert result.not_evaluated == case.not_evaluated
    assert all(v.waived is None and "\n" not in v.message for v in result.violations)


def test_most_severe_wins_across_policies() -> None:
    policies = [
        pol("warn", mode=Mode.WARN),
        pol("audit", mode=Mode.AUDIT),
        pol("enforce", mode=Mode.ENFORCE),
    ]
    result = one(policies, img("python:latest", offline=True))
    assert result.verdict is Action.DENY
    assert result.policies == ("audit", "enforce", "warn")
    assert [v.action for v in result.violations] == [Action.AUDIT, Action.DENY, Action.WARN]


def test_one_result_per_image_in_order() -> None:
    images = [img("python:3.12.3", offline=True), img("python", offline=True), img("Bad:Ref")]
    results = ev.evaluate([pol()], PROD, images, now=NOW)
    assert [r.facts for r in results] == images
    assert [r.verdict for r in results] == [Action.ALLOW, Action.DENY, Action.DENY]
    assert most_severe(r.verdict for r in results) is Action.DENY


def test_stale_base_by_age_uses_now_parameter() -> None:
    policy = pol(
        lineage=LineageSettings(max_base_age=dt.timedelta(days=120)), lineage_declared=True
    )
    image = img(
        A, plat("linux/amd64", A, lvl(PY312, created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)))
    )
    [late] = one([policy], image).violations
    assert (late.rule, late.action) == (RuleCode.STALE_BASE, Action.WARN)
    assert (
        "created 2025-01-01 (151 days ago), older than lineage.maxBaseAge (120 days)"
        in late.message
    )
    [early] = ev.evaluate([policy], PROD, [image], now=dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert early.violations == ()


# --------------------------------------------------------------------------- lowering


def _lowering_image(rule: RuleCode) -> ImageFacts:
    if rule is RuleCode.UNKNOWN_BASE:
        return img(A)
    if rule is RuleCode.LOOKUP_FAILED:
        return img(A, failure="connection refused")
    return img(A, plat("linux/amd64", A, lvl(PY312, digest=D_OLD, moved_to=D_NEW)))


_SETTING = {
    RuleCode.UNKNOWN_BASE: "on_unknown_base",
    RuleCode.LOOKUP_FAILED: "on_lookup_failure",
    RuleCode.STALE_BASE: "stale_base",
}


@pytest.mark.parametrize("rule", list(_SETTING), ids=str)
@pytest.mark.parametrize("mode", list(Mode), ids=str)
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (OnOutcome.DENY, {Mode.ENFORCE: "deny", Mode.WARN: "warn", Mode.AUDIT: "audit"}),
        (OnOutcome.WARN, {Mode.ENFORCE: "warn", Mode.WARN: "warn", Mode.AUDIT: "audit"}),
        (OnOutcome.ALLOW, {}),
    ],
    ids=str,
)
def test_outcome_settings_lower_the_action(
    rule: RuleCode, mode: Mode, outcome: OnOutcome, expected: dict[Mode, str]
) -> None:
    settings = LineageSettings(**{_SETTING[rule]: outcome})  # type: ignore[arg-type]
    result = one([pol(mode=mode, lineage=settings, lineage_declared=True)], _lowering_image(rule))
    got = [a for (_, r, a) in seen(result) if r == rule.value]
    assert got == ([expected[mode]] if mode in expected else [])


# --------------------------------------------------------------------------- waivers


def _waiver(until: dt.date, **kw: object) -> Waiver:
    kw.setdefault("images", g("docker.io/library/python"))
    kw.setdefault("namespaces", None)
    return Waiver(
        until=until,
        reason="migration to python 3.12 tracked in PAY-123",
        index=kw.pop("index", 0),
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("waiver", "obj", "waived"),
    [
        (_waiver(dt.date(2026, 3, 31)), PROD, True),
        (_waiver(NOW.date()), PROD, True),
        (_waiver(dt.date(2025, 5, 31)), PROD, False),
        (_waiver(dt.date(2026, 3, 31), images=g("docker.io/library/python:3.8*")), PROD, True),
        (_waiver(dt.date(2026, 3, 31), images=g("docker.io/acme/legacy-*")), PROD, False),
        (_waiver(dt.date(2026, 3, 31), namespaces=g("prod-*")), PROD, True),
        (_waiver(dt.date(2026, 3, 31), namespaces=g("payments")), PROD, False),
        (_waiver(dt.date(2026, 3, 31), namespaces=g("payments")), CI, False),
        (_waiver(dt.date(2026, 3, 31), images=None), CI, True),
    ],
    ids=[
        "active",
        "last-day",
        "expired",
        "by-normalized",
        "other-image",
        "namespace",
        "other-namespace",
        "namespaced-waiver-not-for-ci",
        "any-image",
    ],
)
def test_waivers(waiver: Waiver, obj: ObjectFacts, waived: bool) -> None:
    policy = pol(bases_deprecated=(PY38,), waivers=(waiver,))
    [v] = one([policy], img("python:3.8-slim", offline=True), obj).violations
    assert v.rule is RuleCode.DEPRECATED_BASE
    assert "python:3.8-slim is deprecated" in v.message  # a waiver never hides what it waives
    if waived:
        assert v.action is Action.ALLOW
        assert (
            v.waived
            == f"waived until {waiver.until.isoformat()}: migration to python 3.12 tracked in PAY-123 (exception #0)"
        )
    else:
        assert v.action is Action.DENY
        assert v.waived is None


def test_first_matching_waiver_is_named() -> None:
    waivers = (
        _waiver(dt.date(2025, 1, 1), index=0),
        _waiver(dt.date(2025, 12, 31), images=g("ghcr.io/*"), index=1),
        _waiver(dt.date(2025, 9, 30), index=2),
    )
    [v] = one([pol(waivers=waivers)], img("python:latest", offline=True)).violations
    assert (
        v.waived is not None
        and v.waived.startswith("waived until 2025-09-30:")
        and v.waived.endswith("(exception #2)")
    )
    assert one([pol(waivers=waivers)], img("python:latest", offline=True)).verdict is Action.ALLOW


@pytest.mark.parametrize(
    "image",
    ["REGISTRY.corp.example/base/python:3.8-slim", "Registry.Corp.Example/base/python:3.8-slim"],
    ids=["upper", "mixed"],
)
def test_a_host_written_in_upper_case_is_judged_as_the_lower_case_host(image: str) -> None:
    """Host names are case-insensitive: a rule for registry.corp.example cannot be walked
    around by shouting the host's name."""
    corp38 = DeprecatedEntry(g("registry.corp.example/base/python"), tags=g("3.8*"))
    policy = pol(bases_deprecated=(corp38,), registries_allowed=g("registry.corp.example/*"))
    assert seen(one([policy], img(image, offline=True))) == [("p", "deprecated-base", "deny")]


def test_legacy_hub_hosts_in_upper_case_are_docker_hub() -> None:
    for image in ("INDEX.DOCKER.IO/library/python:3.8", "Docker.io/python:3.8"):
        result = one([pol(bases_deprecated=(PY38,))], img(image, offline=True))
        assert seen(result) == [("p", "deprecated-base", "deny")], image
        assert result.facts.reference is not None
        assert result.facts.reference.name == "docker.io/library/python"
