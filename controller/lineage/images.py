"""Fetching one image for the resolver: an index expanded to its platforms, a platform narrowed.

ASYNC, but only a thin layer over the registry client: it knows the shape of
indexes (nested ones followed, attestations set aside for the claim sources
that read them) and returns :class:`ImageNode` values, the unit the resolver
reads claims from and compares layers of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from controller.errors import LookupFailed
from controller.lineage.budget import MAX_PLATFORMS, BoundExceeded, ReviewBudget
from controller.lineage.catalog import platform_key
from controller.lineage.claims import Claim, Subject, display
from controller.lineage.platforms import attestations_for, platform_entries, select_child
from controller.reference import Reference
from controller.registry.limits import charged_to
from controller.registry.media import Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform

#: Nested indexes deeper than this are refused (a loop of indexes naming each other).
MAX_INDEX_NESTING = 3


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


class NoPlatform(Exception):
    """An index has no image for the platform we need (not a registry failure)."""

    def __init__(self, ref: Reference, platform: str) -> None:
        super().__init__(f"{display(ref)} has no {platform} image")
        self.platform = platform


@dataclass(frozen=True)
class ImageNode:
    """One fetched platform image: what the next level's claim is read from."""

    reference: Reference  # how the level is named
    resolved: str  # the digest the reference resolved to (an index digest, or == digest)
    digest: str  # the platform manifest digest
    manifest: ImageManifest
    config: ImageConfig
    descriptor_annotations: Mapping[str, str] = field(default_factory=dict)
    index_annotations: Mapping[str, str] = field(default_factory=dict)
    attestations: tuple[Descriptor, ...] = ()

    @property
    def platform(self) -> str:
        return platform_key(str(self.config.platform))

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return self.config.diff_ids

    @property
    def subject(self) -> Subject:
        return Subject(
            manifest_annotations=self.manifest.annotations,
            descriptor_annotations=self.descriptor_annotations,
            index_annotations=self.index_annotations,
            config=self.config,
            reference=self.reference,
            digest=self.digest,
            manifest=self.manifest,
            attestations=self.attestations,
        )


@dataclass(frozen=True)
class Entry:
    """A platform manifest's descriptor, with the index that lists it."""

    descriptor: Descriptor
    index: ImageIndex

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.index.annotations


class ClaimSource(Protocol):
    """A claim read with the registry's help (BuildKit provenance, OCI referrers).

    Asked by the resolver, in order, after every pure reader found nothing; the
    claim it returns is checked by layers like any other. It raises
    :class:`controller.errors.LookupFailed` for registry trouble, and returns
    ``None`` when the image carries nothing it reads.
    """

    async def read(self, subject: Subject, client: RegistryClient) -> Claim | None: ...


