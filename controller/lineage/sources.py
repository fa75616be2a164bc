"""Claim sources that need the registry: BuildKit provenance, in the index or as OCI referrers.

The pure readers (annotations, labels, Buildpacks, buildinfo) see only what
the resolver already fetched. Provenance lives elsewhere: in an attestation
manifest next to the image in its index, or in a manifest whose ``subject``
is the image (OCI 1.1 referrers). Reading it costs requests, so this source
is asked last, only when no pure reader found a claim, and it stops at the
first place that has statements about the image:

1. the attestation manifests the index lists *for this platform manifest*
   (``vnd.docker.reference.digest``): one manifest GET, then one blob GET per
   provenance layer (SBOM layers are never fetched);
2. else, for the image being judged only (not its bases), the referrers of the
   platform manifest: the referrers API, or, when
   the registry lacks it, the ``sha256-<hex>`` fallback tag (the client
   remembers a host without the API, so that costs one request per image).

Every statement is read with :mod:`controller.lineage.provenance`, which
enforces the bounds and keeps only statements whose subject is this platform
manifest. The claim names every image the build pulled; the resolver keeps
the one whose layers are the longest prefix of the image's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from controller.errors import LookupFailed
from controller.lineage import provenance
from controller.lineage.claims import Claim, Subject
from controller.lineage.model import Source
from controller.lineage.provenance import Statement, StatementError
from controller.reference import Reference
from controller.registry.media import Descriptor, ImageIndex, ImageManifest


class _Fetched(Protocol):
    @property
    def manifest(self) -> ImageIndex | ImageManifest: ...


@runtime_checkable
class ProvenanceClient(Protocol):
    """What reading provenance needs from :class:`controller.registry.client.RegistryClient`."""

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> _Fetched: ...

    async def fetch_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes: ...

    async def fetch_referrers(self, ref: Reference, digest: str) -> ImageIndex: ...


@dataclass(frozen=True)
class Found:
    """The statements about one platform manifest, and where they were found."""

    statements: tuple[Statement, ...] = ()
    where: str = ""  # "attestation manifest" | "referrers" | ""
    ignored: tuple[str, ...] = ()  # statements not read, and why (for notes)

    def candidates(self, digest: str) -> tuple[Reference, ...]:
        return provenance.candidates(self.statements, digest)


T = TypeVar("T")
U = TypeVar("U")


async def _each(work: Callable[[T], Awaitable[U]], items: Sequence[T]) -> list[U]:
    """``work`` on every item concurrently; the first :class:`LookupFailed` is raised as itself.

    (A task group would raise an ``ExceptionGroup``, which the resolver's
    ``except LookupFailed`` would not catch; failures travel as values instead.)
    """

    async def caught(item: T) -> U | LookupFailed:
        try:
            return await work(item)
        except LookupFailed as exc:
            return exc

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(caught(i)) for i in items]
    results = [t.result() for t in tasks]
    for result in results:
        if isinstance(result, LookupFailed):
            raise result
    return [r for r in results if not isinstance(r, LookupFailed)]


async def _statements_in(
    client: ProvenanceClient, ref: Reference, digest: str, manifest_digest: str
) -> tuple[list[Statement], list[str]]:
    """The provenance statements in one attestation or referrer manifest."""
    fetched = await client.fetch_manifest(ref, manifest_digest)
    manifest = fetched.manifest
    if not isinstance(manifest, ImageManifest):
        return [], [f"{manifest_digest} is an index, not an attestation manifest"]
    layers = provenance.statement_layers(manifest)

    async def one(desc: Descriptor) -> Statement | str | None:
        body = await client.fetch_blob(ref, desc.digest, limit=provenance.MAX_STATEMENT_BYTES)
        try:
            return provenance.parse_statement(body)
        except StatementError as exc:
            return f"statement {desc.digest}: {exc}"

    statements: list[Statement] = []
    ignored: list[str] = []
    for result in await _each(one, layers):
        if isinstance(result, str):
            ignored.append(result)
        elif result is not None and not result.describes(digest):
            ignored.append(
                f"a statement in {manifest_digest} is about "
                f"{', '.join(sorted(result.subjects)) or 'no subject'}, not {digest}"
            )
        elif result is not None:
            statements.append(result)
    return statements, ignored


async def _gather(
    client: ProvenanceClient, ref: Reference, digest: str, manifests: Sequence[str]
) -> tuple[list[Statement], list[str]]:
    async def one(manifest: str) -> tuple[list[Statement], list[str]]:
        return await _statements_in(client, ref, digest, manifest)

    statements: list[Statement] = []
    ignored: list[str] = []
    for found, why in await _each(one, manifests):
        statements += found
        ignored += why
    return statements, ignored


async def find_statements(
    client: ProvenanceClient,
    ref: Reference,
    digest: str,
    attestations: Sequence[Descriptor] = (),
    *,
    referrers: bool = True,
) -> Found:
    """The provenance statements about the platform manifest ``ref``/``digest``.

    ``attestations`` are the index's attestation entries that point at it
    (:func:`controller.lineage.platforms.attestations_for`). Trouble reading them (and
    any bound passed) raises :class:`LookupFailed`: the index announced them. Referrers
    are asked only when ``referrers`` is set and the index had no provenance; trouble
    asking is recorded in ``ignored``. Nothing found answers ``Found()``.
    """
    own = list(attestations)
    if len(own) > provenance.MAX_STATEMENTS:
        raise provenance.bound_exceeded(
            f"{len(own)} attestation manifests for one image",
            provenance.MAX_STATEMENTS,
            "MAX_STATEMENTS",
        )
    ignored: list[str] = []
    if own:
        statements, ignored = await _gather(client, ref, digest, [d.digest for d in own])
        if statements:
            return Found(tuple(statements), "attestation manifest", tuple(ignored))
    if not referrers:
        return Found(ignored=tuple(ignored))
    try:
        index = await client.fetch_referrers(ref, digest)
    except LookupFailed as exc:
        # Asked on speculation (nothing says the image has referrers): a registry that
        # cannot answer leaves the image unclaimed rather than failing its lookup.
        return Found(ignored=(*ignored, f"referrers could not be read: {exc}"))
    wanted = provenance.referrer_manifests(index)
    if not wanted:
        return Found(ignored=tuple(ignored))
    statements, more = await _gather(client, ref, digest, [d.digest for d in wanted])
    return Found(tuple(statements), "referrers" if statements else "", tuple(ignored + more))


class ProvenanceSource:
    """BuildKit provenance as a claim source (:class:`controller.lineage.images.ClaimSource`).

    The claim lists every image the build pulled (source ``provenance``); the
    resolver keeps the one whose layers are the longest prefix of the image's.
    OCI referrers are asked only for the image being judged (``subject.top``):
    nothing announces them, so asking costs a request (two the first time on a
    registry without the API) for every image that claims nothing, and bases
    (Docker Official Images, most of all) rarely have any; a base's provenance
    is read from its index. ``referrers=False`` never asks.
    """

    def __init__(self, *, referrers: bool = True) -> None:
        self.referrers = referrers

    async def read(self, subject: Subject, client: object) -> Claim | None:
        if subject.reference is None or subject.digest is None:
            return None
        if not isinstance(client, ProvenanceClient):
            return None  # a client that cannot fetch statements: nothing to read them with
        found = await find_statements(
            client,
            subject.reference,
            subject.digest,
            subject.attestations,
            referrers=self.referrers and subject.top,
        )
        candidates = found.candidates(subject.digest)
        note = _ignored_note(found)
        if candidates or note:
            return Claim(Source.PROVENANCE, candidates, note=note)
        return None


def _ignored_note(found: Found) -> str:
    """What was found but not used, for the image's note (statements about another
    image, unreadable statements, materials without a digest, referrers not readable)."""
    skipped = [s for st in found.statements for s in st.skipped]
    reasons = [*found.ignored, *skipped]
    if not reasons:
        return ""
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return "provenance not used: " + "; ".join(reasons[:3]) + more


def default_sources(client: object) -> tuple[ProvenanceSource, ...]:
    """The registry-backed claim sources every resolver asks unless told otherwise."""
    return (ProvenanceSource(),) if isinstance(client, ProvenanceClient) else ()

