"""One function per rule code (docs/policy-reference.md): facts in, violations out, no I/O.

Each function judges one rule of one policy for one image and returns what a
developer needs to fix it: *what* is wrong, *why*, and *what to use instead*,
on one line. Which rules run for which image (roles, offline, failed lookups,
waivers) is decided by :mod:`controller.policy.evaluate`; the functions here
only look at the facts they are handed.

The lineage rules see an image as :class:`Rung` s: the image itself (depth 0,
judged by its own reference, so a ``FROM python:3.8`` is deprecated without
asking the registry) and, per platform, the ancestors the policy looks at
(:class:`Chain`, already cut to ``lineage.maxDepth``).

A claim the layers contradict (``verify: Layers``) never satisfies the
allowlist, since a label is only a claim, but it still counts for deprecation:
a warning caused by a wrong label is cheaper than a missed end-of-life base.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from controller.lineage.model import MAX_DEPTH_LIMIT, End, Lineage
from controller.policy.facts import ImageFacts
from controller.policy.model import (
    SEVERITY,
    Action,
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
    OnOutcome,
    Require,
    RuleCode,
    Verify,
)
from controller.policy.rungs import (
    SCRATCH,
    Chain,
    Rung,
    Subject,
    allowed,
    chain_of,
    entry_matches,
    identify,
    level_rung,
    self_rung,
)
from controller.policy.verdict import Violation

__all__ = [  # the rungs are re-exported: rules and the evaluator speak of them together
    "SCRATCH",
    "Chain",
    "Rung",
    "Subject",
    "allowed",
    "chain_of",
    "entry_matches",
    "identify",
    "level_rung",
    "self_rung",
]
from controller.roles import ImageRole

_LIST_LIMIT = 4  # how many globs a message lists before "(+N more)"
_FULL_VERSION = re.compile(r"(?<![0-9.])[0-9]+\.[0-9]+\.[0-9]+")


# --------------------------------------------------------------------------- actions


def capped(action: Action, cap: Action = Action.WARN) -> Action:
    """``action``, but no more severe than ``cap`` (an audit stays an audit)."""
    return action if SEVERITY[action] <= SEVERITY[cap] else cap


def lowered(action: Action, outcome: OnOutcome) -> Action | None:
    """Apply ``onUnknownBase``/``onLookupFailure``/``staleBase``; ``None`` means no violation."""
    if outcome is OnOutcome.ALLOW:
        return None
    if outcome is OnOutcome.WARN:
        return capped(action)
    return action


# --------------------------------------------------------------------------- text helpers


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown} (+{more} more)" if more > 0 else shown


def _entry_texts(entries: Iterable[BaseEntry]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        for image in entry.image.patterns:
            if entry.tags:
                out.extend(f"{image}:{tag}" for tag in entry.tags.patterns)
            elif entry.digests:
                out.extend(f"{image}@{d}" for d in sorted(entry.digests))
            else:
                out.append(image)
    return out


def _platforms(platforms: Iterable[str]) -> str:
    return ", ".join(sorted(set(platforms)))


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _days(delta: dt.timedelta) -> str:
    days = delta.days
    return f"{days} day" if days == 1 else f"{days} days"


def _violation(policy: CompiledPolicy, rule: RuleCode, action: Action, message: str) -> Violation:
    return Violation(policy=policy.key, rule=rule, action=action, message=message)


# --------------------------------------------------------------------------- reference rules


def invalid_reference(policy: CompiledPolicy, image: ImageFacts) -> Violation | None:
    """The image string does not parse: nothing else can be judged about it."""
    if image.reference is not None:
        return None
    reason = image.invalid or f"invalid reference {image.image!r}"
    return _violation(
        policy,
        RuleCode.INVALID_REFERENCE,
        policy.base_action,
        f"{reason}; write [registry/]repository[:tag][@sha256:<digest>] "
        "in lower case, e.g. docker.io/library/python:3.12.3-slim",
    )


def registry_not_allowed(policy: CompiledPolicy, subject: Subject) -> Violation | None:
    allowed_registries = policy.registries_allowed
    if allowed_registries is None or allowed_registries.matches(subject.reference.name):
        return None
    return _violation(
        policy,
        RuleCode.REGISTRY_NOT_ALLOWED,
        policy.base_action,
        f"{subject.title} comes from {subject.reference.name}, which matches no allowed "
        f"registry ({_listing(allowed_registries.patterns) or 'none'}); "
        "use an image from an allowed registry, or mirror it there",
    )


def disallowed_tag(policy: CompiledPolicy, subject: Subject) -> Violation | None:
    """A moving tag such as ``latest``: what runs can change without anyone deploying."""
    ref = subject.reference
    tag = ref.effective_tag
    if tag is None or not policy.pinning.disallowed_tags.matches(tag):
        return None
    what = f'has no tag, so it pulls "{tag}"' if ref.tag is None else f'uses the tag "{tag}"'
    return _violation(
        policy,
        RuleCode.DISALLOWED_TAG,
        policy.base_action,
        f"{subject.title} {what}, which the policy disallows (a moving tag: what runs can "
        f"change without a deploy); pin a version tag or a digest, e.g. {ref.name}@sha256:<digest>",
    )


def has_full_version(tag: str) -> bool:
    """A tag holding three numeric parts: ``3.12.3-slim``, ``v1.2.3``, ``1.25.3-alpine3.18``."""
    return _FULL_VERSION.search(tag) is not None


def unpinned(policy: CompiledPolicy, subject: Subject) -> Violation | None:
    ref = subject.reference
    require = policy.pinning.require
    if require is Require.NONE or ref.digest is not None:
        return None
    if require is Require.DIGEST:
        message = (
            f"{subject.title} is not pinned by digest, and the policy requires pinning.require: "
            f"Digest (a tag can be moved to other content); use {ref.normalized}@sha256:<digest>"
        )
    else:
        tag = ref.effective_tag or ""
        if has_full_version(tag):
            return None
        message = (
            f'{subject.title} uses the tag "{tag}", which names no full version, and the policy '
            "requires pinning.require: Version (three numeric parts, e.g. 3.12.3-slim or v1.2.3); "
            f"pin a full version tag or a digest ({ref.name}@sha256:<digest>)"
        )
    return _violation(policy, RuleCode.UNPINNED, policy.base_action, message)


# --------------------------------------------------------------------------- lineage rules


def names_repository(policy: CompiledPolicy, name: str) -> bool:
    """Whether ``policy`` judges images of ``name`` by their tags (a base entry or the catalog)."""
    entries: list[BaseEntry | DeprecatedEntry] = [
        *(policy.bases_allowed or ()),
        *policy.bases_deprecated,
    ]
    return any(e.tags and e.image.matches(name) for e in entries) or any(
        ref.name == name for ref in policy.lineage.catalog
    )


def tag_mismatch(policy: CompiledPolicy, subject: Subject, rungs: Iterable[Rung]) -> list[Violation]:
    """A written tag that the pinned digest contradicts: the runtime pulls the digest.

    Reported under policies that judge the repository by its tags, for the image
    itself and for each base claim (``base.name`` a tag, ``base.digest`` the
    fact). A digest pinned while its tag named it, the tag having moved on, is
    in the history and never contradicts.
    """
    out: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for rung in rungs:
        known = rung.contradicted
        if known is None or rung.tag is None or not names_repository(policy, rung.name):
            continue
        digest = min(rung.digests) if rung.digests else "?"
        if (rung.display, digest) in seen:
            continue
        seen.add((rung.display, digest))
        really = ", ".join(f"{rung.name}:{t}" for t in sorted(known.tags, key=lambda t: (-len(t), t)))
        if rung.depth == 0:
            message = (
                f"{subject.title} says tag {rung.tag}, but the digest it pins is {really} "
                "(the runtime pulls the digest and ignores the tag); write the tag the digest "
                f"has, or pin the digest of {rung.name}:{rung.tag}"
            )
        else:
            message = (
                f"{subject.title} claims base {rung.name}:{rung.tag}, but the base digest it "
                f"names is {really}; it is judged as that image: fix the base annotations "
                "at build time, or rebuild on the base it names"
            )
        out.append(_violation(policy, RuleCode.TAG_MISMATCH, policy.base_action, message))
    return out


def deprecated_base(
    policy: CompiledPolicy, subject: Subject, rungs: Iterable[Rung], *, today: dt.date
) -> list[Violation]:
    """The image or an ancestor matches ``bases.deprecated``.

    Each entry is reported once, at the first (closest) rung it matches: an
    image that is itself deprecated needs no second line about its parent's
    tag. Before the entry's ``enforceAfter`` date a match only warns, and the
    message says when it starts to deny, so teams see the deadline coming.
    """
    out: list[Violation] = []
    reported: set[int] = set()
    for rung in rungs:
        hit = next(
            (
                i
                for i, e in enumerate(policy.bases_deprecated)
                if i not in reported and entry_matches(e, rung)
            ),
            None,
        )
        if hit is None:
            continue
        reported.add(hit)
        entry = policy.bases_deprecated[hit]
        action = policy.base_action
        suffix = ""
        if entry.enforce_after is not None and today < entry.enforce_after:
            action = capped(action)
            if action is not policy.base_action:
                suffix = f"; enforced from {entry.enforce_after.isoformat()}"
        fix = f"use {entry.replacement}" if entry.replacement else "move to a supported base"
        if rung.depth == 0:
            why = f"({entry.reason})" if entry.reason else "(no reason given)"
            message = f"{subject.title} is deprecated {why}; {fix}{suffix}"
        else:
            why = f"deprecated: {entry.reason}" if entry.reason else "deprecated"
            message = f"{subject.title} is built on {rung.display} ({why}); {fix}{suffix}"
        out.append(_violation(policy, RuleCode.DEPRECATED_BASE, action, message))
    return out


def base_not_allowed(
    policy: CompiledPolicy, subject: Subject, chains: Iterable[Chain]
) -> list[Violation]:
    """No allowed base in the (trusted part of the) lineage of each given platform.

    The caller has already ruled out the image itself being allowed and chains
    whose verdict a failed lookup leaves open.
    """
    if policy.bases_allowed is None:
        return []
    allowed_text = _listing(_entry_texts(policy.bases_allowed)) or "none"
    fix = "rebuild it FROM an allowed base"
    out: list[Violation] = []
    for chain in chains:
        if any(allowed(policy, r) for r in (*chain.trusted, *chain.beyond)):
            continue
        if chain.trusted:
            path = " → ".join(r.display for r in chain.trusted)
            message = (
                f"{subject.title} is built on {path}, but no base in that lineage matches "
                f"bases.allowed ({allowed_text}); {fix}"
            )
        elif chain.rungs:
            message = (
                f"{subject.title} has no verified base: its claimed base {chain.rungs[0].display} "
                f"is contradicted by its layers, and bases.allowed ({allowed_text}) needs one; {fix}"
            )
        elif subject.facts.role is ImageRole.BASE:
            message = (
                f"{subject.title} is not an allowed base, nor built on one "
                f"(allowed: {allowed_text}); use FROM an allowed base"
            )
        else:
            message = (
                f"{subject.title} is not an allowed base and no base was found within "
                f"lineage.maxDepth {policy.lineage.max_depth} (allowed: {allowed_text}); {fix}"
            )
        out.append(_violation(policy, RuleCode.BASE_NOT_ALLOWED, policy.base_action, message))
    return out


def unknown_base(
    policy: CompiledPolicy, subject: Subject, chains: Iterable[Chain]
) -> Violation | None:
    """No base could be established: nothing claimed, no catalog layer prefix.

    Only a chain that ends ``unclaimed`` counts: one whose lookup failed is left
    to ``lookup-failed``, one stopped by ``maxDepth`` before any base was not
    looked at. The caller
    skips Dockerfile ``FROM`` images (bases by definition) and allowed images.
    """
    action = lowered(policy.base_action, policy.lineage.on_unknown_base)
    if action is None:
        return None
    platforms = [c.platform for c in chains if not c.base_known and c.lineage.end is End.UNCLAIMED]
    if not platforms:
        return None
    return _violation(
        policy,
        RuleCode.UNKNOWN_BASE,
        action,
        f"no base could be established for {subject.title} ({_platforms(platforms)}): it carries "
        "no org.opencontainers.image.base.name/base.digest annotation or label and its layers "
        "match no lineage.catalog base; add those annotations at build time "
        "(docker buildx build --annotation, or LABEL) or list its base in lineage.catalog",
    )


def lineage_mismatch(
    policy: CompiledPolicy, subject: Subject, chains: Iterable[Chain]
) -> list[Violation]:
    """A claimed base whose layers are not a prefix of the claimant's (``verify: Layers``)."""
    if policy.lineage.verify is not Verify.LAYERS:
        return []
    found: dict[tuple[str, str, str, str], list[str]] = {}
    for chain in chains:
        for i, rung in enumerate(chain.rungs):
            level = rung.level
            if level is None or level.verified is not False:
                continue
            child = (
                subject.title
                if i == 0
                else f"{subject.title}: its base {chain.rungs[i - 1].display}"
            )
            key = (child, rung.display, level.source.value, level.note)
            found.setdefault(key, []).append(chain.platform)
    out = []
    for (child, claimed, source, note), platforms in found.items():
        detail = f" ({note})" if note else ""
        out.append(
            _violation(
                policy,
                RuleCode.LINEAGE_MISMATCH,
                policy.base_action,
                f"{child} claims ({source}, {_platforms(platforms)}) to be built on {claimed}, "
                f"but {claimed} is not a layer prefix of it{detail}; a label is only a claim: "
                "fix the base annotations at build time (an inherited label may name a grandparent)",
            )
        )
    return out


