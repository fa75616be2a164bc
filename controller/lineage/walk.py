"""One resolution: the walk from an image up its chain, with one client and one budget.

The long-lived :class:`~controller.lineage.resolve.LineageResolver` (client,
catalog, claim sources) starts a :class:`Walk` for every call, so that what
belongs to one call — the review's :class:`~controller.lineage.budget.ReviewBudget`,
charged by every registry request through the walk's client — is held by an
object that lives exactly as long as the call, instead of being threaded
through every method.

Decisions worth knowing (each documented where it is made):

- A contradicted claim (``verified=False``) is still followed: a policy with
  ``verify: Annotations`` trusts claims, so the levels above it are the claimed
  base's own ancestry. Under ``verify: Layers`` nothing at or above a
  ``verified=False`` level should be credited.
- A digest claimed without a name is named through the catalog; failing that the
  note goes on the claiming level and the base is detected by layers instead.
- A label (or Buildpacks metadata, also a label) is inherited by child images,
  so it may name a grandparent: its claimed base is then a *strict* prefix, and
  when the catalog (or a later source) knows a closer base, that base becomes the
  level and the note says the label described an ancestor further up.
- Two sources that disagree: the layers decide (:meth:`Walk._layers_decide`).
- A ``scratch`` claim is checked against the catalog like any claim.
- A base that is gone from the registry is recorded unverified and ends the
  chain (``UNCLAIMED``); any other registry trouble ends it ``LOOKUP_FAILED``.
- "Stale" is judged per platform image and by layers, never by index digest: a
  re-pushed index whose platform manifest (or filesystem) is unchanged has not
  moved.
- Past a bound (platforms of an index, candidates of a claim, requests of the
  review) the lookup fails with a message naming the bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.errors import LookupFailed
from controller.lineage.budget import Bounds
from controller.lineage.catalog import Catalog, CatalogMatch, Scope, platform_key
from controller.lineage.claims import (
    INHERITED_SOURCES,
    READERS,
    Claim,
    Subject,
    check_layers,
    display,
    first_claim,
)
from controller.lineage.images import (
    ClaimSource,
    Entry,
    Fetched,
    ImageNode,
    Images,
    NoPlatform,
    RegistryClient,
)
from controller.lineage.model import DEFAULT_MAX_DEPTH, End, Level, Lineage, PlatformLineage, Source
from controller.lineage.platforms import no_platform_message, platform_wanted
from controller.reference import Reference
from controller.registry.media import ImageManifest


@dataclass(frozen=True)
class _Step:
    """The outcome of looking one level up."""

    level: Level | None = None
    node: ImageNode | None = None
    end: End | None = None
    failure: str | None = None
    note: str = ""  # for the level we looked up *from*
    pinned: bool = False  # the level's digest came from a pin, not from its tag just now


def _is_missing(exc: LookupFailed) -> bool:
    """Whether the registry said "no such thing" (gone), rather than failing to answer."""
    status = exc.context.get("status")
    if status == 404:
        return True
    text = str(exc)
    return any(code in text for code in ("MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"))


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


class Walk:
    """One call's resolution: its client (charged to the review's budget), the shared catalog.

    The catalog is written by every policy's refreshes but read only through
    :attr:`scope`, the lookup's own catalog set: detection and naming never use
    a base that no policy applicable to the review named.
    """

    def __init__(
        self,
        client: RegistryClient,
        *,
        catalog: Catalog,
        sources: Sequence[ClaimSource] = (),
        bounds: Bounds | None = None,
    ) -> None:
        self.bounds = bounds or Bounds()
        self.client = client
        self.images = Images(client, max_platforms=self.bounds.max_platforms)
        self.catalog = catalog
        self.sources = tuple(sources)
        #: What of the shared catalog this walk may read: the catalog set of its lookup
        #: (set by :meth:`run`; nothing before), never another tenant's contributions.
        self.scope = Scope.of(())

    def subject_of(self, node: ImageNode, *, top: bool) -> Subject:
        return replace(node.subject, top=top, max_candidates=self.bounds.max_candidates)

    async def claim_of(self, node: ImageNode, *, top: bool = False) -> Claim | None:
        """The base ``node`` claims: the pure readers first, then the registry-backed sources.

        ``top``: ``node`` is the image being judged (level 0), not one of its bases.
        A source that found something it could not use answers a claim with only a
        note; the next source is asked, and the note travels with the final answer.
        """
        subject = self.subject_of(node, top=top)
        claim = first_claim(subject)
        unusable: list[Claim] = []
        for source in self.sources:
            if claim is not None:
                break
            claim = await source.read(subject, self.client)
            if claim is not None and not claim.usable:
                unusable.append(claim)
                claim = None
        if not unusable:
            return claim
        note = _join(*(c.note for c in unusable))
        if claim is None:
            return replace(unusable[0], note=note)
        return replace(claim, note=_join(note, claim.note))

    # ---- catalog

    async def refresh_catalog(self, refs: Sequence[Reference]) -> Mapping[str, str]:
        """Make sure each catalog ref's *current* image is in the catalog.

        A tag costs one (TTL-cached) digest lookup; only a digest the catalog
        has not seen for that tag is fetched. Calling this on a timer is what
        builds the history of every digest a tag has had.
        One failing entry does not stop the others; the failures are returned
        (normalized ref → message) for whoever wants to report them.
        """
        unique = list(dict.fromkeys(refs))
        failures: dict[str, str] = {}

        async def one(ref: Reference) -> None:
            try:
                await self._refresh_one(ref)
            except LookupFailed as exc:
                failures[ref.normalized] = str(exc)
            except NoPlatform as exc:
                failures[ref.normalized] = str(exc)

        async with asyncio.TaskGroup() as tg:
            for ref in unique:
                tg.create_task(one(ref))
        return failures

    async def _refresh_one(self, ref: Reference) -> None:
        digest = ref.digest or await self.client.resolve_digest(ref)
        if self.catalog.knows(ref, digest):
            self.catalog.touch(ref, digest)
            return
        fetched = await self.client.fetch_manifest(ref, digest)
        top = fetched.manifest
        named = ref.with_digest(fetched.digest)
        if isinstance(top, ImageManifest):
            config = await self.client.fetch_config(ref, top)
            self.catalog.remember(named, str(config.platform), fetched.digest, config.diff_ids)
            return
        entries = await self.images.expand(ref, top)

        async def child(entry: Entry) -> str | None:
            # Each platform is remembered on its own: one failing child spares the others.
            try:
                node = await self.images.fetch_child(ref, fetched.digest, entry.descriptor)
            except LookupFailed as exc:
                return str(exc)
            self.catalog.remember(named, node.platform, node.digest, node.diff_ids)
            return None

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(entry)) for entry in entries]
        errors = [e for e in (t.result() for t in tasks) if e]
        if errors:
            raise LookupFailed("; ".join(errors))

    async def run(
        self,
        ref: Reference,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        platforms: Sequence[str] | None = None,
        catalog: Sequence[Reference] = (),
    ) -> Lineage:
        """The lineage of ``ref``, per platform; registry trouble becomes data, never an exception.

        ``catalog`` lists the bases detection may use: those the catalog has never
        seen are fetched first (alongside the image itself); those it knows are
        used as remembered. ``platforms`` filters an index (normalized:
        ``linux/arm64`` is ``linux/arm64/v8``); ``max_depth`` counts ancestors.
        """

        async def top() -> Fetched | str:
            try:
                return await self.client.fetch_manifest(ref, ref.digest)
            except LookupFailed as exc:
                return str(exc)

        self.scope = Scope.of(catalog)
        # Only catalog refs never seen are fetched here; the history of every digest a
        # tag has had grows through refresh_catalog(), which the operator runs on a timer.
        unknown = [c for c in catalog if not self.catalog.has(c)]
        async with asyncio.TaskGroup() as tg:
            fetching = tg.create_task(top())
            if unknown:
                tg.create_task(self.refresh_catalog(unknown))
        fetched = fetching.result()
        if isinstance(fetched, str):
            return Lineage(ref, None, failure=fetched)

        manifest = fetched.manifest
        depth = max(0, max_depth)
        if isinstance(manifest, ImageManifest):
            try:
                config = await self.client.fetch_config(ref, manifest)
            except LookupFailed as exc:
                return Lineage(ref, fetched.digest, failure=str(exc))
            node = ImageNode(ref, fetched.digest, fetched.digest, manifest, config)
            if not platform_wanted(node.platform, platforms):
                return Lineage(
                    ref,
                    fetched.digest,
                    failure=no_platform_message(ref, [node.platform], platforms),
                )
            return Lineage(ref, fetched.digest, (await self._walk(node, depth),))

        try:
            entries = await self.images.expand(ref, manifest)
        except LookupFailed as exc:
            return Lineage(ref, fetched.digest, failure=str(exc))
        chosen: list[Entry] = []
        seen_platforms: set[str] = set()
        for entry in entries:
            desc = entry.descriptor
            key = platform_key(str(desc.platform)) if desc.platform else desc.digest
            if key in seen_platforms or not platform_wanted(desc.platform, platforms):
                continue
            seen_platforms.add(key)
            chosen.append(entry)
        if not chosen:
            offered = [str(e.descriptor.platform) for e in entries if e.descriptor.platform]
            return Lineage(
                ref, fetched.digest, failure=no_platform_message(ref, offered, platforms)
            )

        async def one(entry: Entry) -> PlatformLineage:
            desc = entry.descriptor
            label = str(desc.platform) if desc.platform else "unknown"
            try:
                node = await self.images.fetch_child(ref, fetched.digest, desc, entry.index)
            except LookupFailed as exc:
                level = Level(ref, desc.digest, Source.IMAGE, None)
                return PlatformLineage(label, (level,), End.LOOKUP_FAILED, failure=str(exc))
            return await self._walk(node, depth)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(e)) for e in chosen]
        return Lineage(ref, fetched.digest, tuple(t.result() for t in tasks))

    async def _walk(self, image: ImageNode, max_depth: int) -> PlatformLineage:
        """Follow one platform's chain upward, level by level, up to ``max_depth`` ancestors."""
        levels = [Level(image.reference, image.digest, Source.IMAGE, None, image.config.created)]
        nodes: list[ImageNode | None] = [image]
        pinned = [False]
        seen = {image.digest, image.resolved}
        node = image
        end: End
        failure: str | None = None
        while True:
            try:
                claim = await self.claim_of(node, top=len(levels) == 1)
            except LookupFailed as exc:
                end, failure = End.LOOKUP_FAILED, str(exc)
                break
            exceeded = self._exceeded(claim)
            if exceeded is not None:
                end, failure = End.LOOKUP_FAILED, exceeded
                break
            if claim is not None and claim.scratch:
                contradicted = self._scratch_contradicted(node, claim, seen)
                if contradicted is not None:
                    levels.append(contradicted)
                    pinned.append(False)
                    nodes.append(None)
                end = End.SCRATCH
                break
            if len(levels) - 1 >= max_depth:
                end = self._end_at_depth(node, claim, seen)
                break
            step = await self._step(node, claim, seen, top=len(levels) == 1)
            if step.note:
                levels[-1] = replace(levels[-1], note=_join(levels[-1].note, step.note))
            if step.level is not None:
                levels.append(step.level)
                pinned.append(step.pinned)
                nodes.append(step.node)
            if step.end is not None or step.node is None:
                end = step.end or End.UNCLAIMED
                failure = step.failure
                break
            node = step.node
            seen |= {node.digest, node.resolved}

        checks = {i: n for i, n in enumerate(nodes) if i and pinned[i] and n is not None}
        if checks:
            async with asyncio.TaskGroup() as tg:
                moved = {i: tg.create_task(self._moved(levels[i], n)) for i, n in checks.items()}
            for i, task in moved.items():
                moved_to, note = task.result()
                levels[i] = replace(levels[i], moved_to=moved_to, note=_join(levels[i].note, note))
        levels = [  # what scan evidence attributes vulnerabilities by
            replace(lv, diff_ids=n.diff_ids) if n is not None else lv for lv, n in zip(levels, nodes, strict=True)
        ]
        return PlatformLineage(
            str(image.config.platform),
            tuple(levels),
            end,
            failure,
            layer_bases=self._layer_bases(image),
        )

    def _layer_bases(self, image: ImageNode) -> tuple[Level, ...]:
        """The catalog bases the image's own layers start with, however far up they sit.

        The walk follows claims one level at a time and stops at ``maxDepth``; a
        deprecated base one level further would be silence. This check is depth-free
        and costs no request: the scoped catalog already holds each base's diff_ids.
        """
        own = {image.digest, image.resolved}
        matches = self.catalog.prefixes(
            image.diff_ids, platform=image.platform, exclude=own, scope=self.scope
        )
        return tuple(
            Level(
                m.reference,
                m.digest,
                Source.LAYERS,
                True,
                note=(
                    f"its layers start with those of {display(m.reference)}, a catalog base "
                    f"({len(m.diff_ids)} of its {len(image.diff_ids)} layers)"
                ),
            )
            for m in matches
        )

    def _exceeded(self, claim: Claim | None) -> str | None:
        """The bound a claim goes past, if any: it is then not followed at all.

        Following the first few candidates of thousands would judge a base the
        build record does not single out; the whole image is a lookup failure.
        """
        if claim is None:
            return None
        if claim.exceeded is not None:
            return claim.exceeded
        limit = self.bounds.max_candidates
        if len(claim.candidates) > limit:
            return (
                f"its {claim.source} claim names {len(claim.candidates)} candidate base images, "
                f"more than {limit} (max_candidates_per_claim = {limit})"
            )
        return None

    def _scratch_contradicted(
        self, node: ImageNode, claim: Claim, seen: set[str]
    ) -> Level | None:
        """A ``scratch`` claim checked like any other: by the catalog bases' layers.

        An image whose layers start with a catalog base's was built on it, not
        from nothing: the claim becomes a ``scratch`` level with ``verified=False``
        (so ``verify: Layers`` reports ``lineage-mismatch`` and credits nothing
        at or above it) and the note names the base. A base with as many layers
        as the image is the image's own filesystem: that contradicts a scratch
        claim only when it has more than one layer, since a copy of a one-layer
        base (``debian``, ``alpine``: from scratch themselves) is from scratch
        too. No catalog match leaves the claim standing, unverifiable as before.
        """
        match = self.catalog.longest_prefix(node.diff_ids, platform=node.platform, exclude=seen, scope=self.scope)
        if match is None:
            return None
        own = len(node.diff_ids)
        if len(match.diff_ids) == own and own == 1:
            return None
        return Level(
            None,
            None,
            claim.source,
            False,
            note=(
                f"its layers start with those of {display(match.reference)}, a catalog base "
                f"({len(match.diff_ids)} of its {own} layers), so it was not built from scratch"
            ),
        )

    def _end_at_depth(self, node: ImageNode, claim: Claim | None, seen: set[str]) -> End:
        """At ``maxDepth``: ``MAX_DEPTH`` only when there *was* more to follow (no lookup needed to tell)."""
        if claim is not None and claim.usable:
            return End.MAX_DEPTH
        if self.catalog.longest_prefix(node.diff_ids, platform=node.platform, exclude=seen, scope=self.scope):
            return End.MAX_DEPTH
        return self._unclaimed_end(node)

    def _unclaimed_end(self, node: ImageNode) -> End:
        known = self.catalog.name_of(node.digest, scope=self.scope) or self.catalog.name_of(
            node.resolved, scope=self.scope
        )
        return End.KNOWN_BASE if known is not None else End.UNCLAIMED

    async def _step(
        self, node: ImageNode, claim: Claim | None, seen: set[str], *, top: bool = False
    ) -> _Step:
        notes: list[str] = []
        if claim is not None and claim.note:
            notes.append(claim.note)
        if claim is not None and not claim.usable:
            claim = None
        if claim is not None and not claim.candidates and claim.digest is not None:
            named = self.catalog.name_of(claim.digest, scope=self.scope)
            if named is not None:
                claim = replace(claim, candidates=(named,))
            else:
                notes.append(
                    f"claims base {claim.digest} ({claim.source}) without a name, "
                    "and no catalog base has that digest"
                )
                claim = None
        if claim is not None and claim.candidates:
            step = await self._follow(node, claim, seen)
            if step is not None:
                step = await self._layers_decide(node, claim, step, seen, top=top)
            if step is not None:
                return replace(step, note=_join(*notes, step.note))
            notes.append(f"claimed base {claim.described} is this image or one below it: ignored")
        step = await self._detect(node, seen)
        return replace(step, note=_join(*notes, step.note))

    async def _layers_decide(
        self, node: ImageNode, claim: Claim, step: _Step, seen: set[str], *, top: bool
    ) -> _Step:
        """Where two sources disagree, the layers decide; the level's note says whose claim lost.

        Contradicted: the first later claim the layers confirm wins. A label (inherited)
        confirmed as an ancestor further up: a later claim confirmed with *more* of the
        image's layers is the closer base, asked only of what is at hand (pure readers,
        provenance the index lists), never speculatively. Otherwise ``step`` stands.
        """
        level, base = step.level, step.node
        overruled = ", ".join(display(c) for c in claim.candidates)
        if level is not None and level.verified is False:
            better = await self._later_confirmed(node, claim, seen, top=top, longer_than=-1)
            note = f"the {claim.source}'s claim {overruled} is contradicted by the layers"
        elif level and level.verified and level.source in INHERITED_SOURCES and base and (
            len(base.diff_ids) < len(node.diff_ids)
        ):
            better = await self._later_confirmed(node, claim, seen, top=False, longer_than=len(base.diff_ids))
            note = f"the {claim.source} names {overruled}, an ancestor further up (labels are inherited from base images)"
        else:
            return step
        if better is None or better.level is None:
            return step
        return replace(better, level=replace(better.level, note=_join(note, better.level.note)))

    async def _later_confirmed(
        self, node: ImageNode, claim: Claim, seen: set[str], *, top: bool, longer_than: int
    ) -> _Step | None:
        """The first later claim (§4 order) confirmed by more than ``longer_than`` layers."""
        subject = self.subject_of(node, top=top)
        later = [c for c in (read(subject) for read in READERS) if c is not None and c != claim]
        for index in range(len(later) + len(self.sources)):
            if index < len(later):
                other: Claim | None = later[index]
            else:
                try:
                    other = await self.sources[index - len(later)].read(subject, self.client)
                except LookupFailed:
                    continue
            if other is None or not other.candidates or (
                other.source == claim.source and set(other.candidates) == set(claim.candidates)
            ):
                continue
            if self._exceeded(other) is not None:
                continue
            step = await self._follow(node, other, seen)
            if step and step.level and step.level.verified and step.node and len(step.node.diff_ids) > longer_than:
                return step
        return None

    async def _detect(self, node: ImageNode, seen: set[str]) -> _Step:
        """Nothing (usable) claimed: the longest catalog prefix of the layers, else the chain ends."""
        match = self.catalog.longest_prefix(node.diff_ids, platform=node.platform, exclude=seen, scope=self.scope)
        if match is None:
            return _Step(end=self._unclaimed_end(node))
        return await self._detected_level(node, match, note="")

    async def _detected_level(self, node: ImageNode, match: CatalogMatch, *, note: str) -> _Step:
        others = match.others
        also = f"the same layers as {', '.join(display(r) for r in others)}" if others else ""
        level_note = _join(note, also)
        try:
            base = await self.images.fetch_for(match.reference, match.digest, node.config.platform)
        except (LookupFailed, NoPlatform) as exc:
            level = Level(match.reference, match.digest, Source.LAYERS, True, note=level_note)
            return _Step(level, end=End.LOOKUP_FAILED, failure=str(exc), pinned=True)
        base = replace(base, reference=match.reference)
        level = Level(
            match.reference, base.digest, Source.LAYERS, True, base.config.created, note=level_note
        )
        return _Step(level, base, pinned=True)

    async def _follow(self, node: ImageNode, claim: Claim, seen: set[str]) -> _Step | None:
        """Fetch and verify the claimed base(s); ``None`` when the claim names the chain itself."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._follow_one(node, claim, c, seen)) for c in claim.candidates
            ]
        results = [t.result() for t in tasks]
        steps = [s for s in results if s is not None]
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]
        # Buildinfo: several images were pulled; the base is the one whose layers prefix ours.
        verified = [s for s in steps if s.level is not None and s.level.verified and s.node]
        if verified:
            return max(verified, key=lambda s: len(s.node.diff_ids) if s.node else 0)
        first = next((s for s in steps if s.node is not None), steps[0])
        if first.level is None:
            return first
        note = (
            f"the build recorded several images ({claim.described}); "
            "none is a layer prefix of the image"
        )
        return replace(first, level=replace(first.level, verified=None, note=note))

    async def _follow_one(
        self, node: ImageNode, claim: Claim, candidate: Reference, seen: set[str]
    ) -> _Step | None:
        if candidate.digest is not None and candidate.digest in seen:
            return None
        pinned = candidate.digest is not None
        try:
            base = await self.images.fetch_for(candidate, candidate.digest, node.config.platform)
        except NoPlatform as exc:
            note = f"claimed base {display(candidate)} ({claim.source}) has no {exc.platform} image"
            level = Level(candidate, None, claim.source, False, note=note)
            return _Step(level, end=End.UNCLAIMED)
        except LookupFailed as exc:
            what = f"claimed base {display(candidate)} ({claim.source})"
            if _is_missing(exc):
                note = f"{what} cannot be checked: it is gone from the registry ({exc})"
                level = Level(candidate, None, claim.source, None, note=note)
                return _Step(level, end=End.UNCLAIMED)
            level = Level(candidate, None, claim.source, None, note=f"{what} cannot be checked")
            return _Step(level, end=End.LOOKUP_FAILED, failure=str(exc))
        if base.digest in seen or base.resolved in seen:
            return None
        named = candidate if candidate.digest is not None else candidate.with_digest(base.resolved)
        base = replace(base, reference=named)
        check = check_layers(base.diff_ids, node.diff_ids, claim=claim, base_ref=candidate)
        if (
            check.verified
            and claim.source in INHERITED_SOURCES
            and len(base.diff_ids) < len(node.diff_ids)
        ):
            closer = self.catalog.longest_prefix(
                node.diff_ids,
                platform=node.platform,
                exclude=seen | {base.digest, base.resolved},
                scope=self.scope,
            )
            if closer is not None and len(closer.diff_ids) > len(base.diff_ids):
                note = (
                    f"the {claim.source} names {display(candidate)}, an ancestor further up "
                    "(labels are inherited from base images)"
                )
                step = await self._detected_level(node, closer, note=note)
                if step.node is not None:
                    return step
        level = Level(
            named, base.digest, claim.source, check.verified, base.config.created, note=check.note
        )
        return _Step(level, base, pinned=pinned)

    async def _moved(self, level: Level, node: ImageNode) -> tuple[str | None, str]:
        """Whether the level's tag now names other content, for this platform: (moved_to, note).

        Compared per platform manifest, then by layers: a re-pushed index (a new
        platform added) or a rebuilt config over the same filesystem is not a move.
        """
        ref = level.reference
        if ref is None or ref.tag is None:
            return None, ""
        tag = ref.without_digest()
        try:
            current = await self.client.resolve_digest(tag)
            if current in (node.resolved, node.digest):
                return None, ""
            try:
                now = await self.images.fetch_for(tag, current, node.config.platform)
            except NoPlatform:
                return current, f"{display(tag)} now names an image without {node.platform}"
        except LookupFailed as exc:
            return None, f"could not check whether {display(tag)} has moved: {exc}"
        if now.digest == node.digest or now.diff_ids == node.diff_ids:
            return None, ""
        return now.digest, ""
