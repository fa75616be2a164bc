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
2. else the referrers of the platform manifest: the referrers API, or, when
   the registry lacks it, the ``sha256-<hex>`` fallback tag (the client
   remembers a host without the API, so that costs one request per image).

Every statement is read with :mod:`controller.lineage.provenance`, which
enforces the bounds and keeps only statements whose subject is this platform
manifest. The claim names every image the build pulled; the resolver keeps
the one whose layers are the longest prefix of the image's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controller.lineage import provenance
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

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(d)) for d in layers]
    statements: list[Statement] = []
    ignored: list[str] = []
    for task in tasks:
        result = task.result()
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
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_statements_in(client, ref, digest, m)) for m in manifests]
    statements: list[Statement] = []
    ignored: list[str] = []
    for task in tasks:
        found, why = task.result()
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

    ``attestations`` are the index entries next to it (any: those for other
    platform manifests are left alone). Registry trouble raises
    :class:`LookupFailed`; a registry that has nothing answers ``Found()``.
    """
    own = provenance.attestation_manifests(attestations, digest)
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
    index = await client.fetch_referrers(ref, digest)
    wanted = provenance.referrer_manifests(index)
    if not wanted:
        return Found(ignored=tuple(ignored))
    statements, more = await _gather(client, ref, digest, [d.digest for d in wanted])
    return Found(tuple(statements), "referrers" if statements else "", tuple(ignored + more))


def supports(client: object) -> bool:
    """Whether ``client`` can fetch blobs and referrers (test doubles of the resolver may not)."""
    return isinstance(client, ProvenanceClient)