def stale_base(
    policy: CompiledPolicy, subject: Subject, chains: Sequence[Chain], *, now: dt.datetime
) -> list[Violation]:
    """The base tag has moved on since the build, or the base is older than ``maxBaseAge``."""
    action = lowered(policy.base_action, policy.lineage.stale_base)
    if action is None:
        return []
    messages = _moved_messages(subject, chains) + _age_messages(policy, subject, chains, now=now)
    return [_violation(policy, RuleCode.STALE_BASE, action, m) for m in messages]


def _moved_messages(subject: Subject, chains: Sequence[Chain]) -> list[str]:
    moved: dict[str, list[str]] = {}
    for chain in chains:
        for rung in chain.rungs:
            if rung.level is not None and rung.level.moved_to:
                moved.setdefault(rung.display, []).append(
                    f"{rung.level.moved_to} ({chain.platform})"
                )
    return [
        f"{subject.title} is built on {display}, but that tag now points to "
        f"{', '.join(sorted(targets))}; rebuild it to pick up the current base"
        for display, targets in moved.items()
    ]


def _age_messages(
    policy: CompiledPolicy, subject: Subject, chains: Sequence[Chain], *, now: dt.datetime
) -> list[str]:
    """The immediate base older than ``maxBaseAge`` (the oldest platform's build counts).

    For a Dockerfile ``FROM`` the image itself is the base whose age counts.
    """
    max_age = policy.lineage.max_base_age
    if max_age is None:
        return []
    is_base = subject.facts.role is ImageRole.BASE
    oldest: dict[str, dt.datetime] = {}
    for chain in chains:
        if is_base:
            display, level = subject.display, (chain.lineage.levels or (None,))[0]
        elif chain.rungs:
            display, level = chain.rungs[0].display, chain.rungs[0].level
        else:
            continue
        if level is None or level.created is None:
            continue
        created = _utc(level.created)
        if created < _utc(now) - max_age and created < oldest.get(display, created + max_age):
            oldest[display] = created
    out = []
    for display, created in oldest.items():
        if is_base:
            head = f"{subject.title} was created"
            fix = "pull a freshly built tag of it, or move to a maintained base"
        else:
            head = f"{subject.title} is built on {display}, created"
            fix = "rebuild it on a current base"
        out.append(
            f"{head} {created.date().isoformat()} ({_days(_utc(now) - created)} ago), older "
            f"than lineage.maxBaseAge ({_days(max_age)}); {fix}"
        )
    return out


