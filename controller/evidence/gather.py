"""Reading an image's scan evidence from the registry, charged to the review's budget.

Asked only for images a policy with an ``evidence`` section judges, after their
lineage is known (the base's layers are what attribution needs). For each
platform image, the places scanners leave reports, about its platform manifest
and about the index it was pulled by:

1. cosign's attestation tag ``sha256-<hex>.att`` (what ``cosign attest`` writes:
   one manifest, one DSSE layer per attestation, annotated ``predicateType``);
2. OCI 1.1 referrers (the API, else the ``sha256-<hex>`` fallback tag), chosen by
   ``artifactType`` and annotations (:mod:`controller.evidence.choose`).

Then, only when fixable vulnerabilities sit in base layers and the base tag has
moved since the build, the same places for the base's *current* image: whether a
rebuild on it is what fixes them.

Every request goes through the review's charged client; past a bound, or when
the registry fails, the platform's :attr:`Evidence.failure` says why and the
policy reports ``lookup-failed``. Nothing here raises for registry trouble.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from controller.errors import LookupFailed
from controller.evidence import choose, documents
from controller.evidence.documents import DocumentError
from controller.evidence.model import (
    BaseNow,
    Evidence,
    Scan,
    VexDocument,
    VexStatement,
    Vulnerability,
    Where,
)
from controller.lineage.model import End, Level, Lineage, PlatformLineage
from controller.reference import Reference
from controller.registry.limits import ByteAccount, charged_to
from controller.registry.media import ImageIndex, ImageManifest
from controller.registry.referrers import fallback_tag
from controller.trust.authorities import KeyAuthority, KeylessAuthority
from controller.trust.verify import BundleArtifact, DsseArtifact, verify_artifact

#: Distinct authorities one image's evidence is verified against (all the policies
#: judging it together): each costs a verification per signed document read.
MAX_AUTHORITIES = 16


@dataclass(frozen=True)
class Signer:
    """An authority ``spec.evidence.authorities`` names, as the verifier takes it.

    ``fingerprint`` is the authority's content hash (``AuthoritySpec.fingerprint``):
    what a verified document records, and what a policy's view selects by.
    ``authority`` is a string when it cannot be used (a keyless root not configured).
    """

    fingerprint: str
    name: str
    authority: KeyAuthority | KeylessAuthority | str


@dataclass(frozen=True)
class Signers:
    """The authorities to verify evidence against, and the time keys' windows are judged at."""

    authorities: tuple[Signer, ...]
    now: dt.datetime


class EvidenceClient(Protocol):
    """What reading evidence needs (a :class:`~controller.lineage.images.ChargedBlobClient`)."""

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> Any: ...

    async def fetch_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes: ...

    async def fetch_referrers(self, ref: Reference, digest: str) -> ImageIndex: ...


T = TypeVar("T")


async def _all(*steps: Awaitable[T]) -> list[T]:
    """Every step's result, in order; the first :class:`LookupFailed` raised once all are done
    (a plain ``gather`` would leave the others' failures unretrieved)."""

    async def caught(step: Awaitable[T]) -> T | LookupFailed:
        try:
            return await step
        except LookupFailed as exc:
            return exc

    results = await asyncio.gather(*(caught(s) for s in steps))
    for result in results:
        if isinstance(result, LookupFailed):
            raise result
    return [r for r in results if not isinstance(r, LookupFailed)]


def _missing(exc: LookupFailed) -> bool:
    return exc.context.get("status") == 404 or exc.context.get("code") == "MANIFEST_UNKNOWN"


async def _attestation_documents(
    client: EvidenceClient, repo: Reference, digest: str
) -> list[choose.Document]:
    tagged = Reference(repo.registry, repo.repository, fallback_tag(digest)[:124] + ".att", None)
    try:
        fetched = await client.fetch_manifest(tagged)
    except LookupFailed as exc:
        if _missing(exc):
            return []
        raise
    manifest = fetched.manifest
    if not isinstance(manifest, ImageManifest):
        return []
    return choose.layers(manifest.layers, where="attestation")


