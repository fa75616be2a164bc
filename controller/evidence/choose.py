"""Which attached manifests and layers may hold scan evidence, decided before any blob is fetched.

PURE: descriptors in, descriptors out. Referrers are chosen by ``artifactType``
and annotations, attestation layers by media type and their ``predicateType``
annotation, so SBOMs, signatures and provenance (often far larger than a scan)
are never downloaded for this. Entries beyond :data:`MAX_DOCUMENTS` are passed
over newest first, and said so in a note: what one image's pusher attaches can
cost that image's review a bounded number of requests, never more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.evidence.documents import MAX_DOCUMENT_BYTES, OPENVEX_PREFIX, VULN_PREDICATES
from controller.registry.media import Descriptor

IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
#: Trivy JSON reports pushed as OCI artifacts (``oras push --artifact-type …``).
TRIVY_REPORT = "application/vnd.aquasec.trivy.report.v1+json"
#: ``trivy referrer put`` of ``--format cosign-vuln`` output: IANA has no vulnerability
#: type, so the plugin writes plain JSON and annotates ``created-by: trivy``.
PLAIN_JSON = "application/json"
OPENVEX = "application/vnd.openvex+json"
STATEMENT_TYPES = frozenset({IN_TOTO, DSSE})
#: Annotations that name an attestation's predicate type (BuildKit, cosign, Sigstore bundles).
PREDICATE_KEYS = ("in-toto.io/predicate-type", "predicateType", "dev.sigstore.bundle.predicateType")
CREATED_KEYS = ("org.opencontainers.image.created", "org.opencontainers.artifact.created")

#: Referrer manifests opened per subject digest.
MAX_REFERRERS = 8
#: Documents (blobs) fetched and parsed per image, all places together.
MAX_DOCUMENTS = 8


def predicate_of(annotations: Mapping[str, str]) -> str | None:
    for key in PREDICATE_KEYS:
        if annotations.get(key):
            return annotations[key]
    return None


def wanted_predicate(predicate: str | None) -> bool:
    """A vuln scan or VEX predicate; ``None`` (not announced) is read to find out."""
    return predicate is None or predicate in VULN_PREDICATES or predicate.startswith(OPENVEX_PREFIX)


def created_of(annotations: Mapping[str, str]) -> str:
    for key in CREATED_KEYS:
        if annotations.get(key):
            return annotations[key]
    return ""


def _is_statement(kind: str) -> bool:
    return kind in STATEMENT_TYPES or kind.startswith(SIGSTORE_BUNDLE_PREFIX)


def wanted_type(media_or_artifact: str, annotations: Mapping[str, str]) -> bool:
    """Whether an artifact (or layer) of this type may be a scan, a VEX document or their attestation."""
    kind = media_or_artifact
    if _is_statement(kind):
        return wanted_predicate(predicate_of(annotations))
    if kind in (TRIVY_REPORT, OPENVEX):
        return True
    return kind == PLAIN_JSON and annotations.get("created-by", "").lower() == "trivy"


def referrers(manifests: Iterable[Descriptor]) -> list[Descriptor]:
    """The referrer manifests worth opening, newest first, at most :data:`MAX_REFERRERS`."""
    chosen = [
        d for d in manifests if d.artifact_type and wanted_type(d.artifact_type, d.annotations)
    ]
    chosen.sort(key=lambda d: created_of(d.annotations), reverse=True)
    return chosen[:MAX_REFERRERS]


@dataclass(frozen=True)
class Document:
    """A blob to fetch: its descriptor, where it was found, and the time its holder records."""

    descriptor: Descriptor
    where: str  # "attestation" (cosign's .att tag) | "referrer"
    kind: str  # the artifact type (referrers) or layer media type (attestations)
    created: str = ""


def layers(
    layers: Sequence[Descriptor], *, where: str, artifact_type: str = "", created: str = ""
) -> list[Document]:
    """The layers of an attestation or artifact manifest that may be scans or VEX.

    An artifact's own type speaks for its layers (an ``oras push`` of a Trivy
    report has a layer of type ``application/json`` or the report type); an
    attestation layer speaks for itself by its media type and predicate.
    """
    out = []
    for desc in layers:
        if desc.size > MAX_DOCUMENT_BYTES:
            continue  # refused unread: the note says so (see gather)
        if artifact_type and not _is_statement(artifact_type):
            out.append(Document(desc, where, artifact_type, created))
        elif wanted_type(desc.media_type, desc.annotations):
            out.append(Document(desc, where, desc.media_type, created))
    return out


def oversized(layers: Sequence[Descriptor]) -> list[str]:
    return [
        f"{d.digest} is {d.size} bytes, over the {MAX_DOCUMENT_BYTES} read (MAX_DOCUMENT_BYTES)"
        for d in layers
        if d.size > MAX_DOCUMENT_BYTES
    ]