def lookup_failed(
    policy: CompiledPolicy, subject: Subject, lineage: Lineage, chains: Iterable[Chain]
) -> list[Violation]:
    """The registry did not answer (for the image, or for a level of some platform)."""
    action = lowered(policy.base_action, policy.lineage.on_lookup_failure)
    if action is None:
        return []
    setting = f"lineage.onLookupFailure: {policy.lineage.on_lookup_failure.value}"
    if action.value != policy.lineage.on_lookup_failure.value.lower():  # say what is done
        setting += f", a {action.value} under mode: {policy.mode.value}"
    fix = "check the registry and the pull credentials, then retry"
    if lineage.failure is not None:
        return [
            _violation(
                policy,
                RuleCode.LOOKUP_FAILED,
                action,
                f"the lineage of {subject.title} could not be looked up: {lineage.failure} "
                f"({setting}); {fix}",
            )
        ]
    stops: dict[tuple[str, str], list[str]] = {}
    cuts: dict[str, list[str]] = {}
    for chain in chains:
        if chain.cut:
            at = chain.rungs[-1].display if chain.rungs else subject.display
            cuts.setdefault(at, []).append(chain.platform)
            continue
        if not chain.failed:
            continue
        last = chain.lineage.levels[-1] if chain.lineage.levels else None
        at = last.name if last is not None else subject.display
        reason = chain.lineage.failure or "no answer"
        stops.setdefault((at, reason), []).append(chain.platform)
    return [
        _violation(
            policy,
            RuleCode.LOOKUP_FAILED,
            action,
            f"the lineage of {subject.title} stops at {at} ({_platforms(platforms)}): {reason} "
            f"({setting}); {fix}",
        )
        for (at, reason), platforms in stops.items()
    ] + [
        _violation(
            policy,
            RuleCode.LOOKUP_FAILED,
            action,
            f"the lineage of {subject.title} was not evaluated past {at} "
            f"({_platforms(platforms)}): lineage.maxDepth {policy.lineage.max_depth} was reached "
            f"and {at} is built on a further base ({setting}); raise spec.lineage.maxDepth "
            f"(at most {MAX_DEPTH_LIMIT}) to follow the whole chain",
        )
        for at, platforms in cuts.items()
    ]


def not_evaluated(policy: CompiledPolicy, image: ImageFacts, reason: str) -> Violation | None:
    """The review ran out of evaluation CPU before ``policy`` judged ``image``.

    Like a failed lookup, never an allow by omission: ``onLookupFailure``
    decides, and ``reason`` names the bound that was reached.
    """
    action = lowered(policy.base_action, policy.lineage.on_lookup_failure)
    if action is None:
        return None
    setting = f"lineage.onLookupFailure: {policy.lineage.on_lookup_failure.value}"
    if action.value != policy.lineage.on_lookup_failure.value.lower():
        article = "an" if action.value[0] in "aeiou" else "a"
        setting += f", {article} {action.value} under mode: {policy.mode.value}"
    title = Subject(image, image.reference).title if image.reference else f"image {image.image}"
    return _violation(
        policy,
        RuleCode.LOOKUP_FAILED,
        action,
        f"{title} was not judged under this policy: {reason} ({setting}); shorten the "
        "policies' pattern lists (wider globs), or split the object into fewer images",
    )