async def _referrer_documents(
    client: EvidenceClient, repo: Reference, digest: str, notes: list[str]
) -> list[choose.Document]:
    index = await client.fetch_referrers(repo, digest)
    chosen = choose.referrers(index.manifests)
    fetched = await _all(*(client.fetch_manifest(repo, d.digest) for d in chosen))
    out: list[choose.Document] = []
    for desc, got in zip(chosen, fetched, strict=True):
        manifest = got.manifest
        if not isinstance(manifest, ImageManifest):
            continue
        notes.extend(choose.oversized(manifest.layers))
        created = choose.created_of(desc.annotations) or choose.created_of(manifest.annotations)
        out += choose.layers(
            manifest.layers, where="referrer", artifact_type=desc.artifact_type, created=created
        )
    return out


def _read(
    body: bytes, doc: choose.Document, digests: frozenset[str]
) -> tuple[Scan | list[VexStatement], documents.Statement | None]:
    """One fetched document as a scan or VEX statements, and the in-toto statement that
    carried it (``None`` for a bare report); :class:`DocumentError` when neither."""
    return _read_body(body, doc, digests)


def _read_body(
    body: bytes, doc: choose.Document, digests: frozenset[str]
) -> tuple[Scan | list[VexStatement], documents.Statement | None]:
    created = documents.parse_time(doc.created)
    if doc.kind == choose.OPENVEX:
        return documents.vex_statements(documents.read_json(body, "an OpenVEX document")), None
    if doc.kind == choose.TRIVY_REPORT:
        scan = documents.trivy_scan(body, source=f"Trivy report ({doc.where})", created=created)
        return scan, None
    if doc.kind == choose.PLAIN_JSON:
        value = documents.read_json(body, "a scan report")
        if isinstance(value, dict) and "scanner" in value:
            scan = documents.vuln_predicate_scan(
                value, source=f"cosign-vuln ({doc.where})", created=created
            )
            return scan, None
        scan = documents.trivy_scan(body, source=f"Trivy report ({doc.where})", created=created)
        return scan, None
    statement = documents.parse_statement(body)
    if digests.isdisjoint(statement.subjects):
        raise DocumentError(
            f"a {statement.predicate_type} statement is about "
            f"{', '.join(sorted(statement.subjects)) or 'no subject'}, not this image"
        )
    if statement.predicate_type in documents.VULN_PREDICATES:
        scan = documents.vuln_predicate_scan(
            statement.predicate, source=f"cosign-vuln attestation ({doc.where})", created=created
        )
        return scan, statement
    if statement.predicate_type.startswith(documents.OPENVEX_PREFIX) or documents.is_openvex(
        statement.predicate
    ):
        return documents.vex_statements(statement.predicate), statement
    raise DocumentError(f"predicate {statement.predicate_type} is neither a scan nor VEX")


def _verified_by(
    body: bytes,
    doc: choose.Document,
    statement: documents.Statement | None,
    about: frozenset[str],
    signers: Signers | None,
    account: Any,
) -> frozenset[str]:
    """The fingerprints of the authorities whose signature on ``body`` verifies.

    Only a DSSE envelope (cosign ``attest``'s ``.att`` layer, an attestation
    referrer) or a Sigstore bundle can carry one; a bare report or statement is
    signed by no one. Verification is :func:`controller.trust.verify.verify_artifact`:
    the signature over the very payload read above, and a subject that is this image.
    Its CPU is the review's (``account``); once that is spent, the evidence is
    not evaluated (:class:`LookupFailed`), never taken as signed or unsigned.
    """
    if signers is None or statement is None or not signers.authorities:
        return frozenset()
    if doc.kind.startswith(choose.SIGSTORE_BUNDLE_PREFIX):
        artifact: DsseArtifact | BundleArtifact = BundleArtifact(body)
    elif doc.kind == choose.DSSE or doc.kind == choose.IN_TOTO:
        artifact = DsseArtifact(body)
    else:
        return frozenset()
    subjects = sorted(about & statement.subjects)
    out: set[str] = set()
    for signer in signers.authorities:
        if isinstance(signer.authority, str):
            continue  # said once per read, in the notes
        stopped = account.cpu_exhausted() if hasattr(account, "cpu_exhausted") else None
        if stopped is not None:
            raise LookupFailed(f"the signatures of scan evidence were not verified: {stopped}")
        began = time.thread_time()
        try:
            for digest in subjects:
                result = verify_artifact(
                    digest, artifact, signer.authority, signers.now,
                    predicate_type=statement.predicate_type,
                )  # fmt: skip
                if result.verified:
                    out.add(signer.fingerprint)
                    break
        finally:
            if hasattr(account, "charge_cpu"):
                account.charge_cpu(time.thread_time() - began)
    return frozenset(out)


