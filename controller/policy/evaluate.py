"""The evaluator: compiled policies + resolved facts → one result per image.

Pure and synchronous: the clock is the ``now`` parameter, lineage comes in
:class:`~controller.policy.facts.ImageFacts`. Adapters call
:func:`needs_lineage` first so the registry is only asked when some matching
policy would use the answer (lookups are lazy), then :func:`evaluate`.

Scope, in short:

* A ``BaseImagePolicy`` (``namespace`` set) covers only objects in its namespace;
  ``match`` narrows both kinds by namespace globs and label selectors.
* An object without a namespace (a Dockerfile checked in CI) is covered only
  by policies that do not restrict themselves to namespaces (no
  ``match.namespaces``, no ``namespaceSelector``, not the namespaced kind) and
  whose ``objectSelector``, if any, matches its (empty) labels: a policy
  written for ``prod-*`` says nothing about a Dockerfile.
  Waivers limited to ``namespaces`` do *not* cover such objects: a waiver is
  an exception for named places, never a blanket one.
* ``exclude.images`` and waiver ``images`` match the repository
  (``docker.io/acme/app``) or the full normalized reference.
* Lists that narrow (``namespaces``, entry ``tags``/``digests``, waiver
  ``images``/``namespaces``) treat an empty list as absent; allowlists
  (``registries.allowed``, ``bases.allowed``) given empty allow nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from controller.globs import GlobSet
from controller.lineage.identity import KnownTags
from controller.lineage.model import PlatformLineage
from controller.platforms import key as platform_key
from controller.policy import evidencerules, rules, trustrules
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.index import PolicyIndex
from controller.policy.model import (
    LINEAGE_RULES,
    SEVERITY,
    TRUST_RULES,
    Action,
    CompiledPolicy,
    OnOutcome,
    Require,
    RuleCode,
    Verify,
    Waiver,
)
from controller.policy.verdict import ImageResult, Violation
from controller.roles import ImageRole

_RULE_ORDER = {code: i for i, code in enumerate(RuleCode)}


# --------------------------------------------------------------------------- scope


def applicable(policies: Sequence[CompiledPolicy], obj: ObjectFacts) -> list[CompiledPolicy]:
    """The policies whose scope and ``match`` cover ``obj``, in the given order."""
    return [p for p in policies if _covers(p, obj)]


def applicable_indexed(index: PolicyIndex, obj: ObjectFacts) -> list[CompiledPolicy]:
    """:func:`applicable` over ``index.policies``, testing only the index's candidates.

    The same predicate on a superset, in the same order: the same answer as the
    scan, at a cost that depends on the policies about ``obj``'s namespace, not
    on how many there are.
    """
    return [p for p in index.candidates(obj.namespace) if _covers(p, obj)]


def _covers(policy: CompiledPolicy, obj: ObjectFacts) -> bool:
    """Scope and ``match``. An object with no namespace (a Dockerfile in CI) is
    covered only by policies that do not restrict themselves to namespaces: a
    policy written for ``prod-*`` says nothing about a Dockerfile, while a
    cluster-wide one (with or without ``excludeNamespaces``) does."""
    namespace = obj.namespace
    match = policy.match
    if namespace is None:
        return (
            policy.namespace is None
            and not match.namespaces
            and match.namespace_selector is None
            and (match.object_selector is None or match.object_selector.matches(obj.labels))
        )
    if policy.namespace is not None and policy.namespace != namespace:
        return False
    if match.namespaces and not match.namespaces.matches(namespace):
        return False
    if match.exclude_namespaces and match.exclude_namespaces.matches(namespace):
        return False
    if match.namespace_selector is not None and not match.namespace_selector.matches(
        obj.effective_namespace_labels
    ):
        return False
    return match.object_selector is None or match.object_selector.matches(obj.labels)


def _image_matches(globs: GlobSet, image: ImageFacts) -> bool:
    """``exclude.images``/waiver ``images``: the repository, or the reference as what it is.

    A tag is a claim: when the identity index knows the pinned digest, the
    reference is matched under the tags that name it, so ``python:3.12*`` in an
    exclusion never covers ``python:3.12-slim@<digest of 3.8-slim>``.
    """
    ref = image.reference
    if ref is None:
        return globs.matches(image.image)
    if globs.matches(ref.name):
        return True
    if ref.digest is None or not image.identities:
        return globs.matches(ref.normalized)
    tags, contradicted, _ = rules.identify(
        ref.name, ref.effective_tag, (ref.digest,), image.identities
    )
    if contradicted is None and globs.matches(ref.normalized):
        return True
    return any(globs.matches(replace(ref, tag=tag).normalized) for tag in tags)


def _excluded(policy: CompiledPolicy, image: ImageFacts) -> bool:
    globs = policy.exclude_images
    return bool(globs) and globs is not None and _image_matches(globs, image)


def _excluded_by_tag(policy: CompiledPolicy, image: ImageFacts) -> bool:
    """Excluded only through the written tag of a pinned digest, which the lookup may refute."""
    ref = image.reference
    globs = policy.exclude_images
    return (
        ref is not None
        and ref.digest is not None
        and globs is not None
        and not globs.matches(ref.name)
    )


def needs_lineage(policies: Sequence[CompiledPolicy], obj: ObjectFacts, image: ImageFacts) -> bool:
    """Whether looking ``image`` up in the registry could change any result.

    True when the image parsed, is not a build-only stage, and some applicable
    policy that does not exclude it judges lineage, or would pin it to a digest
    it does not carry yet.
    """
    ref = image.reference
    if ref is None or image.role is ImageRole.BUILD:
        return False
    for policy in applicable(policies, obj):
        if _excluded(policy, image) and not _excluded_by_tag(policy, image):
            continue
        if policy.judges_lineage or policy.trust is not None or policy.evidence is not None:
            return True
        if (
            policy.pinning.mutate_to_digest
            and image.role is ImageRole.CONTAINER
            and ref.digest is None
        ):
            return True
    return False


# --------------------------------------------------------------------------- evaluation


class CpuAccount(Protocol):
    """Where evaluation CPU is charged: the review's budget
    (:class:`controller.lineage.budget.ReviewBudget`)."""

    def charge_cpu(self, seconds: float) -> None: ...

    def cpu_exhausted(self, image_seconds: float = 0.0) -> str | None: ...


def evaluate(
    policies: Sequence[CompiledPolicy],
    obj: ObjectFacts,
    images: Sequence[ImageFacts],
    *,
    now: dt.datetime,
    account: CpuAccount | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> list[ImageResult]:
    """Judge every image of ``obj`` under every applicable policy; one result per image, in order.

    With ``account``, the CPU each image takes (``clock``: this thread's CPU time,
    so other reviews' work between slices is not counted) is charged to it, and
    it is asked before each policy whether any is left: once the image's or the
    review's bound is reached, the remaining policies do not judge the image and
    say so (:func:`rules.not_evaluated`, ``onLookupFailure`` decides).
    """
    covering = applicable(policies, obj)
    return [
        _evaluate_image(covering, obj, image, now=now, account=account, clock=clock)
        for image in images
    ]


def rules_of(policy: CompiledPolicy) -> set[RuleCode]:
    """The rules ``policy`` would judge an image by (what "not evaluated" lists when it cannot)."""
    out = set[RuleCode]()
    if policy.registries_allowed is not None:
        out.add(RuleCode.REGISTRY_NOT_ALLOWED)
    if policy.pinning.disallowed_tags:
        out.add(RuleCode.DISALLOWED_TAG)
    if policy.pinning.require is not Require.NONE:
        out.add(RuleCode.UNPINNED)
    if policy.judges_lineage:
        out |= LINEAGE_RULES - {RuleCode.LOOKUP_FAILED}
    if policy.trust is not None:
        out |= TRUST_RULES
    out |= evidencerules.rules_of(policy.evidence)
    return out


def _evaluate_image(
    policies: Sequence[CompiledPolicy],
    obj: ObjectFacts,
    image: ImageFacts,
    *,
    now: dt.datetime,
    account: CpuAccount | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> ImageResult:
    start = clock() if account is not None else 0.0
    today = now.date()
    violations: list[Violation] = []
    not_evaluated: set[RuleCode] = set()
    applied: list[CompiledPolicy] = []
    stopped: str | None = None
    for policy in sorted(policies, key=lambda p: p.key):
        if account is not None and stopped is None:
            stopped = account.cpu_exhausted(clock() - start)
        if stopped is not None:
            # Out of CPU: not judged, and said so. No waiver applies to what was not judged.
            applied.append(policy)
            not_evaluated |= rules_of(policy)
            unjudged = rules.not_evaluated(policy, image, stopped)
            violations += [unjudged] if unjudged is not None else []
            continue
        if _excluded(policy, image):
            continue
        applied.append(policy)
        found, skipped = _judge(policy, image, now=now)
        not_evaluated |= skipped
        waivers = _waiver(policy, obj, image, today)
        for violation in _dedupe(found):
            violations.append(_waive(violation, waivers) if waivers else violation)
    if account is not None:
        account.charge_cpu(clock() - start)
    violations.sort(key=lambda v: (v.policy, _RULE_ORDER[v.rule], v.message))
    return ImageResult(
        facts=image,
        violations=tuple(violations),
        not_evaluated=tuple(sorted(not_evaluated, key=_RULE_ORDER.__getitem__)),
        policies=tuple(dict.fromkeys(p.key for p in applied)),
    )


def _dedupe(found: Sequence[Violation]) -> list[Violation]:
    """One violation per (policy, rule, message): the most severe copy wins."""
    best: dict[tuple[str, RuleCode, str], Violation] = {}
    for v in found:
        key = (v.policy, v.rule, v.message)
        if key not in best or SEVERITY[v.action] > SEVERITY[best[key].action]:
            best[key] = v
    return list(best.values())


def _waiver(
    policy: CompiledPolicy, obj: ObjectFacts, image: ImageFacts, today: dt.date
) -> tuple[Waiver, ...]:
    """The exceptions covering this image today (``until`` inclusive): the policy's own
    first, then the exception objects of ``obj``'s namespace (only those: see
    :attr:`CompiledPolicy.granted`). Each finding takes the first whose ``rules`` hold it."""
    candidates = policy.waivers
    if obj.namespace is not None and policy.granted:
        candidates = candidates + policy.granted.get(obj.namespace, ())
    return tuple(w for w in candidates if _waiver_covers(w, obj, image, today))


def _waiver_covers(waiver: Waiver, obj: ObjectFacts, image: ImageFacts, today: dt.date) -> bool:
    if today > waiver.until:
        return False
    if waiver.scope is not None and obj.namespace != waiver.scope:
        return False  # an exception object never reaches past its own namespace
    if waiver.namespaces and (obj.namespace is None or not waiver.namespaces.matches(obj.namespace)):
        return False
    if waiver.namespace_selector is not None and (
        obj.namespace is None
        or not waiver.namespace_selector.matches(obj.effective_namespace_labels)
    ):
        return False  # labels name places in the cluster: never a Dockerfile in CI
    return not waiver.images or _image_matches(waiver.images, image)


def _waive(violation: Violation, waivers: Sequence[Waiver]) -> Violation:
    """``violation`` waived by the first of ``waivers`` that waives its rule (else unchanged)."""
    for waiver in waivers:
        if waiver.rules is None or violation.rule in waiver.rules:
            return Violation(
                policy=violation.policy,
                rule=violation.rule,
                action=Action.ALLOW,
                message=violation.message,
                waived=_waived_text(waiver),
                waived_by=waiver.label,
            )
    return violation


def _waived_text(waiver: Waiver) -> str:
    """What a waived finding says. An exception object is named before its reason: a
    warning is cut at 120 characters, and which exception waived is the fact to keep."""
    until = waiver.until.isoformat()
    if waiver.source is not None:
        head = f"waived until {until} by {waiver.source}"
        return f"{head}: {waiver.reason}" if waiver.reason else head
    return f"waived until {until}: {waiver.reason} ({waiver.label})"


def _judge(
    policy: CompiledPolicy, image: ImageFacts, *, now: dt.datetime
) -> tuple[list[Violation], set[RuleCode]]:
    """Every rule of one policy for one image: (violations, rules not evaluated)."""
    if image.reference is None:
        invalid = rules.invalid_reference(policy, image)
        return ([invalid] if invalid else []), set()
    subject = rules.Subject(image, image.reference)
    found = [
        v
        for v in (
            rules.registry_not_allowed(policy, subject),
            rules.disallowed_tag(policy, subject),
            rules.unpinned(policy, subject),
        )
        if v is not None
    ]
    if image.role is ImageRole.BUILD:
        return found, set()
    skipped = set[RuleCode]()
    if policy.judges_lineage:
        lineage_found, skipped = _judge_lineage(policy, subject, now=now)
        found += lineage_found
    if policy.trust is not None:
        trust_found, trust_skipped = trustrules.judge(policy, subject)
        found += trust_found
        skipped |= trust_skipped
    evidence_found, evidence_skipped = evidencerules.judge(policy, subject, now=now)
    found += evidence_found
    skipped |= evidence_skipped
    return found, skipped


def _judge_lineage(
    policy: CompiledPolicy, subject: rules.Subject, *, now: dt.datetime
) -> tuple[list[Violation], set[RuleCode]]:
    """The lineage rules; what the facts cannot decide goes to ``not_evaluated``.

    Without lineage (offline) or when the whole lookup failed, only the image's
    own reference is judged: a deprecated reference is deprecated and an
    allowed one is allowed, with or without the registry.
    """
    settings = policy.lineage
    lineage = subject.facts.lineage
    is_base = subject.facts.role is ImageRole.BASE
    identities = subject.facts.identities
    me = rules.self_rung(subject, lineage, identities)
    self_allowed = rules.allowed(policy, me)
    checks_allowed = policy.bases_allowed is not None and not self_allowed
    checks_unknown = (
        policy.judges_unknown_base
        and not is_base
        and not self_allowed
        and settings.on_unknown_base is not OnOutcome.ALLOW
    )
    checks_mismatch = settings.verify is Verify.LAYERS
    checks_stale = settings.stale_base is not OnOutcome.ALLOW

    if lineage is None or lineage.failure is not None:
        mismatch = rules.tag_mismatch(policy, subject, [me])
        deprecated = rules.deprecated_base(policy, subject, [me], today=now.date())
        failed = [] if lineage is None else rules.lookup_failed(policy, subject, lineage, ())
        ref = subject.reference
        offline = {
            code
            for code, open_ in (
                (
                    RuleCode.TAG_MISMATCH,
                    not mismatch
                    and me.unverified
                    and ref.tag is not None
                    and rules.names_repository(policy, ref.name),
                ),
                (RuleCode.DEPRECATED_BASE, bool(policy.bases_deprecated) and not deprecated),
                (RuleCode.BASE_NOT_ALLOWED, checks_allowed),
                (RuleCode.UNKNOWN_BASE, checks_unknown),
                (RuleCode.LINEAGE_MISMATCH, checks_mismatch),
                (RuleCode.STALE_BASE, checks_stale),
            )
            if open_
        }
        return mismatch + deprecated + failed, offline

    chains = _chains(policy, lineage.platforms, identities)
    # A chain cut at maxDepth still meets the bases its image's layers start with (``beyond``).
    rungs = [me, *(r for c in chains for r in (*c.rungs, *c.beyond))]
    found = rules.tag_mismatch(policy, subject, rungs)
    found += rules.deprecated_base(policy, subject, rungs, today=now.date())
    skipped = set[RuleCode]()
    if (
        any(c.failed for c in chains)
        and policy.bases_deprecated
        and not any(v.rule is RuleCode.DEPRECATED_BASE for v in found)
    ):
        skipped.add(RuleCode.DEPRECATED_BASE)
    if checks_allowed:
        decidable = [c for c in chains if _allowlist_decidable(policy, c, is_base=is_base)]
        if len(decidable) < len(chains):
            skipped.add(RuleCode.BASE_NOT_ALLOWED)
        found += rules.base_not_allowed(policy, subject, decidable)
    if checks_unknown:
        unknown = rules.unknown_base(policy, subject, chains)
        found += [unknown] if unknown else []
    found += rules.lineage_mismatch(policy, subject, chains)
    found += rules.stale_base(policy, subject, chains, now=now)
    found += rules.lookup_failed(policy, subject, lineage, chains)
    return found, skipped


def _allowlist_decidable(policy: CompiledPolicy, chain: rules.Chain, *, is_base: bool) -> bool:
    """Whether the facts settle ``base-not-allowed`` for this platform.

    An allowed ancestor settles it. Otherwise an unknown base is left to
    ``unknown-base`` (a Dockerfile ``FROM`` is a base itself, so never unknown),
    and a chain cut short by a failed lookup to ``lookup-failed``: the allowed
    base may sit just past the failure.
    """
    if any(rules.allowed(policy, r) for r in (*chain.trusted, *chain.beyond)):
        return True
    if chain.failed:
        return False
    return is_base or chain.base_known


def _chains(
    policy: CompiledPolicy,
    platforms: Sequence[PlatformLineage],
    identities: Mapping[str, KnownTags],
) -> list[rules.Chain]:
    settings = policy.lineage
    wanted = None if settings.platforms is None else {platform_key(p) for p in settings.platforms}
    out = []
    for lineage in platforms:
        if wanted is not None and platform_key(lineage.platform) not in wanted:
            continue
        out.append(
            rules.chain_of(
                lineage, max_depth=settings.max_depth, verify=settings.verify, identities=identities
            )
        )
    return out
