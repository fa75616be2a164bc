"""Key-based Sigstore bundles (v0.1, v0.2, v0.3): message signatures and DSSE envelopes, verified by us."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from support import signing

from controller.trust.authorities import KeyAuthority
from controller.trust.keys import load_key
from controller.trust.results import Reason
from controller.trust.verify import BundleArtifact, verify

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
IMAGE = signing.sha256(b'{"schemaVersion":2,"layers":["the image judged"]}')
OTHER = signing.sha256(b'{"schemaVersion":2,"layers":["another image"]}')


def platform(key: signing.PrivateKey) -> KeyAuthority:
    return KeyAuthority("platform", (load_key("release-key", signing.public_pem(key)),))


@pytest.mark.parametrize("version", ["v0.1", "v0.2", "v0.3"])
def test_message_signature_bundle_verifies(version: str) -> None:
    key = signing.new_key()
    bundle = signing.key_bundle(signing.message_signature(key, IMAGE), version=version)
    result = verify(IMAGE, [BundleArtifact(bundle)], platform(key), NOW)
    assert result.verified, result.message
    assert result.message == f"signature for {IMAGE} verified: signed by release-key"


@pytest.mark.parametrize("version", ["v0.1", "v0.2", "v0.3"])
@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_dsse_bundle_verifies_with_its_statement(version: str, kind: str) -> None:
    key = signing.new_key(kind)
    content = {"dsseEnvelope": signing.envelope(key, signing.statement(IMAGE))}
    result = verify(
        IMAGE,
        [BundleArtifact(signing.key_bundle(content, version=version))],
        platform(key),
        NOW,
        predicate_type=signing.SLSA_V1,
    )
    assert result.verified, result.message
    assert result.predicate_type == signing.SLSA_V1


def test_rsa_message_signature_bundle_verifies() -> None:
    key = signing.new_key("rsa")
    bundle = signing.key_bundle(signing.message_signature(key, IMAGE))
    assert verify(IMAGE, [BundleArtifact(bundle)], platform(key), NOW).verified


def test_bundle_for_another_image_is_refused() -> None:
    key = signing.new_key()
    bundle = signing.key_bundle(signing.message_signature(key, OTHER))
    result = verify(IMAGE, [BundleArtifact(bundle)], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message == f"signed for {OTHER}, not for the image judged, {IMAGE}"
    content = {"dsseEnvelope": signing.envelope(key, signing.statement(OTHER))}
    result = verify(IMAGE, [BundleArtifact(signing.key_bundle(content))], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)


def test_bundle_by_another_key_is_refused_by_its_hint_or_its_signature() -> None:
    stranger = signing.new_key()
    hinted = signing.key_bundle(signing.message_signature(stranger, IMAGE), hint="theirs")
    result = verify(IMAGE, [BundleArtifact(hinted)], platform(signing.new_key()), NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_KEY)
    assert result.message == "signed by key 'theirs', not one of the keys (release-key)"
    # A hint naming our key is unauthenticated: the signature still has to verify.
    lying = signing.key_bundle(signing.message_signature(stranger, IMAGE), hint="release-key")
    result = verify(IMAGE, [BundleArtifact(lying)], platform(signing.new_key()), NOW)
    assert (result.verified, result.reason) == (False, Reason.BAD_SIGNATURE)


def test_tampered_bundle_signature_is_refused() -> None:
    key = signing.new_key()
    content = signing.message_signature(key, IMAGE)
    content["messageSignature"]["messageDigest"]["digest"] = signing.b64(
        bytes.fromhex(OTHER.partition(":")[2])
    )
    result = verify(IMAGE, [BundleArtifact(signing.key_bundle(content))], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.BAD_SIGNATURE)


def test_unknown_bundle_version_and_keyless_bundle_under_a_key_authority_are_refused() -> None:
    key = signing.new_key()
    doc = json.loads(signing.key_bundle(signing.message_signature(key, IMAGE)))
    doc["mediaType"] = "application/vnd.dev.sigstore.bundle.v9+json"
    result = verify(IMAGE, [BundleArtifact(json.dumps(doc).encode())], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.UNSUPPORTED)
    assert "bundle media type 'application/vnd.dev.sigstore.bundle.v9+json'" in result.message
    doc["mediaType"] = signing.BUNDLE_MEDIA_TYPES["v0.3"]
    doc["verificationMaterial"] = {"certificate": {"rawBytes": "AAAA"}}
    result = verify(IMAGE, [BundleArtifact(json.dumps(doc).encode())], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_KEY)
    assert result.message == "signed keyless (with a certificate), not with one of the keys"
    assert verify(IMAGE, [BundleArtifact(b"[]")], platform(key), NOW).reason is Reason.MALFORMED


def test_ed25519_key_cannot_verify_a_message_signature_and_says_so() -> None:
    key = signing.new_key("ed25519")
    p256 = signing.new_key()
    bundle = signing.key_bundle(signing.message_signature(p256, IMAGE))
    result = verify(IMAGE, [BundleArtifact(bundle)], platform(key), NOW)
    assert (result.verified, result.reason) == (False, Reason.UNSUPPORTED)
    assert "which an Ed25519 key cannot verify" in result.message
