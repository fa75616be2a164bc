"""cosign's simple signing: the ``sha256-<hex>.sig`` layers, verified with a public key.

PURE. A cosign signature manifest holds one layer per signature, of media type
``application/vnd.dev.cosign.simplesigning.v1+json``; the layer's blob is the
payload, and the annotation ``dev.cosignproject.cosign/signature`` holds the
base64 signature over exactly those bytes. The payload::

    {"critical": {"identity": {"docker-reference": "registry/repo"},
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "type": "cosign container image signature"},
     "optional": {…}}

We check, in this order: the blob's bytes match the layer descriptor's digest
(else ``tampered``), the signature verifies with a key of the authority in its
window (``bad-signature``, ``wrong-key``, ``outside-window``), the payload is
this format, and its ``docker-manifest-digest`` is the digest judged (else
``other-image``). ``docker-reference`` is reported, not enforced: an image
pulled through a mirror keeps its publisher's reference, which is the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller import digests
from controller.trust.encoding import b64decode, field, json_object
from controller.trust.keys import TrustedKey, find_signer
from controller.trust.results import Reason, Refused

MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
PAYLOAD_TYPE = "cosign container image signature"


CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"


@dataclass(frozen=True)
class SimpleSigning:
    """One signature layer as fetched: the blob, its annotations, its descriptor digest.

    Keyless signatures also carry the signing certificate (PEM), its chain, and the
    transparency log's promise (the ``dev.sigstore.cosign/bundle`` annotation's JSON).
    """

    payload: bytes
    signature: str
    layer_digest: str | None = None
    certificate: str | None = None
    chain: str | None = None
    rekor_bundle: str | None = None


@dataclass(frozen=True)
class Payload:
    """The parts of a simple-signing payload we judge."""

    docker_reference: str
    manifest_digest: str


def parse_payload(payload: bytes) -> Payload:
    """The payload's reference and digest; ``malformed``/``unsupported`` when it is not one."""
    doc = json_object(payload, "the simple-signing payload")
    critical = field(doc, "critical", "payload")
    kind = critical.get("type")
    if kind != PAYLOAD_TYPE:
        raise Refused(Reason.UNSUPPORTED, f"payload type {kind!r} is not {PAYLOAD_TYPE!r}")
    image = field(critical, "image", "payload.critical")
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    digest = image.get("docker-manifest-digest")
    if not isinstance(digest, str) or digests.problem(digest):
        raise Refused(
            Reason.MALFORMED, "payload.critical.image.docker-manifest-digest is not a digest"
        )
    return Payload(reference if isinstance(reference, str) else "", digest)


def verify_simple_signing(
    artifact: SimpleSigning, digest: str, keys: Sequence[TrustedKey], at: datetime
) -> tuple[TrustedKey, Payload]:
    """The key that signed ``artifact`` for ``digest``, and the payload; :class:`Refused` otherwise."""
    check_layer_digest(artifact)
    signature = b64decode(artifact.signature, f"the {SIGNATURE_ANNOTATION} annotation")
    key = find_signer(keys, signature, at, data=artifact.payload)
    return key, payload_for(artifact.payload, digest)


def check_layer_digest(artifact: SimpleSigning) -> None:
    """Refuse as ``tampered`` a payload whose bytes are not its layer descriptor's digest."""
    if artifact.layer_digest is not None:
        algorithm = artifact.layer_digest.partition(":")[0]
        if algorithm not in digests.ALGORITHMS or (
            digests.compute(artifact.payload, algorithm) != artifact.layer_digest
        ):
            raise Refused(
                Reason.TAMPERED,
                f"the payload's bytes do not match its layer digest {artifact.layer_digest}",
            )


def payload_for(payload: bytes, digest: str) -> Payload:
    """The (already signature-checked) payload, refused as ``other-image`` unless it is for ``digest``."""
    parsed = parse_payload(payload)
    if parsed.manifest_digest != digest:
        raise Refused(
            Reason.OTHER_IMAGE,
            f"signed for {parsed.manifest_digest}"
            + (f" ({parsed.docker_reference})" if parsed.docker_reference else "")
            + f", not for the image judged, {digest}",
        )
    return parsed
