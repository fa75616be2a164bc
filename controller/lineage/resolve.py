"""Build an image's lineage from the registry: image → base → base's base, per platform.

SPEC §4. For every platform of the image (attestation entries skipped) the
resolver reads the base *claim* — manifest annotations, then the index
descriptor and index annotations, then config labels, then the Buildpacks
run image, then BuildKit's recorded sources — and checks it by layers: the
claimed base's ``rootfs.diff_ids`` must be a prefix of the child's. When nothing
is claimed, the base is *detected* as the longest diff_id prefix among the
catalog bases. Each level is recorded with how it was found and whether the
layers confirmed it; whether a contradicted or unverifiable claim matters is
the policy's decision, not ours, so the resolver always computes and never
judges.

Decisions worth knowing (each documented where it is made):

- A contradicted claim (``verified=False``) is still followed: a policy with
  ``verify: Annotations`` trusts claims, so the levels above it are the claimed
  base's own ancestry. Under ``verify: Layers`` nothing at or above a
  ``verified=False`` level should be credited.
- A digest claimed without a name is named through the catalog; failing that the
  note goes on the claiming level and the base is detected by layers instead.
- A label (or Buildpacks metadata, also a label) is inherited by child images,
  so it may name a grandparent: its claimed base is then a *strict* prefix, and
  when the catalog knows a closer base, that base becomes the level (``layers``)
  and the note says the label described an ancestor further up.
- A base that is gone from the registry is recorded unverified and ends the
  chain (``UNCLAIMED``); any other registry trouble ends it ``LOOKUP_FAILED``.
- "Stale" is judged per platform image and by layers, never by index digest: a
  re-pushed index whose platform manifest (or filesystem) is unchanged has not
  moved.

Nothing here raises for registry trouble: failures become data
(:attr:`Lineage.failure`, ``End.LOOKUP_FAILED``). Independent lookups run in
task groups, so a caller's ``asyncio.timeout`` cancels them all cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from controller.errors import InvalidReference, LookupFailed
from controller.lineage.catalog import Catalog, CatalogMatch, is_prefix, platform_key
from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source
from controller.reference import Reference, parse
from controller.registry import media
from controller.registry.media import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    Platform,
)

SCRATCH = "scratch"
_EMPTY: Mapping[str, str] = MappingProxyType({})
#: Nested indexes deeper than this are refused (a loop of indexes naming each other).
MAX_INDEX_NESTING = 3
#: Claim sources that live in config labels, which child images inherit.
INHERITED_SOURCES = frozenset({Source.LABEL, Source.BUILDPACKS})


# --------------------------------------------------------------------------- client shape


class Fetched(Protocol):
    """What :meth:`RegistryClient.fetch_manifest` returns, as far as the resolver reads it."""

    @property
    def digest(self) -> str: ...

    @property
    def manifest(self) -> ImageIndex | ImageManifest: ...


class RegistryClient(Protocol):
    """The part of :class:`controller.registry.client.RegistryClient` the resolver uses.

    A Protocol rather than an import keeps the resolver testable against any
    registry-speaking object and keeps the dependency one-way.
    """

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> Fetched: ...

    async def resolve_digest(self, ref: Reference) -> str: ...

    async def fetch_config(self, ref: Reference, manifest: ImageManifest) -> ImageConfig: ...


# --------------------------------------------------------------------------- claims (pure)


@dataclass(frozen=True)
class Claim:
    """What an image says it was built on.

    ``candidates`` are the named bases, carrying the claimed digest when one was
    given; there are several only for BuildKit buildinfo, which records every
    image a build pulled (multi-stage inputs too) and not which one was the
    final ``FROM``. ``digest`` alone (no candidates) is a digest without a name.
    """

    source: Source
    candidates: tuple[Reference, ...] = ()
    digest: str | None = None
    scratch: bool = False

    @property
    def described(self) -> str:
        """For messages: ``docker.io/library/debian:12-slim (label)``."""
        if self.scratch:
            what = SCRATCH
        elif self.candidates:
            what = ", ".join(display(c) for c in self.candidates)
        else:
            what = self.digest or "?"
        return f"{what} ({self.source})"


def display(ref: Reference) -> str:
    """``name:tag`` when there is a tag (the digest only adds noise to a message), else ``name@digest``."""
    return ref.without_digest().normalized if ref.tag is not None else ref.normalized


def valid_digest(digest: str) -> bool:
    try:
        parse(f"example.invalid/x@{digest}")
    except InvalidReference:
        return False
    return True


def _parse_name(text: str) -> Reference | None:
    try:
        return parse(text)
    except InvalidReference:
        return None


def annotation_claim(values: Mapping[str, str], source: Source) -> Claim | None:
    """``org.opencontainers.image.base.name`` / ``.digest`` from one place.

    Short names (``alpine:3.18``, as Docker Official Images write them) are
    normalized; ``scratch`` means built from nothing. A name that does not
    parse, with no digest, is no usable claim: the next place is asked.
    """
    name = values.get(media.BASE_NAME, "").strip()
    digest = values.get(media.BASE_DIGEST, "").strip() or None
    if digest is not None and not valid_digest(digest):
        digest = None
    if name.lower() == SCRATCH:
        return Claim(source, scratch=True)
    ref = _parse_name(name) if name else None
    if ref is not None:
        return Claim(source, (ref.with_digest(digest) if digest else ref,))
    if digest is not None:
        return Claim(source, digest=digest)
    return None


def buildpacks_claim(labels: Mapping[str, str]) -> Claim | None:
    """The run image in ``io.buildpacks.lifecycle.metadata``.

    ``runImage.image`` (or ``stack.runImage.image``) names it; ``runImage.reference``
    pins it when it is a ``name@digest`` reference. (A bare ``sha256:…`` there is
    the daemon's image ID, a config digest, which cannot be fetched: ignored.)
    """
    raw = labels.get(media.BUILDPACKS_METADATA)
    if not raw:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    run = _dict(meta.get("runImage"))
    stack_run = _dict(_dict(meta.get("stack")).get("runImage"))
    name = run.get("image") or stack_run.get("image")
    pinned = run.get("reference")
    pinned_ref = _parse_name(pinned) if isinstance(pinned, str) and "@" in pinned else None
    ref = _parse_name(name) if isinstance(name, str) and name else None
    if ref is not None:
        if pinned_ref is not None and pinned_ref.digest is not None:
            ref = ref.with_digest(pinned_ref.digest)
        return Claim(Source.BUILDPACKS, (ref,))
    if pinned_ref is not None:
        return Claim(Source.BUILDPACKS, (pinned_ref,))
    return None


def buildinfo_claim(config: ImageConfig) -> Claim | None:
    """BuildKit's ``moby.buildkit.buildinfo.v1`` (base64 JSON): its ``docker-image`` sources.

    Old images only (removed in Docker 23.1). It sits at the top of the config,
    or as a label; every ``{type: docker-image, ref, pin}`` is a candidate.
    """
    raw = config.raw.get(media.BUILDINFO) or config.labels.get(media.BUILDINFO)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        info = json.loads(base64.b64decode(raw, validate=False))
    except (ValueError, binascii.Error):
        return None
    sources = info.get("sources") if isinstance(info, dict) else None
    if not isinstance(sources, list):
        return None
    found: list[Reference] = []
    for src in sources:
        if not isinstance(src, dict) or src.get("type") != "docker-image":
            continue
        ref = _parse_name(src["ref"]) if isinstance(src.get("ref"), str) else None
        if ref is None:
            continue
        pin = src.get("pin")
        if isinstance(pin, str) and valid_digest(pin):
            ref = ref.with_digest(pin)
        if ref not in found:
            found.append(ref)
    return Claim(Source.BUILDINFO, tuple(found)) if found else None


def read_claim(
    *,
    manifest_annotations: Mapping[str, str],
    descriptor_annotations: Mapping[str, str] = _EMPTY,
    index_annotations: Mapping[str, str] = _EMPTY,
    config: ImageConfig | None = None,
) -> Claim | None:
    """The first usable claim, in SPEC §4.2 order.

    Manifest annotations are not inherited, so they come first; the index
    descriptor and the index next; labels (inherited: they may describe a
    grandparent) after; Buildpacks and buildinfo last.
    """
    for values, source in (
        (manifest_annotations, Source.ANNOTATION),
        (descriptor_annotations, Source.INDEX_ANNOTATION),
        (index_annotations, Source.INDEX_ANNOTATION),
    ):
        claim = annotation_claim(values, source)
        if claim is not None:
            return claim
    if config is None:
        return None
    return (
        annotation_claim(config.labels, Source.LABEL)
        or buildpacks_claim(config.labels)
        or buildinfo_claim(config)
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- layers (pure)


@dataclass(frozen=True)
class LayerCheck:
    verified: bool | None
    note: str = ""


def check_layers(
    base: tuple[str, ...], child: tuple[str, ...], *, claim: Claim, base_ref: Reference
) -> LayerCheck:
    """Does the claimed base's layer list prefix the child's? With the note a message needs.

    A single-layer child that fails the check is most likely squashed (or built
    by a single-snapshot tool): the claim can then be neither confirmed nor
    refuted. A base without layers proves nothing either way.
    """
    what = f"{display(base_ref)} ({claim.source})"
    if not base:
        return LayerCheck(None, f"claimed base {what} has no layers, so layers cannot confirm it")
    if is_prefix(base, child):
        return LayerCheck(True)
    if len(child) == 1:
        return LayerCheck(
            None,
            f"claimed base {what} cannot be checked: the image has a single layer (squashed?)",
        )
    return LayerCheck(False, f"claimed base {what} is not a layer prefix of the image")


# --------------------------------------------------------------------------- platforms (pure)


def platform_entries(index: ImageIndex) -> tuple[list[Descriptor], list[Descriptor]]:
    """Split an index into (platform manifests, nested indexes).

    Attestation entries (``unknown/unknown``, or annotated with
    ``vnd.docker.reference.type``) and unknown media types are skipped, as the
    image spec requires. An entry without a media type is taken as a manifest.
    """
    manifests: list[Descriptor] = []
    nested: list[Descriptor] = []
    for desc in index.manifests:
        if desc.is_attestation:
            continue
        if desc.media_type in media.INDEX_TYPES:
            nested.append(desc)
        elif desc.media_type in media.MANIFEST_TYPES or not desc.media_type:
            manifests.append(desc)
    return manifests, nested


def platform_wanted(platform: Platform | str | None, wanted: Sequence[str] | None) -> bool:
    """``None`` (no filter) wants everything; otherwise compare normalized (arm64 ≡ arm64/v8)."""
    if wanted is None:
        return True
    if platform is None:
        return False
    keys = {platform_key(w) for w in wanted}
    return platform_key(str(platform)) in keys


def select_child(entries: Iterable[Descriptor], platform: Platform) -> Descriptor | None:
    """The entry for ``platform``: exact after normalizing variants, else the same os/arch."""
    wanted = platform.normalized
    candidates = [d for d in entries if d.platform is not None and not d.is_attestation]
    for desc in candidates:
        if desc.platform is not None and desc.platform.normalized == wanted:
            return desc
    for desc in candidates:
        p = desc.platform
        if p is not None and (p.os, p.architecture) == (wanted.os, wanted.architecture):
            return desc
    return None


# --------------------------------------------------------------------------- resolver


class _NoPlatform(Exception):
    """An index has no image for the platform we need (not a registry failure)."""

    def __init__(self, ref: Reference, platform: str) -> None:
        super().__init__(f"{display(ref)} has no {platform} image")
        self.platform = platform


@dataclass(frozen=True)
class _Node:
    """One fetched platform image: what the next level's claim is read from."""

    reference: Reference  # how the level is named
    resolved: str  # the digest the reference resolved to (an index digest, or == digest)
    digest: str  # the platform manifest digest
    manifest: ImageManifest
    config: ImageConfig
    descriptor_annotations: Mapping[str, str] = field(default_factory=dict)
    index_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        return platform_key(str(self.config.platform))

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return self.config.diff_ids

    def claim(self) -> Claim | None:
        return read_claim(
            manifest_annotations=self.manifest.annotations,
            descriptor_annotations=self.descriptor_annotations,
            index_annotations=self.index_annotations,
            config=self.config,
        )


@dataclass(frozen=True)
class _Step:
    """The outcome of looking one level up."""

    level: Level | None = None
    node: _Node | None = None
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


class LineageResolver:
    """Resolves lineages against one registry client, remembering catalog bases across calls."""

    def __init__(self, client: RegistryClient, *, catalog: Catalog | None = None) -> None:
        self.client = client
        self.catalog = catalog if catalog is not None else Catalog()

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
            except _NoPlatform as exc:
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
        entries = await self._expand(ref, top)

        async def child(desc: Descriptor) -> str | None:
            # Each platform is remembered on its own: one failing child spares the others.
            try:
                node = await self._fetch_child(ref, fetched.digest, desc, {})
            except LookupFailed as exc:
                return str(exc)
            self.catalog.remember(named, node.platform, node.digest, node.diff_ids)
            return None

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(desc)) for desc, _ in entries]
        errors = [e for e in (t.result() for t in tasks) if e]
        if errors:
            raise LookupFailed("; ".join(errors))

    # ---- fetching

    async def _expand(
        self, ref: Reference, index: ImageIndex, depth: int = 0
    ) -> list[tuple[Descriptor, Mapping[str, str]]]:
        """Every platform manifest of an index (nested indexes followed), with its index's annotations."""
        manifests, nested = platform_entries(index)
        out = [(d, index.annotations) for d in manifests]
        if nested and depth >= MAX_INDEX_NESTING:
            raise LookupFailed(f"{display(ref)}: indexes nested more than {MAX_INDEX_NESTING} deep")
        for desc in nested:
            fetched = await self.client.fetch_manifest(ref, desc.digest)
            if not isinstance(fetched.manifest, ImageIndex):
                raise LookupFailed(
                    f"{display(ref)}: {desc.digest} is not an index as its descriptor says"
                )
            out.extend(await self._expand(ref, fetched.manifest, depth + 1))
        return out

    async def _fetch_child(
        self,
        ref: Reference,
        resolved: str,
        desc: Descriptor,
        index_annotations: Mapping[str, str],
    ) -> _Node:
        fetched = await self.client.fetch_manifest(ref, desc.digest)
        manifest = fetched.manifest
        if not isinstance(manifest, ImageManifest):
            raise LookupFailed(f"{display(ref)}: {desc.digest} is not an image manifest")
        config = await self.client.fetch_config(ref, manifest)
        return _Node(
            ref, resolved, fetched.digest, manifest, config, desc.annotations, index_annotations
        )

    async def _fetch_for(self, ref: Reference, digest: str | None, platform: Platform) -> _Node:
        """The image ``ref`` (at ``digest``) names for ``platform``; an index is narrowed to its child."""
        fetched = await self.client.fetch_manifest(ref, digest)
        top = fetched.manifest
        if isinstance(top, ImageManifest):
            config = await self.client.fetch_config(ref, top)
            return _Node(ref, fetched.digest, fetched.digest, top, config)
        entries = await self._expand(ref, top)
        chosen = select_child([d for d, _ in entries], platform)
        if chosen is None:
            raise _NoPlatform(ref, platform_key(str(platform)))
        annotations = next(a for d, a in entries if d is chosen)
        return await self._fetch_child(ref, fetched.digest, chosen, annotations)

    # ---- resolve

    async def resolve(
        self,
        ref: Reference,
        *,
        max_depth: int = 4,
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
            node = _Node(ref, fetched.digest, fetched.digest, manifest, config)
            if not platform_wanted(node.platform, platforms):
                return Lineage(
                    ref,
                    fetched.digest,
                    failure=_no_platform_message(ref, [node.platform], platforms),
                )
            return Lineage(ref, fetched.digest, (await self._walk(node, depth),))

        try:
            entries = await self._expand(ref, manifest)
        except LookupFailed as exc:
            return Lineage(ref, fetched.digest, failure=str(exc))
        chosen: list[tuple[Descriptor, Mapping[str, str]]] = []
        seen_platforms: set[str] = set()
        for desc, index_annotations in entries:
            key = platform_key(str(desc.platform)) if desc.platform else desc.digest
            if key in seen_platforms or not platform_wanted(desc.platform, platforms):
                continue
            seen_platforms.add(key)
            chosen.append((desc, index_annotations))
        if not chosen:
            offered = [str(d.platform) for d, _ in entries if d.platform]
            return Lineage(
                ref, fetched.digest, failure=_no_platform_message(ref, offered, platforms)
            )

        async def one(desc: Descriptor, annotations: Mapping[str, str]) -> PlatformLineage:
            label = platform_key(str(desc.platform)) if desc.platform else "unknown"
            try:
                node = await self._fetch_child(ref, fetched.digest, desc, annotations)
            except LookupFailed as exc:
                level = Level(ref, desc.digest, Source.IMAGE, None)
                return PlatformLineage(label, (level,), End.LOOKUP_FAILED, failure=str(exc))
            return await self._walk(node, depth)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(d, a)) for d, a in chosen]
        return Lineage(ref, fetched.digest, tuple(t.result() for t in tasks))

    async def _walk(self, image: _Node, max_depth: int) -> PlatformLineage:
        """Follow one platform's chain upward, level by level, up to ``max_depth`` ancestors."""
        levels = [Level(image.reference, image.digest, Source.IMAGE, None, image.config.created)]
        nodes: list[_Node | None] = [image]
        pinned = [False]
        seen = {image.digest, image.resolved}
        node = image
        end: End
        failure: str | None = None
        while True:
            claim = node.claim()
            if claim is not None and claim.scratch:
                end = End.SCRATCH
                break
            if len(levels) - 1 >= max_depth:
                end = self._end_at_depth(node, claim, seen)
                break
            step = await self._step(node, claim, seen)
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
        return PlatformLineage(image.platform, tuple(levels), end, failure)

    def _end_at_depth(self, node: _Node, claim: Claim | None, seen: set[str]) -> End:
        """At ``maxDepth``: ``MAX_DEPTH`` only when there *was* more to follow (no lookup needed to tell)."""
        if claim is not None:
            return End.MAX_DEPTH
        if self.catalog.longest_prefix(node.diff_ids, platform=node.platform, exclude=seen):
            return End.MAX_DEPTH
        return self._unclaimed_end(node)

    def _unclaimed_end(self, node: _Node) -> End:
        known = self.catalog.name_of(node.digest) or self.catalog.name_of(node.resolved)
        return End.KNOWN_BASE if known is not None else End.UNCLAIMED

    async def _step(self, node: _Node, claim: Claim | None, seen: set[str]) -> _Step:
        notes: list[str] = []
        if claim is not None and not claim.candidates and claim.digest is not None:
            named = self.catalog.name_of(claim.digest)
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
                return replace(step, note=_join(*notes, step.note))
            notes.append(f"claimed base {claim.described} is this image or one below it: ignored")
        step = await self._detect(node, seen)
        return replace(step, note=_join(*notes, step.note))

    async def _detect(self, node: _Node, seen: set[str]) -> _Step:
        """Nothing (usable) claimed: the longest catalog prefix of the layers, else the chain ends."""
        match = self.catalog.longest_prefix(node.diff_ids, platform=node.platform, exclude=seen)
        if match is None:
            return _Step(end=self._unclaimed_end(node))
        return await self._detected_level(node, match, note="")

    async def _detected_level(self, node: _Node, match: CatalogMatch, *, note: str) -> _Step:
        others = match.others
        also = f"the same layers as {', '.join(display(r) for r in others)}" if others else ""
        level_note = _join(note, also)
        try:
            base = await self._fetch_for(match.reference, match.digest, node.config.platform)
        except (LookupFailed, _NoPlatform) as exc:
            level = Level(match.reference, match.digest, Source.LAYERS, True, note=level_note)
            return _Step(level, end=End.LOOKUP_FAILED, failure=str(exc), pinned=True)
        base = replace(base, reference=match.reference)
        level = Level(
            match.reference, base.digest, Source.LAYERS, True, base.config.created, note=level_note
        )
        return _Step(level, base, pinned=True)

    async def _follow(self, node: _Node, claim: Claim, seen: set[str]) -> _Step | None:
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
        self, node: _Node, claim: Claim, candidate: Reference, seen: set[str]
    ) -> _Step | None:
        if candidate.digest is not None and candidate.digest in seen:
            return None
        pinned = candidate.digest is not None
        try:
            base = await self._fetch_for(candidate, candidate.digest, node.config.platform)
        except _NoPlatform as exc:
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
                node.diff_ids, platform=node.platform, exclude=seen | {base.digest, base.resolved}
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

    async def _moved(self, level: Level, node: _Node) -> tuple[str | None, str]:
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
                now = await self._fetch_for(tag, current, node.config.platform)
            except _NoPlatform:
                return current, f"{display(tag)} now names an image without {node.platform}"
        except LookupFailed as exc:
            return None, f"could not check whether {display(tag)} has moved: {exc}"
        if now.digest == node.digest or now.diff_ids == node.diff_ids:
            return None, ""
        return now.digest, ""


def _no_platform_message(
    ref: Reference, offered: Sequence[str], wanted: Sequence[str] | None
) -> str:
    have = ", ".join(offered) or "none"
    want = ", ".join(wanted or ())
    return f"{display(ref)} has no image for {want} (it has {have})"
