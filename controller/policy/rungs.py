"""The image as a base entry sees it: rungs (the image, then its ancestors) and chains.

PURE. A :class:`Rung` is one image of a lineage with the name and the tags it is
*judged* as: a tag is a claim and a digest a fact, so a pinned digest the
identity index knows is judged as the tags that name it (:func:`identify`).
A :class:`Chain` is one platform's ancestry cut to ``lineage.maxDepth``. The
rules in :mod:`controller.policy.rules` read these; entries match them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.lineage.identity import KnownTags, identity_key
from controller.lineage.model import End, Level, Lineage, PlatformLineage
from controller.policy.facts import ImageFacts
from controller.policy.model import BaseEntry, CompiledPolicy, DeprecatedEntry, Verify
from controller.reference import Reference
from controller.roles import ImageRole

SCRATCH = "scratch"


@dataclass(frozen=True)
class Subject:
    """The image being judged, known to have parsed."""

    facts: ImageFacts
    reference: Reference

    @property
    def display(self) -> str:
        return self.reference.normalized

    @property
    def noun(self) -> str:
        """How messages call it: a Dockerfile ``FROM`` is a base image by definition."""
        return "base image" if self.facts.role is ImageRole.BASE else "image"

    @property
    def title(self) -> str:
        return f"{self.noun} {self.display}"


@dataclass(frozen=True)
class Rung:
    """One image of the lineage as a base entry sees it.

    ``name`` is the repository (``docker.io/library/python``) or ``scratch``;
    ``tag`` the effective tag as written (``None`` for a digest-only reference);
    ``digests`` every digest known for it. ``tags`` are the tags the rung is
    *judged* as: a tag is a claim and a digest a fact, so when the identity
    index knows the pinned digest, these are the tags that name it (now or in
    the history seen), and ``contradicted`` holds that knowledge when the
    written tag is not among them. Otherwise ``tags`` is the written tag alone
    (``unverified`` when a digest was pinned that the index has not seen).
    """

    name: str
    tag: str | None
    digests: frozenset[str]
    display: str
    depth: int  # 0: the image itself
    level: Level | None = None
    tags: frozenset[str] = frozenset()
    contradicted: KnownTags | None = None
    unverified: bool = False


@dataclass(frozen=True)
class Chain:
    """One platform's ancestry as a policy sees it (``maxDepth`` applied).

    ``trusted`` are the rungs before the first level whose claim the layers
    contradict (with ``verify: Layers``): a label is only a claim, so a false
    one must not satisfy the allowlist. ``failed`` is a lookup failure the
    policy's depth actually reaches.
    """

    platform: str
    lineage: PlatformLineage
    rungs: tuple[Rung, ...]
    trusted: tuple[Rung, ...]
    failed: bool
    #: ``maxDepth`` stopped the chain with a base still claimed above its last rung: what
    #: lies above was not evaluated (judged as a failed lookup, never as silence).
    cut: bool = False
    #: Bases the image's own layers start with past the cut (the depth-free layer check).
    beyond: tuple[Rung, ...] = ()

    @property
    def base_known(self) -> bool:
        return self.lineage.base_known


def identify(
    name: str, tag: str | None, pinned: Iterable[str], identities: Mapping[str, KnownTags]
) -> tuple[frozenset[str], KnownTags | None, bool]:
    """(tags judged, contradicting knowledge, unverified) for ``name:tag`` pinned to ``pinned``.

    Nothing pinned: the tag names whatever the registry resolved, so it is
    judged as written. A pinned digest the index knows is judged as the tags that
    name it (with the written tag when it is one of them, now or in history: a
    digest pinned while its tag named it stays that tag's image). One it has
    never seen is judged by the written tag, and is unverified.
    """
    pinned = [d for d in pinned if d]
    written = frozenset({tag}) if tag is not None else frozenset()
    found = [identities[k] for k in (identity_key(name, d) for d in pinned) if k in identities]
    if not found:
        return written, None, bool(pinned)
    known = KnownTags(
        frozenset().union(*(k.tags for k in found)),
        frozenset().union(*(k.current for k in found)),
    )
    if tag is None or known.names(tag):
        return known.tags | written, None, False
    return known.tags, known, False


def self_rung(
    subject: Subject, lineage: Lineage | None, identities: Mapping[str, KnownTags] | None = None
) -> Rung:
    """The image itself, by its reference, with every digest the lookup found for it."""
    ref = subject.reference
    digests = {ref.digest}
    if lineage is not None:
        digests.add(lineage.digest)
        digests.update(p.levels[0].digest for p in lineage.platforms if p.levels)
    tags, contradicted, unverified = identify(
        ref.name, ref.effective_tag, (ref.digest,) if ref.digest else (), identities or {}
    )
    return Rung(
        name=ref.name,
        tag=ref.effective_tag,
        digests=frozenset(d for d in digests if d),
        display=_as_known(subject.display, ref.name, contradicted),
        depth=0,
        tags=tags,
        contradicted=contradicted,
        unverified=unverified,
    )


def level_rung(
    level: Level, depth: int, identities: Mapping[str, KnownTags] | None = None
) -> Rung:
    ref = level.reference
    if ref is None:
        return Rung(SCRATCH, None, frozenset(), SCRATCH, depth, level)
    digests = frozenset(d for d in (level.digest, ref.digest) if d)
    display = ref.without_digest().normalized if ref.tag is not None else ref.normalized
    tags, contradicted, unverified = identify(
        ref.name, ref.effective_tag, sorted(digests), identities or {}
    )
    display = _as_known(display, ref.name, contradicted)
    return Rung(
        ref.name, ref.effective_tag, digests, display, depth, level, tags, contradicted, unverified
    )


def _as_known(display: str, name: str, contradicted: KnownTags | None) -> str:
    """How messages name a rung whose written tag its digest contradicts: by what it is."""
    if contradicted is None:
        return display
    best = sorted(contradicted.tags, key=lambda t: (-len(t), t))[0]
    return f"{name}:{best} (written as {display})"


def chain_of(
    lineage: PlatformLineage,
    *,
    max_depth: int,
    verify: Verify,
    identities: Mapping[str, KnownTags] | None = None,
) -> Chain:
    """Cut one platform's ancestry to ``max_depth`` levels above the image.

    A chain that ends ``FROM scratch`` without a scratch level gets one, so an
    allowlist entry ``image: scratch`` can allow static images.
    """
    ancestors = lineage.ancestors
    truncated = len(ancestors) > max_depth
    rungs = [
        level_rung(level, depth, identities)
        for depth, level in enumerate(ancestors[:max_depth], 1)
    ]
    ends_in_scratch = bool(rungs) and rungs[-1].name == SCRATCH
    if (
        lineage.end is End.SCRATCH
        and not truncated
        and not ends_in_scratch
        and len(rungs) < max_depth
    ):
        rungs.append(Rung(SCRATCH, None, frozenset(), SCRATCH, len(rungs) + 1))
    trusted: list[Rung] = []
    for rung in rungs:
        if verify is Verify.LAYERS and rung.level is not None and rung.level.verified is False:
            break
        trusted.append(rung)
    # Cut: the policy's depth drops levels the lookup found, or the lookup itself stopped
    # at maxDepth because the last level still names (or its layers show) a base above it.
    cut = truncated or (lineage.end is End.MAX_DEPTH and len(ancestors) <= max_depth)
    beyond: list[Rung] = []
    if cut:
        known = {d for r in rungs for d in r.digests}
        beyond = [
            level_rung(level, max_depth + 1, identities)
            for level in lineage.layer_bases
            if not ({level.digest, level.reference.digest if level.reference else None} & known)
        ]
    return Chain(
        platform=lineage.platform,
        lineage=lineage,
        rungs=tuple(rungs),
        trusted=tuple(trusted),
        failed=(lineage.end is End.LOOKUP_FAILED and not truncated) or cut,
        cut=cut,
        beyond=tuple(beyond),
    )


def entry_matches(entry: BaseEntry | DeprecatedEntry, rung: Rung) -> bool:
    """Repository glob on the name; tags and digests narrow it when given (empty = any)."""
    if not entry.image.matches(rung.name):
        return False
    if entry.tags and not any(entry.tags.matches(t) for t in rung.tags):
        return False
    return not entry.digests or bool(entry.digests & rung.digests)


def allowed(policy: CompiledPolicy, rung: Rung) -> bool:
    return any(entry_matches(e, rung) for e in policy.bases_allowed or ())