async def read(
    client: EvidenceClient,
    repo: Reference,
    digests: Sequence[str],
    *,
    signers: Signers | None = None,
    account: Any = None,
) -> tuple[list[Scan], frozenset[str], list[str], list[VexDocument]]:
    """The scans about ``digests`` (a platform manifest, and the index it came from), the
    vulnerability ids VEX suppresses, notes on what was found but not used, and the VEX
    documents read (for a policy that counts only signed ones).

    With ``signers``, each scan and VEX document records which of them signed it.
    Raises :class:`LookupFailed` when the registry fails or a bound is reached.
    """
    notes: list[str] = []
    found: list[choose.Document] = []
    subjects = list(dict.fromkeys(digests))
    if signers is not None:
        if len(signers.authorities) > MAX_AUTHORITIES:
            raise LookupFailed(
                f"scan evidence: {len(signers.authorities)} authorities to verify against, more "
                f"than {MAX_AUTHORITIES} (MAX_AUTHORITIES per image)",
                context={"code": "BOUND", "bound": "MAX_AUTHORITIES"},
            )
        notes += [
            f"authority {s.name} cannot verify: {s.authority}"
            for s in signers.authorities
            if isinstance(s.authority, str)
        ]
    places = await _all(
        *(_attestation_documents(client, repo, d) for d in subjects),
        *(_referrer_documents(client, repo, d, notes) for d in subjects),
    )
    for place in places:
        found += place
    unique = list({d.descriptor.digest: d for d in found}.values())
    if len(unique) > choose.MAX_DOCUMENTS:
        notes.append(
            f"{len(unique) - choose.MAX_DOCUMENTS} more scan documents not read "
            f"(MAX_DOCUMENTS = {choose.MAX_DOCUMENTS} per image)"
        )
        unique = unique[: choose.MAX_DOCUMENTS]
    bodies = await _all(
        *(
            client.fetch_blob(repo, d.descriptor.digest, limit=documents.MAX_DOCUMENT_BYTES)
            for d in unique
        )
    )
    about = frozenset(digests)
    scans: list[Scan] = []
    vex: list[VexDocument] = []
    for doc, body in zip(unique, bodies, strict=True):
        try:
            got, statement = _read(body, doc, about)
        except DocumentError as exc:
            notes.append(f"{doc.descriptor.digest}: {exc}")
            continue
        signed = _verified_by(body, doc, statement, about, signers, account)
        if isinstance(got, Scan):
            scans.append(replace(got, signers=signed))
        else:
            vex.append(VexDocument(tuple(documents.about_image(got, about)), signed))
    statements = [s for d in vex for s in d.statements]
    return scans, documents.suppressed(statements, about), notes, vex


def attributed(scan: Scan, base: Sequence[str] | None, image: Sequence[str]) -> Scan:
    """``scan`` with each vulnerability placed by its layer's diff_id.

    ``base`` is the verified base's diff_ids, ``()`` for an image built from
    scratch (every layer is its own), ``None`` when no base was established:
    then no layer can be called the application's, and every finding is unknown.
    """
    in_base, in_image = set(base or ()), set(image)

    def where(v: Vulnerability) -> Where:
        if base is None or not v.diff_id:
            return Where.UNKNOWN
        if v.diff_id in in_base:
            return Where.BASE
        if v.diff_id in in_image:
            return Where.APPLICATION
        return Where.UNKNOWN

    return replace(
        scan, vulnerabilities=tuple(replace(v, where=where(v)) for v in scan.vulnerabilities)
    )


def _tag_of(level: Level) -> str:
    """How a base is named in messages: by its tag, not the digest it was pinned at."""
    ref = level.reference
    if ref is None:
        return level.name
    return ref.without_digest().normalized if ref.tag else ref.normalized


def verified_base(platform: PlatformLineage) -> Level | None:
    """The immediate base, when its layers are a prefix of the image's (what attribution needs)."""
    if len(platform.levels) < 2:
        return None
    image, base = platform.levels[0], platform.levels[1]
    if base.reference is None or not base.diff_ids or base.verified is False:
        return None
    if tuple(image.diff_ids[: len(base.diff_ids)]) != tuple(base.diff_ids):
        return None
    return base


