"""Key-based verification: cosign simple signing and DSSE envelopes, judged by public keys.

Every test asserts what a user would be told: verified and by which key, or
refused with its reason and a message naming the authority and what failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from support import signing

from controller.trust.authorities import KeyAuthority
from controller.trust.dsse import pae
from controller.trust.keys import InvalidKey, load_key
from controller.trust.results import Reason
from controller.trust.simplesigning import SimpleSigning
from controller.trust.verify import DsseArtifact, verify

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
IMAGE = signing.sha256(b'{"schemaVersion":2,"layers":["the image judged"]}')
OTHER = signing.sha256(b'{"schemaVersion":2,"layers":["another image"]}')


def authority(*pairs: tuple[str, signing.PrivateKey], **window: datetime) -> KeyAuthority:
    keys = tuple(load_key(name, signing.public_pem(k), **window) for name, k in pairs)
    return KeyAuthority("platform", keys)


def simple(key: signing.PrivateKey, digest: str = IMAGE, **kw: bool) -> SimpleSigning:
    payload = signing.simple_signing_payload(digest)
    return SimpleSigning(
        payload, signing.b64(signing.sign(key, payload, **kw)), signing.sha256(payload)
    )


@pytest.mark.parametrize(
    ("kind", "pss"),
    [("p256", False), ("p384", False), ("ed25519", False), ("rsa", False), ("rsa", True)],
)
def test_simple_signing_verifies_for_each_key_type(kind: str, pss: bool) -> None:
    key = signing.new_key(kind)
    result = verify(IMAGE, [simple(key, pss=pss)], authority(("release", key)), NOW)
    assert result.verified, result.message
    assert result.signer == "release"
    assert result.message == f"signature for {IMAGE} verified: signed by release"


def test_p384_signature_over_sha256_as_older_cosign_signs_verifies() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = signing.new_key("p384")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = signing.simple_signing_payload(IMAGE)
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    result = verify(IMAGE, [SimpleSigning(payload, signing.b64(sig))], authority(("k", key)), NOW)
    assert result.verified


def test_wrong_key_is_refused_naming_the_authority_and_its_keys() -> None:
    result = verify(
        IMAGE, [simple(signing.new_key())], authority(("release", signing.new_key())), NOW
    )
    assert not result.verified
    assert result.authority == "platform"
    assert result.reason is Reason.BAD_SIGNATURE
    assert "does not verify with any key (release)" in result.message


def test_tampered_payload_is_refused() -> None:
    key = signing.new_key()
    good = simple(key)
    altered = good.payload.replace(b"tests", b"evil!")
    # Bytes altered but the descriptor's digest kept: the layer no longer matches it.
    result = verify(
        IMAGE,
        [SimpleSigning(altered, good.signature, good.layer_digest)],
        authority(("release", key)),
        NOW,
    )
    assert (result.verified, result.reason) == (False, Reason.TAMPERED)
    assert f"do not match its layer digest {good.layer_digest}" in result.message
    # Bytes and descriptor both altered: the signature no longer covers them.
    result = verify(
        IMAGE,
        [SimpleSigning(altered, good.signature, signing.sha256(altered))],
        authority(("release", key)),
        NOW,
    )
    assert (result.verified, result.reason) == (False, Reason.BAD_SIGNATURE)


def test_signature_for_another_image_is_refused_naming_both_digests() -> None:
    key = signing.new_key()
    result = verify(IMAGE, [simple(key, OTHER)], authority(("release", key)), NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message == (
        f"signed for {OTHER} (registry.test/team/app), not for the image judged, {IMAGE}"
    )


def test_payload_with_a_malformed_digest_is_refused() -> None:
    key = signing.new_key()
    payload = signing.simple_signing_payload("sha256:1234")
    art = SimpleSigning(payload, signing.b64(signing.sign(key, payload)))
    result = verify(IMAGE, [art], authority(("release", key)), NOW)
    assert (result.verified, result.reason) == (False, Reason.MALFORMED)
    assert "docker-manifest-digest is not a digest" in result.message


def test_key_outside_its_window_is_refused_and_rotation_needs_no_flag_day() -> None:
    old, new = signing.new_key(), signing.new_key()
    keys = (
        load_key("2025-key", signing.public_pem(old), not_after=NOW - timedelta(days=1)),
        load_key("2026-key", signing.public_pem(new), not_before=NOW - timedelta(days=30)),
    )
    platform = KeyAuthority("platform", keys)
    assert verify(IMAGE, [simple(new)], platform, NOW).verified
    result = verify(IMAGE, [simple(old)], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.OUTSIDE_WINDOW)
    assert (
        "signed by key '2025-key', which is valid always .. 2026-12-06T12:00:00+00:00"
        in result.message
    )
    # A key not yet valid is refused the same way.
    early = KeyAuthority(
        "platform",
        (load_key("next", signing.public_pem(new), not_before=NOW + timedelta(hours=1)),),
    )
    assert verify(IMAGE, [simple(new)], early, NOW).reason is Reason.OUTSIDE_WINDOW


def test_no_signature_is_unsigned() -> None:
    result = verify(IMAGE, [], authority(("release", signing.new_key())), NOW)
    assert (result.verified, result.reason) == (False, Reason.UNSIGNED)
    assert result.message == f"no signature for {IMAGE}"


def test_one_good_signature_among_bad_ones_verifies_and_all_bad_names_the_closest() -> None:
    key = signing.new_key()
    platform = authority(("release", key))
    stranger = simple(signing.new_key())
    assert verify(IMAGE, [stranger, simple(key)], platform, NOW).verified
    result = verify(IMAGE, [stranger, simple(key, OTHER)], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message.startswith("none of 2 signatures verified; the closest: signed for")


def test_garbage_is_refused_with_a_reason_not_a_traceback() -> None:
    key = signing.new_key()
    platform = authority(("release", key))
    assert verify(IMAGE, [SimpleSigning(b"{}", "%%%")], platform, NOW).reason is Reason.MALFORMED
    payload = json.dumps({"critical": {"type": "something else"}}).encode()
    art = SimpleSigning(payload, signing.b64(signing.sign(key, payload)))
    assert verify(IMAGE, [art], platform, NOW).reason is Reason.UNSUPPORTED
    assert verify("sha256:nope", [simple(key)], platform, NOW).reason is Reason.MALFORMED


def test_unusable_keys_are_refused_at_load_with_what_is_wrong() -> None:
    with pytest.raises(InvalidKey, match="key 'k': not a PEM public key"):
        load_key("k", "not a key")
    weak = signing.public_pem(
        __import__(
            "cryptography.hazmat.primitives.asymmetric.rsa", fromlist=["rsa"]
        ).generate_private_key(public_exponent=65537, key_size=1024)
    )
    with pytest.raises(InvalidKey, match="RSA key of 1024 bits"):
        load_key("k", weak)
    pem = signing.public_pem(signing.new_key())
    with pytest.raises(InvalidKey, match="notAfter must carry a time zone"):
        load_key("k", pem, not_after=datetime(2026, 1, 1))
    with pytest.raises(InvalidKey, match="notAfter is before notBefore"):
        load_key("k", pem, not_before=NOW, not_after=NOW - timedelta(days=1))


# --- DSSE envelopes and in-toto statements ---------------------------------------------


def test_pae_is_the_dsse_spec_encoding() -> None:
    # The example of the DSSE v1 protocol text.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


@pytest.mark.parametrize("version", ["v1", "v0.1"])
@pytest.mark.parametrize("kind", ["p256", "ed25519", "rsa"])
def test_dsse_attestation_verifies_with_its_predicate_type(version: str, kind: str) -> None:
    key = signing.new_key(kind)
    env = signing.envelope(key, signing.statement(IMAGE, version=version))
    result = verify(
        IMAGE,
        [DsseArtifact(json.dumps(env).encode())],
        authority(("builder", key)),
        NOW,
        predicate_type=signing.SLSA_V1,
    )
    assert result.verified, result.message
    assert (result.signer, result.predicate_type) == ("builder", signing.SLSA_V1)
    assert (
        result.message == f"attestation {signing.SLSA_V1} for {IMAGE} verified: signed by builder"
    )


def test_statement_about_another_image_is_refused_even_though_the_signature_is_good() -> None:
    key = signing.new_key()
    env = signing.envelope(key, signing.statement(OTHER))
    result = verify(IMAGE, [DsseArtifact(json.dumps(env).encode())], authority(("b", key)), NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert (
        f"the statement is about registry.test/team/app@{OTHER}, not the image judged, {IMAGE}"
        == result.message
    )


def test_tampered_statement_and_wrong_keyid_are_refused() -> None:
    key = signing.new_key()
    platform = authority(("builder", key))
    env = signing.envelope(key, signing.statement(IMAGE))
    env["payload"] = signing.b64(signing.statement(IMAGE).replace(b"tests/build", b"evil/build!"))
    result = verify(IMAGE, [DsseArtifact(json.dumps(env).encode())], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.BAD_SIGNATURE)
    foreign = signing.envelope(signing.new_key(), signing.statement(IMAGE), keyid="someone-else")
    result = verify(IMAGE, [DsseArtifact(json.dumps(foreign).encode())], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_KEY)
    assert result.message == "signed by key 'someone-else', not one of the keys (builder)"


def test_attestation_of_another_predicate_or_payload_type_does_not_count() -> None:
    key = signing.new_key()
    platform = authority(("builder", key))
    env = signing.envelope(key, signing.statement(IMAGE, "https://spdx.dev/Document"))
    result = verify(
        IMAGE,
        [DsseArtifact(json.dumps(env).encode())],
        platform,
        NOW,
        predicate_type=signing.SLSA_V1,
    )
    assert (result.verified, result.reason) == (False, Reason.OTHER_PREDICATE)
    assert result.message == f"an attestation of https://spdx.dev/Document, not {signing.SLSA_V1}"
    env = signing.envelope(key, b"hello", "text/plain")
    result = verify(IMAGE, [DsseArtifact(json.dumps(env).encode())], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.UNSUPPORTED)
    missing = verify(IMAGE, [], platform, NOW, predicate_type=signing.SLSA_V1)
    assert missing.message == f"no attestation of {signing.SLSA_V1} for {IMAGE}"


# --- bounds --------------------------------------------------------------------------


def test_more_signatures_than_the_bound_are_not_evaluated_never_verified() -> None:
    from controller.trust.verify import MAX_ARTIFACTS

    key = signing.new_key()
    platform = authority(("release", key))
    strangers = [simple(signing.new_key()) for _ in range(MAX_ARTIFACTS)]
    # The good signature is past the bound: it is not examined, and the image is not verified.
    result = verify(IMAGE, [*strangers, simple(key)], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.TOO_MANY)
    assert result.message == (
        f"{MAX_ARTIFACTS + 1} signatures for {IMAGE}, more than {MAX_ARTIFACTS}; the first "
        f"{MAX_ARTIFACTS} did not verify and the rest were not examined"
    )
    # Within the bound it is found.
    assert verify(IMAGE, [*strangers[1:], simple(key)], platform, NOW).verified


def test_an_envelope_with_more_signatures_than_the_bound_is_not_examined() -> None:
    from controller.trust.dsse import MAX_SIGNATURES

    key = signing.new_key()
    env = signing.envelope(key, signing.statement(IMAGE))
    env["signatures"] = env["signatures"] * (MAX_SIGNATURES + 1)
    result = verify(IMAGE, [DsseArtifact(json.dumps(env).encode())], authority(("b", key)), NOW)
    assert (result.verified, result.reason) == (False, Reason.TOO_MANY)
    assert result.message == (
        f"the DSSE envelope carries {MAX_SIGNATURES + 1} signatures, more than {MAX_SIGNATURES}; "
        "not examined"
    )


def test_only_cosigns_signature_statement_counts_as_a_signature() -> None:
    key = signing.new_key()
    platform = authority(("ci", key))
    # A scan report the same key signed about the image is not an approval of it.
    report = signing.envelope(
        key, signing.statement(IMAGE, "https://cosign.sigstore.dev/attestation/vuln/v1")
    )
    result = verify(IMAGE, [DsseArtifact(json.dumps(report).encode())], platform, NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_PREDICATE)
    assert result.message == (
        "an attestation of https://cosign.sigstore.dev/attestation/vuln/v1, not a signature "
        "(https://sigstore.dev/cosign/sign/v1)"
    )
    signature = signing.envelope(
        key, signing.statement(IMAGE, "https://sigstore.dev/cosign/sign/v1")
    )
    result = verify(IMAGE, [DsseArtifact(json.dumps(signature).encode())], platform, NOW)
    assert result.verified, result.message
    assert result.message == f"signature for {IMAGE} verified: signed by ci"
