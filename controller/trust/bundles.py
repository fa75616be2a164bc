"""Sigstore bundles (v0.1, v0.2, v0.3): key-based ones verified here, keyless ones by ``sigstore``.

A bundle (``application/vnd.dev.sigstore.bundle+json;version=0.1|0.2|0.3`` or
``application/vnd.dev.sigstore.bundle.v0.3+json``) holds either a
``messageSignature`` (a signature over a message; for an image, the manifest,
so its ``messageDigest`` is the image's digest) or a ``dsseEnvelope`` (an
in-toto statement), and verification material: a public key hint (key-based)
or a signing certificate and a transparency-log entry (keyless).

* Key-based: ours, with ``cryptography``: the signature over the message
  digest (ECDSA/RSA prehashed SHA-256) or over the envelope's PAE, by a key of
  the authority in its window. The log entry, if any, is not checked: the
  authority holds no log key, and the key's window is judged at verification.
* Keyless: see :mod:`controller.trust.keyless` (``sigstore``'s verifier); the
  parsing helpers here are shared with it.

Either way the digest is ours to check: the message digest, or the statement's
subject, must be the image judged (``other-image`` otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.trust.dsse import envelope_from_json, verify_envelope
from controller.trust.encoding import b64decode, field, json_object
from controller.trust.keys import TrustedKey, find_signer
from controller.trust.results import Reason, Refused
from controller.trust.statements import Statement, check_subject, parse_statement

MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)


def bundle_json(raw: bytes) -> dict[str, Any]:
    """The bundle's JSON, refused as ``unsupported`` when its media type is none of the versions."""
    doc = json_object(raw, "the Sigstore bundle")
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str) or media_type not in MEDIA_TYPES:
        raise Refused(
            Reason.UNSUPPORTED, f"bundle media type {media_type!r} is not a known version"
        )
    return doc


def is_keyless(doc: dict[str, Any]) -> bool:
    """Whether the bundle carries a signing certificate (keyless) rather than a key hint."""
    material = doc.get("verificationMaterial")
    return isinstance(material, dict) and bool(
        material.get("certificate") or material.get("x509CertificateChain")
    )


def sha256_bytes(digest: str) -> bytes:
    """The raw SHA-256 of a ``sha256:`` digest; message signatures are judged over nothing else."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256":
        raise Refused(
            Reason.UNSUPPORTED, f"message signatures are judged over sha256, not {algorithm}"
        )
    return bytes.fromhex(encoded)


def message_digest(signature: dict[str, Any]) -> bytes | None:
    """The ``messageSignature.messageDigest`` (what was signed), or ``None`` when absent."""
    message_digest = signature.get("messageDigest")
    if message_digest is None:
        return None
    if not isinstance(message_digest, dict) or message_digest.get("algorithm") != "SHA2_256":
        raise Refused(Reason.UNSUPPORTED, "the bundle's message digest is not SHA2_256")
    value = b64decode(message_digest.get("digest"), "messageSignature.messageDigest.digest")
    if len(value) != 32:
        raise Refused(Reason.MALFORMED, "messageSignature.messageDigest.digest is not 32 bytes")
    return value


def other_image(signed: bytes, digest: str) -> Refused:
    """The refusal for a message signature over another digest than the one judged."""
    return Refused(
        Reason.OTHER_IMAGE, f"signed for sha256:{signed.hex()}, not for the image judged, {digest}"
    )


def verify_key_bundle(
    raw: bytes, digest: str, keys: Sequence[TrustedKey], at: datetime
) -> tuple[TrustedKey, Statement | None]:
    """The key that signed the bundle for ``digest`` (and its statement, for DSSE); :class:`Refused` otherwise."""
    doc = bundle_json(raw)
    if is_keyless(doc):
        raise Refused(
            Reason.WRONG_KEY, "signed keyless (with a certificate), not with one of the keys"
        )
    material = field(doc, "verificationMaterial", "bundle")
    public_key = material.get("publicKey")
    hint = public_key.get("hint") if isinstance(public_key, dict) else None
    hint = hint if isinstance(hint, str) and hint else None
    if isinstance(doc.get("dsseEnvelope"), dict):
        envelope = envelope_from_json(doc["dsseEnvelope"])
        key = verify_envelope(envelope, keys, at, hint=hint)
        statement = parse_statement(envelope.payload_type, envelope.payload)
        check_subject(statement, digest)
        return key, statement
    signature = field(doc, "messageSignature", "bundle")
    sig = b64decode(signature.get("signature"), "messageSignature.signature")
    if keys and all(isinstance(k.key, Ed25519PublicKey) for k in keys):
        raise Refused(
            Reason.UNSUPPORTED,
            "a message signature is over the image's digest, which an Ed25519 key cannot verify"
            " (Ed25519 signs whole messages); sign a DSSE statement instead",
        )
    judged = sha256_bytes(digest)
    signed = message_digest(signature) or judged
    key = find_signer(keys, sig, at, digest=signed, hint=hint)
    if signed != judged:
        raise other_image(signed, digest)
    return key, None
