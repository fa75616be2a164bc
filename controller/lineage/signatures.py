"""Signatures and attestations fetched for ``spec.trust``, verified, remembered.

ASYNC, over the one registry client and charged to the review's budget like
every lineage lookup (:func:`controller.lineage.images.charged`). For one
image digest it reads, in this order:

* cosign's signature tag ``sha256-<hex>.sig``: one layer per signature, of media
  type ``application/vnd.dev.cosign.simplesigning.v1+json``, the signature (and a
  keyless certificate, chain and log promise) in the layer's annotations;
* cosign's attestation tag ``sha256-<hex>.att``: DSSE envelopes
  (``application/vnd.dsse.envelope.v1+json``);
* OCI 1.1 referrers (the API, or the referrers tag where the registry has none):
  only descriptors whose ``artifactType`` is a Sigstore bundle or a DSSE envelope
  are opened, and only their layers of those media types are fetched.

At most :data:`MAX_PER_IMAGE` artifacts are fetched for one digest, and each blob
is capped at :data:`MAX_BLOB`: how many an image has is the registry's to say, the
work is ours. Verification is :func:`controller.trust.verify.verify` (pure).

Results are remembered in :class:`SignatureChecker`'s cache, keyed by
(repository, digest, authority fingerprint, predicate type): the fingerprint is
the SHA-256 of everything that decides a verification (the authority's name, each
key's SPKI and window, the keyless identity and root), so an entry written while
judging one namespace's policy is only ever read for an authority with the very
same content, whoever wrote it; what it says is a function of the registry's
bytes at that digest and that authority alone. Verified answers live
:data:`VERIFIED_TTL` (never past a key's ``notAfter``); refusals
:data:`REFUSED_TTL`, so a signature pushed after a denial counts within a minute;
failures (registry trouble, a bound) are never remembered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.caching import TTLMap
from controller.errors import BaseguardError, LookupFailed
from controller.lineage.budget import ReviewBudget
from controller.lineage.images import charged
from controller.reference import Reference
from controller.registry.media import ImageManifest
from controller.registry.referrers import fallback_tag
from controller.trust.authorities import KeyAuthority, KeylessAuthority
from controller.trust.results import Reason, TrustAnswer, TrustResult
from controller.trust.simplesigning import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SimpleSigning,
)
from controller.trust.simplesigning import MEDIA_TYPE as SIMPLE_SIGNING
from controller.trust.verify import Artifact, BundleArtifact, DsseArtifact, verify

if TYPE_CHECKING:
    from controller.trust.roots import TrustRoot

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
#: Artifacts fetched for one digest (signature layers, attestation layers and referrers
#: together). Past it the rest are not fetched; if none fetched verifies, the image is
#: not evaluated (``lookup-failed``), never verified.
MAX_PER_IMAGE = 16
#: The largest signature payload, envelope or bundle read (a bundle with a chain is ~10 KiB).
MAX_BLOB = 256 * 1024
VERIFIED_TTL = 600.0
REFUSED_TTL = 60.0
DEFAULT_ENTRIES = 4096


@dataclass
class Found:
    """What one digest carries: signatures and attestations, and whether more were left unread."""

    signatures: list[Artifact] = field(default_factory=list)
    attestations: list[Artifact] = field(default_factory=list)
    truncated: bool = False

    @property
    def count(self) -> int:
        return len(self.signatures) + len(self.attestations)


def _is_missing(exc: LookupFailed) -> bool:
    return exc.context.get("status") == 404 or exc.context.get("code") in (
        "MANIFEST_UNKNOWN",
        "NAME_UNKNOWN",
    )


async def fetch_artifacts(client: Any, ref: Reference, digest: str, *, limit: int = MAX_PER_IMAGE) -> Found:
    """Every signature and attestation of ``ref``'s repository at ``digest``, up to ``limit``.

    ``client`` is a charged client (every call counts). A missing tag means none of
    that kind; any other registry trouble raises :class:`LookupFailed`.
    """
    found = Found()
    base = Reference(ref.registry, ref.repository, None, None)

    def room() -> bool:
        if found.count >= limit:
            found.truncated = True
            return False
        return True

    for suffix, wanted, into in (
        (".sig", SIMPLE_SIGNING, found.signatures),
        (".att", DSSE_ENVELOPE, found.attestations),
    ):
        tagged = Reference(base.registry, base.repository, fallback_tag(digest) + suffix, None)
        try:
            fetched = await client.fetch_manifest(tagged)
        except LookupFailed as exc:
            if _is_missing(exc):
                continue
            raise
        manifest = fetched.manifest
        if not isinstance(manifest, ImageManifest):
            continue
        for layer in manifest.layers:
            if layer.media_type != wanted:
                continue  # filtered before any blob is fetched
            if not room():
                break
            blob = await client.fetch_blob(base, layer.digest, limit=MAX_BLOB)
            if wanted == SIMPLE_SIGNING:
                notes = layer.annotations
                into.append(
                    SimpleSigning(
                        payload=blob,
                        signature=notes.get(SIGNATURE_ANNOTATION, ""),
                        layer_digest=layer.digest,
                        certificate=notes.get(CERTIFICATE_ANNOTATION),
                        chain=notes.get(CHAIN_ANNOTATION),
                        rekor_bundle=notes.get(BUNDLE_ANNOTATION),
                    )
                )
            else:
                into.append(DsseArtifact(blob))
    if hasattr(client, "fetch_referrers"):
        index = await client.fetch_referrers(base, digest)
        for descriptor in index.manifests:
            kind = descriptor.artifact_type
            if kind not in BUNDLE_TYPES and kind != DSSE_ENVELOPE:
                continue  # an SBOM, a scan report: never opened
            if not room():
                break
            fetched = await client.fetch_manifest(base, descriptor.digest)
            manifest = fetched.manifest
            if not isinstance(manifest, ImageManifest):
                continue
            for layer in manifest.layers:
                if layer.media_type not in BUNDLE_TYPES and layer.media_type != DSSE_ENVELOPE:
                    continue
                blob = await client.fetch_blob(base, layer.digest, limit=MAX_BLOB)
                if layer.media_type == DSSE_ENVELOPE:
                    found.attestations.append(DsseArtifact(blob))
                else:
                    # A bundle holds a message signature or a DSSE statement: verify() tells
                    # which by the predicate asked for, so it is offered to both.
                    found.signatures.append(BundleArtifact(blob))
                    found.attestations.append(BundleArtifact(blob))
                break  # one bundle per referrer manifest
    return found


Authority = KeyAuthority | KeylessAuthority


@dataclass(frozen=True)
class Wanted:
    """One verification asked for: an image digest, an authority, a predicate (``None``: a signature).

    ``authority`` is a string when it cannot be used (why: a keyless root not
    configured); ``fingerprint`` identifies its content (see the module's note).
    """

    registry: str
    repository: str
    digest: str
    authority: Authority | str
    name: str
    fingerprint: str
    predicate: str | None = None
    not_after: dt.datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.registry, self.repository, self.digest, self.fingerprint, self.predicate or "")


class SignatureChecker:
    """Fetches, verifies and remembers signatures and attestations (the results cache).

    ``roots`` are the keyless trusted roots by name, read from files at start
    (``check --trusted-root``, the server's ``trusted_roots``): verification never
    reaches anything but the registry.
    """

    def __init__(
        self,
        client: Any,
        *,
        roots: Mapping[str, TrustRoot] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_ENTRIES,
    ) -> None:
        self.client = client
        self.roots = dict(roots or {})
        self.results: TTLMap[tuple[str, str, str, str, str], TrustAnswer] = TTLMap(
            ttl=VERIFIED_TTL, clock=clock, max_entries=max_entries
        )

    def keyless(
        self, name: str, root: str, issuer: str, subject: str | None, subject_regexp: str | None
    ) -> Authority | str:
        """A keyless authority under the configured root ``root``, or why there is none."""
        trusted = self.roots.get(root)
        if trusted is None:
            named = ", ".join(sorted(self.roots)) or "none"
            return (
                f"no trusted root named {root!r} is configured (configured: {named}; "
                "check --trusted-root FILE, or the server's trusted_roots)"
            )
        try:
            return KeylessAuthority(name, trusted, issuer, subject, subject_regexp)
        except BaseguardError as exc:
            return exc.message

    async def check(
        self, wanted: Sequence[Wanted], *, budget: ReviewBudget, now: dt.datetime
    ) -> list[TrustAnswer]:
        """An answer for each of ``wanted``, in order: remembered, or fetched (charged) and verified."""
        answers: dict[tuple[str, str, str, str, str], TrustAnswer] = {}
        todo: dict[tuple[str, str, str], None] = {}
        for item in wanted:
            known = self.results.get(item.key)
            if known is not None:
                answers[item.key] = known
            else:
                todo.setdefault((item.registry, item.repository, item.digest), None)
        if todo:
            client = charged(self.client, budget)

            async def one(registry: str, repository: str, digest: str) -> Found | str:
                try:
                    return await fetch_artifacts(
                        client, Reference(registry, repository, None, None), digest
                    )
                except LookupFailed as exc:
                    return (
                        f"the signatures of {registry}/{repository}@{digest} could not be read: "
                        f"{exc.message}"
                    )

            fetched = dict(zip(todo, await asyncio.gather(*(one(*w) for w in todo)), strict=True))
            for item in wanted:
                if item.key in answers:
                    continue
                stopped = budget.cpu_exhausted()
                if stopped is not None:  # verification CPU is the review's too: said, never skipped
                    answers[item.key] = TrustAnswer(failure=f"signatures not verified: {stopped}")
                    continue
                began = time.thread_time()
                found = fetched[(item.registry, item.repository, item.digest)]
                answers[item.key] = self._judge(found, item, now)
                budget.charge_cpu(time.thread_time() - began)
                await asyncio.sleep(0)  # one authority's verification at a time: others' reviews run between
        return [answers[item.key] for item in wanted]

    def _judge(self, found: Found | str, item: Wanted, now: dt.datetime) -> TrustAnswer:
        if isinstance(found, str):
            return TrustAnswer(failure=found)  # never remembered: the next review asks again
        if isinstance(item.authority, str):
            return TrustAnswer(failure=item.authority)  # the rule names the authority
        artifacts = found.attestations if item.predicate else found.signatures
        result = verify(item.digest, artifacts, item.authority, now, predicate_type=item.predicate)
        if not result.verified and found.truncated:
            result = TrustResult.refused(
                item.name,
                Reason.TOO_MANY,
                f"more than {MAX_PER_IMAGE} signatures and attestations for {item.digest}; the "
                f"first {MAX_PER_IMAGE} did not verify and the rest were not read",
            )
        answer = TrustAnswer(result=result, examined=len(artifacts))
        if result.reason is not Reason.TOO_MANY:
            self.results.put(item.key, answer, ttl=_ttl(item, result, now))
        return answer


def _ttl(item: Wanted, result: TrustResult, now: dt.datetime) -> float:
    if not result.verified:
        return REFUSED_TTL
    if item.not_after is not None:
        return max(min(VERIFIED_TTL, (item.not_after - now).total_seconds()), 0.0)
    return VERIFIED_TTL