class Images:
    """Fetches images through one registry client.

    ``max_platforms`` bounds the images one index may list (nested indexes
    counted in): an index of thousands is refused before any of them is
    fetched, with :class:`BoundExceeded` naming the bound.
    """

    def __init__(self, client: RegistryClient, *, max_platforms: int = MAX_PLATFORMS) -> None:
        self.client = client
        self.max_platforms = max_platforms

    def _count(self, ref: Reference, count: int) -> None:
        if count > self.max_platforms:
            limit = self.max_platforms
            raise BoundExceeded(
                f"{display(ref)} is an index of {count} images, more than the "
                f"{limit} baseguard judges (max_platforms_per_index = {limit})"
            )

    async def expand(self, ref: Reference, index: ImageIndex, depth: int = 0) -> list[Entry]:
        """Every platform manifest of an index (nested indexes followed), with the index listing it."""
        entries = len(index.manifests)
        if entries > 2 * self.max_platforms:  # refused before even sorting the entries out
            limit = self.max_platforms
            raise BoundExceeded(
                f"{display(ref)} is an index of {entries} entries, more than the {limit} images "
                f"(and an attestation each) baseguard judges (max_platforms_per_index = {limit})"
            )
        manifests, nested = platform_entries(index)
        self._count(ref, len(manifests) + len(nested))
        out = [Entry(d, index) for d in manifests]
        if nested and depth >= MAX_INDEX_NESTING:
            raise LookupFailed(f"{display(ref)}: indexes nested more than {MAX_INDEX_NESTING} deep")
        for desc in nested:
            fetched = await self.client.fetch_manifest(ref, desc.digest)
            if not isinstance(fetched.manifest, ImageIndex):
                raise LookupFailed(
                    f"{display(ref)}: {desc.digest} is not an index as its descriptor says"
                )
            out.extend(await self.expand(ref, fetched.manifest, depth + 1))
            self._count(ref, len(out))
        return out

    async def fetch_child(
        self, ref: Reference, resolved: str, desc: Descriptor, index: ImageIndex | None = None
    ) -> ImageNode:
        fetched = await self.client.fetch_manifest(ref, desc.digest)
        manifest = fetched.manifest
        if not isinstance(manifest, ImageManifest):
            raise LookupFailed(f"{display(ref)}: {desc.digest} is not an image manifest")
        config = await self.client.fetch_config(ref, manifest)
        if index is None:
            return ImageNode(ref, resolved, fetched.digest, manifest, config, desc.annotations)
        return ImageNode(
            ref,
            resolved,
            fetched.digest,
            manifest,
            config,
            desc.annotations,
            index.annotations,
            attestations_for(index, desc.digest),
        )

    async def fetch_for(self, ref: Reference, digest: str | None, platform: Platform) -> ImageNode:
        """The image ``ref`` (at ``digest``) names for ``platform``; an index is narrowed to its child."""
        fetched = await self.client.fetch_manifest(ref, digest)
        top = fetched.manifest
        if isinstance(top, ImageManifest):
            config = await self.client.fetch_config(ref, top)
            return ImageNode(ref, fetched.digest, fetched.digest, top, config)
        entries = await self.expand(ref, top)
        chosen = select_child([e.descriptor for e in entries], platform)
        if chosen is None:
            raise NoPlatform(ref, platform_key(str(platform)))
        entry = next(e for e in entries if e.descriptor is chosen)
        return await self.fetch_child(ref, fetched.digest, chosen, entry.index)


class ChargedClient:
    """A :class:`RegistryClient` whose every call is charged to one :class:`ReviewBudget`.

    Every call counts, answered from the registry client's cache or not: the
    bound is on the work a review asks for, and it stays the same whatever
    the cache holds (so a test, or an incident, can be reproduced). Bytes are
    counted where they are spent: each call runs with the budget as the
    registry's byte account (:func:`controller.registry.limits.charged_to`), so
    what the transport reads and the JSON reader parses for it is charged to
    this review.
    """

    def __init__(self, client: RegistryClient, budget: ReviewBudget) -> None:
        self.client = client
        self.budget = budget

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> Fetched:
        self.budget.charge()
        with charged_to(self.budget):
            return await self.client.fetch_manifest(ref, digest)

    async def resolve_digest(self, ref: Reference) -> str:
        self.budget.charge()
        with charged_to(self.budget):
            return await self.client.resolve_digest(ref)

    async def fetch_config(self, ref: Reference, manifest: ImageManifest) -> ImageConfig:
        self.budget.charge()
        with charged_to(self.budget):
            return await self.client.fetch_config(ref, manifest)


class ChargedBlobClient(ChargedClient):
    """A :class:`ChargedClient` over a client that also reads blobs and referrers (provenance)."""

    async def fetch_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes:
        self.budget.charge()
        with charged_to(self.budget):
            return await self.client.fetch_blob(ref, digest, limit=limit)  # type: ignore[attr-defined, no-any-return]

    async def fetch_referrers(self, ref: Reference, digest: str) -> ImageIndex:
        """The referrers of ``digest``, read once per review (:attr:`ReviewBudget.referrers`):
        the provenance source, the signature checker and the evidence reader each filter
        the one listing by artifact type. Charged when it is read, not when it is remembered."""

        async def fetch() -> ImageIndex:
            self.budget.charge()
            with charged_to(self.budget):
                return await self.client.fetch_referrers(ref, digest)  # type: ignore[attr-defined, no-any-return]

        fingerprint = getattr(self.client, "fingerprint", None)
        who = fingerprint(ref) if callable(fingerprint) else ""
        return await self.budget.referrers.listing(ref, digest, who, fetch)


def charged(client: RegistryClient, budget: ReviewBudget) -> ChargedClient:
    """``client`` with every call charged to ``budget``, offering what ``client`` offers."""
    if hasattr(client, "fetch_blob") and hasattr(client, "fetch_referrers"):
        return ChargedBlobClient(client, budget)
    return ChargedClient(client, budget)