async def _platform(
    client: EvidenceClient,
    lineage: Lineage,
    platform: PlatformLineage,
    signers: Signers | None = None,
    account: Any = None,
) -> PlatformLineage:
    image = platform.levels[0] if platform.levels else None
    if image is None or image.digest is None or image.reference is None:
        return replace(
            platform,
            evidence=Evidence(digest="", failure="the image has no digest to read scans of"),
        )
    digests = [image.digest] + (
        [lineage.digest] if lineage.digest and lineage.digest != image.digest else []
    )
    base = verified_base(platform)
    try:
        scans, suppressed, notes, vex = await read(
            client, image.reference, digests, signers=signers, account=account
        )
    except LookupFailed as exc:
        return replace(
            platform,
            evidence=Evidence(
                image.digest, failure=f"scans of {image.name} could not be read: {exc}"
            ),
        )
    own = [s for s in scans if s.describes(image.diff_ids)]
    if len(own) < len(scans):
        notes.append(
            f"{len(scans) - len(own)} scan(s) describe an image with other layers "
            "(another platform, or another build): not used"
        )
    layers = (
        base.diff_ids
        if base
        else (() if platform.end is End.SCRATCH and len(platform.levels) == 1 else None)
    )
    scans = [attributed(s, layers, image.diff_ids) for s in own]
    evidence = Evidence(
        image.digest,
        tuple(scans),
        suppressed,
        base=_tag_of(base) if base else None,
        base_digest=base.digest if base else None,
        base_moved_to=base.moved_to if base else None,
        notes=tuple(notes),
        vex=tuple(vex),
    )
    if base is not None and base.moved_to and base.reference is not None:
        views = [evidence] + (
            [evidence.signed_by(frozenset(s.fingerprint for s in signers.authorities))]
            if signers is not None and signers.authorities
            else []
        )
        fixable_in_base = [
            v
            for view in views
            for v in view.open_vulnerabilities()
            if v.where is Where.BASE and v.fixable
        ]
        if fixable_in_base:
            evidence = replace(evidence, base_now=await _base_now(client, base, base.moved_to))
    return replace(platform, evidence=evidence)


async def _base_now(client: EvidenceClient, base: Level, current: str) -> BaseNow:
    """What the scans of the base tag's current image say (its fixable vulnerabilities)."""
    assert base.reference is not None
    repo = base.reference.without_digest()
    name = _tag_of(base)
    try:
        scans, suppressed, _, _ = await read(client, repo, [current])
    except LookupFailed as exc:
        return BaseNow(name, current, False, note=f"its scans could not be read: {exc}")
    if not scans:
        return BaseNow(name, current, False, note="no scan of it was found")
    now = Evidence(current, tuple(scans), suppressed)
    still = frozenset(v.key for v in now.open_vulnerabilities() if v.fixable)
    return BaseNow(name, current, True, still)


async def attach(
    client: EvidenceClient,
    lineage: Lineage,
    account: ByteAccount | None = None,
    *,
    signers: Signers | None = None,
) -> Lineage:
    """``lineage`` with each platform's :class:`Evidence`.

    ``client`` charges every request to the review; ``account`` (the review's budget)
    is charged the bytes of every document parsed here, as the registry's JSON
    reader charges what it parses for the client, and the CPU of verifying
    signed documents against ``signers`` (the authorities the policies judging
    this image in this namespace name in ``spec.evidence.authorities``).
    """
    if account is None:
        return await _attach(client, lineage, signers, None)
    with charged_to(account):
        return await _attach(client, lineage, signers, account)


async def _attach(
    client: EvidenceClient, lineage: Lineage, signers: Signers | None, account: Any
) -> Lineage:
    if lineage.failure is not None or not lineage.platforms:
        return lineage
    if not (hasattr(client, "fetch_referrers") and hasattr(client, "fetch_blob")):
        failure = "this registry client reads no referrers or blobs, so no scan could be read"
        return replace(
            lineage,
            platforms=tuple(
                replace(p, evidence=Evidence(p.levels[0].digest or "", failure=failure))
                if p.levels
                else p
                for p in lineage.platforms
            ),
        )
    platforms = await _all(
        *(_platform(client, lineage, p, signers, account) for p in lineage.platforms)
    )
    return replace(lineage, platforms=tuple(platforms))
