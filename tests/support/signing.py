"""Signing in cosign's and Sigstore's formats, for the trust tests: written from the specs.

Nothing here imports ``controller.trust``: the payloads, the DSSE PAE and the
bundles are built independently, as cosign and the specs describe them, so a
test that verifies them checks our reading against the formats, not against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

BUNDLE_MEDIA_TYPES = {
    "v0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "v0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "v0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}
IN_TOTO = "application/vnd.in-toto+json"
SLSA_V1 = "https://slsa.dev/provenance/v1"


def new_key(kind: str = "p256") -> PrivateKey:
    """A fresh private key: ``p256``, ``p384``, ``ed25519`` or ``rsa`` (3072 bits)."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(kind)


def public_pem(key: PrivateKey) -> str:
    """The public half as PEM (what ``cosign generate-key-pair`` writes to cosign.pub)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: PrivateKey, data: bytes, *, pss: bool = False) -> bytes:
    """Sign as cosign does: ECDSA over SHA-256 (SHA-384 for P-384), Ed25519 raw, RSA SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h: hashes.HashAlgorithm = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
        return key.sign(data, ec.ECDSA(h))
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if pss
        else padding.PKCS1v15()
    )
    return key.sign(data, pad, hashes.SHA256())


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """Sign a SHA-256 digest (a bundle's message signature over an artifact)."""
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(prehashed))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), prehashed)
    raise ValueError("Ed25519 signs messages, not digests")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def simple_signing_payload(digest: str, reference: str = "registry.test/team/app") -> bytes:
    """cosign's simple-signing payload for ``digest`` (the bytes it stores as the .sig layer)."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "tests"},
        },
        separators=(",", ":"),
    ).encode()


def statement(digest: str, predicate_type: str = SLSA_V1, *, version: str = "v1") -> bytes:
    """An in-toto statement about ``digest`` (v1, or v0.1 as older cosign attest writes)."""
    algorithm, _, encoded = digest.partition(":")
    return json.dumps(
        {
            "_type": f"https://in-toto.io/Statement/{version}",
            "subject": [{"name": "registry.test/team/app", "digest": {algorithm: encoded}}],
            "predicateType": predicate_type,
            "predicate": {"buildDefinition": {"buildType": "https://tests/build"}},
        }
    ).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 PAE, written from the protocol text."""
    t = payload_type.encode()
    return (
        b"DSSEv1 "
        + str(len(t)).encode()
        + b" "
        + t
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )


def envelope(
    key: PrivateKey, payload: bytes, payload_type: str = IN_TOTO, *, keyid: str = ""
) -> dict[str, Any]:
    """A DSSE envelope over ``payload`` signed by ``key``."""
    return {
        "payloadType": payload_type,
        "payload": b64(payload),
        "signatures": [{"keyid": keyid, "sig": b64(sign(key, pae(payload_type, payload)))}],
    }


def key_bundle(
    content: dict[str, Any], *, version: str = "v0.3", hint: str = "release-key"
) -> bytes:
    """A key-based Sigstore bundle around a ``messageSignature`` or ``dsseEnvelope``."""
    return json.dumps(
        {
            "mediaType": BUNDLE_MEDIA_TYPES[version],
            "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
            **content,
        }
    ).encode()


def message_signature(key: PrivateKey, digest: str) -> dict[str, Any]:
    """A bundle's ``messageSignature`` over the manifest whose digest is ``digest``."""
    raw = bytes.fromhex(digest.partition(":")[2])
    return {
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(raw)},
            "signature": b64(sign_digest(key, raw)),
        }
    }
