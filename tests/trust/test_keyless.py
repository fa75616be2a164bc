"""Keyless Sigstore bundles, verified by the real ``sigstore`` verifier, offline.

A local Sigstore (``support.sigstore_root``) stands in for Fulcio, the CT log
and Rekor and writes its own ``trusted_root.json``. Every test here runs under
a socket guard that fails any connection or name lookup, so a pass proves that
verification needs nothing but the bundle and the file.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from support import signing
from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore

from controller.trust.authorities import KeylessAuthority
from controller.trust.results import Reason
from controller.trust.roots import InvalidTrustRoot, load_trusted_root
from controller.trust.simplesigning import SimpleSigning
from controller.trust.verify import BundleArtifact, DsseArtifact, verify

IMAGE = signing.sha256(b'{"schemaVersion":2,"layers":["distroless base"]}')
OTHER = signing.sha256(b'{"schemaVersion":2,"layers":["a copy in a mirror"]}')
NOW = datetime.now(UTC)


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail any connect or DNS lookup made while the test runs (and record it)."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise NetworkUsed(f"network use during keyless verification: {args[:2]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == [], f"verification reached the network: {attempts}"


@pytest.fixture
def sigstore(tmp_path: Path) -> LocalSigstore:
    return LocalSigstore(tmp_path)


def distroless(sigstore: LocalSigstore, **identity: str) -> KeylessAuthority:
    wanted: dict[str, Any] = {"subject": WORKFLOW, **identity}
    return KeylessAuthority("distroless", load_trusted_root(sigstore.path), issuer=GITHUB, **wanted)


def judge(sigstore: LocalSigstore, bundle: bytes, digest: str = IMAGE, **kw: Any) -> Any:
    authority = kw.pop("authority", None) or distroless(sigstore)
    return verify(digest, [BundleArtifact(bundle)], authority, NOW, **kw)


def test_the_guard_refuses_a_connection(no_network: list[str]) -> None:
    with pytest.raises(NetworkUsed), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    with pytest.raises(NetworkUsed):
        socket.getaddrinfo("tuf-repo-cdn.sigstore.dev", 443)
    assert len(no_network) == 2
    no_network.clear()  # the attempts were this test's own


@pytest.mark.parametrize("version", ["v0.1", "v0.2", "v0.3"])
def test_keyless_message_signature_verifies_offline(sigstore: LocalSigstore, version: str) -> None:
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE), version=version))
    assert result.verified, result.message
    assert result.signer == WORKFLOW
    assert result.message == f"signature for {IMAGE} verified: signed by {WORKFLOW}"


def test_keyless_attestation_verifies_and_its_subject_is_checked(sigstore: LocalSigstore) -> None:
    bundle = sigstore.bundle(sigstore.sign_statement(signing.statement(IMAGE)))
    result = judge(sigstore, bundle, predicate_type=signing.SLSA_V1)
    assert result.verified, result.message
    assert (result.signer, result.predicate_type) == (WORKFLOW, signing.SLSA_V1)
    about_other = sigstore.bundle(sigstore.sign_statement(signing.statement(OTHER)))
    result = judge(sigstore, about_other)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message.startswith(f"the statement is about registry.test/team/app@{OTHER}")


def test_keyless_signature_for_another_image_is_refused(sigstore: LocalSigstore) -> None:
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(OTHER)))
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message == f"signed for {OTHER}, not for the image judged, {IMAGE}"


def test_identity_by_regular_expression(sigstore: LocalSigstore) -> None:
    bundle = sigstore.bundle(sigstore.sign_message(IMAGE))
    any_ref = distroless(
        sigstore,
        subject=None,
        subject_regexp=r"https://github\.com/corp/base/\.github/workflows/.*",
    )
    assert judge(sigstore, bundle, authority=any_ref).verified
    other_org = distroless(sigstore, subject=None, subject_regexp=r"https://github\.com/evil/.*")
    result = judge(sigstore, bundle, authority=other_org)
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)


def test_wrong_identity_or_issuer_is_refused_naming_who_signed(sigstore: LocalSigstore) -> None:
    fork = "https://github.com/fork/base/.github/workflows/release.yml@refs/heads/main"
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE, identity=fork)))
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message.startswith(
        f"signed by {fork} from {GITHUB}, not by {WORKFLOW} from {GITHUB}"
    )
    elsewhere = sigstore.sign_message(IMAGE, issuer="https://accounts.example.com")
    result = judge(sigstore, sigstore.bundle(elsewhere))
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message.startswith(
        f"signed by {WORKFLOW} from https://accounts.example.com, not by {WORKFLOW} from {GITHUB}"
    )
    assert "OIDCIssuer does not match" in result.message


def test_certificate_from_another_ca_is_untrusted(sigstore: LocalSigstore) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE, ca_key=rogue)))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert result.message.startswith(
        "the keyless signature does not verify: failed to build timestamp certificate chain"
    )


def test_sct_from_another_ct_log_is_untrusted(sigstore: LocalSigstore) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE, ct_key=rogue)))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "failed to verify SCT on signing certificate" in result.message


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        ("body", "inclusion proof contains invalid root hash"),
        ("root", "inclusion proof contains invalid root hash"),
        ("checkpoint", "checkpoint: invalid signature"),
    ],
)
def test_tampered_log_entry_is_untrusted(sigstore: LocalSigstore, tamper: str, says: str) -> None:
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE), tamper=tamper))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert says in result.message
    assert len(result.message) <= 250  # the library's structures are cut, its cause kept


def test_checkpoint_signed_by_another_log_is_untrusted(sigstore: LocalSigstore) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    result = judge(sigstore, sigstore.bundle(sigstore.sign_message(IMAGE), log_key=rogue))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "checkpoint: invalid signature" in result.message


def test_signature_logged_after_the_certificate_expired_is_untrusted(
    sigstore: LocalSigstore,
) -> None:
    late = sigstore.bundle(sigstore.sign_message(IMAGE), integrated=NOW + timedelta(hours=1))
    result = judge(sigstore, late)
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "cert is not valid at validation time" in result.message


def test_tampered_signature_is_untrusted(sigstore: LocalSigstore) -> None:
    signed = sigstore.sign_message(IMAGE)
    signed.content["messageSignature"]["signature"] = signing.b64(
        signed.key.sign(b"something else", ec.ECDSA(hashes.SHA256()))
    )
    result = judge(sigstore, sigstore.bundle(signed))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "Signature is invalid for input" in result.message


def test_key_based_artifacts_do_not_satisfy_a_keyless_authority(sigstore: LocalSigstore) -> None:
    key = signing.new_key()
    bundle = signing.key_bundle(signing.message_signature(key, IMAGE))
    result = judge(sigstore, bundle)
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message == f"signed with a key, not keyless by {WORKFLOW} from {GITHUB}"
    payload = signing.simple_signing_payload(IMAGE)
    art = SimpleSigning(payload, signing.b64(signing.sign(key, payload)))
    result = verify(IMAGE, [art], distroless(sigstore), NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    # A bare DSSE envelope carries no certificate: nothing keyless to verify.
    envelope = DsseArtifact(json.dumps(signing.envelope(key, signing.statement(IMAGE))).encode())
    result = verify(IMAGE, [envelope], distroless(sigstore), NOW)
    assert (result.verified, result.reason) == (False, Reason.UNSUPPORTED)


def test_unusable_trusted_roots_are_refused_with_what_is_wrong(
    sigstore: LocalSigstore, tmp_path: Path
) -> None:
    with pytest.raises(InvalidTrustRoot, match="cannot read the trusted root"):
        load_trusted_root(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidTrustRoot, match="not JSON"):
        load_trusted_root(bad)
    doc = sigstore.trusted_root()
    doc["ctlogs"] = []
    bad.write_text(json.dumps(doc))
    with pytest.raises(InvalidTrustRoot, match=r"no ctlogs \(needed for the certificates' SCTs\)"):
        load_trusted_root(bad)
    doc = sigstore.trusted_root()
    doc["mediaType"] = "application/vnd.dev.sigstore.trustedroot+json;version=9"
    bad.write_text(json.dumps(doc))
    with pytest.raises(InvalidTrustRoot, match="not a usable trusted root"):
        load_trusted_root(bad)


def test_a_trusted_root_larger_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    from controller.trust.roots import MAX_ROOT_BYTES

    big = tmp_path / "trusted_root.json"
    big.write_bytes(b" " * (MAX_ROOT_BYTES + 1))
    with pytest.raises(InvalidTrustRoot) as caught:
        load_trusted_root(big)
    assert str(caught.value) == (
        f"{big}: {MAX_ROOT_BYTES + 1} bytes, larger than a trusted root can be ({MAX_ROOT_BYTES})"
    )


# --- a real signature from the public-good instance ------------------------------------
# A bundle Sigstore's public-good instance issued in March 2024 for a GitHub Actions
# release (sigstore-python keeps it among its test assets), and the public-good
# trusted root as sigstore-python 4.5 ships it: real Fulcio chain, real SCT, real Rekor
# checkpoint and inclusion proof, verified here with no network at all.

DATA = Path(__file__).parent.parent / "data" / "trust"
RELEASE = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
RELEASED = "sha256:c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"


def public_good(subject: str = RELEASE) -> KeylessAuthority:
    root = load_trusted_root(DATA / "public-good-trusted_root.json")
    return KeylessAuthority("rfc8785 releases", root, issuer=GITHUB, subject=subject)


def test_a_real_public_good_bundle_verifies_offline() -> None:
    bundle = (DATA / "public-good-github.sigstore.json").read_bytes()
    result = verify(RELEASED, [BundleArtifact(bundle)], public_good(), NOW)
    assert result.verified, result.message
    assert result.message == f"signature for {RELEASED} verified: signed by {RELEASE}"


def test_the_real_bundle_is_refused_for_another_identity_image_or_root(
    sigstore: LocalSigstore,
) -> None:
    bundle = (DATA / "public-good-github.sigstore.json").read_bytes()
    other_tag = RELEASE.replace("v0.1.2", "v0.1.3")
    result = verify(RELEASED, [BundleArtifact(bundle)], public_good(other_tag), NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message.startswith(f"signed by {RELEASE} from {GITHUB}, not by {other_tag}")
    result = verify(IMAGE, [BundleArtifact(bundle)], public_good(), NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    ours = KeylessAuthority(
        "ours", load_trusted_root(sigstore.path), issuer=GITHUB, subject=RELEASE
    )
    result = verify(RELEASED, [BundleArtifact(bundle)], ours, NOW)
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)


def test_cosign_3_image_signature_statement_verifies_as_a_signature(
    sigstore: LocalSigstore,
) -> None:
    # cosign 3 signs an image as a bundle whose DSSE statement is of cosign's signature type.
    statement = signing.statement(IMAGE, "https://sigstore.dev/cosign/sign/v1")
    result = judge(sigstore, sigstore.bundle(sigstore.sign_statement(statement)))
    assert result.verified, result.message
    assert result.message == f"signature for {IMAGE} verified: signed by {WORKFLOW}"
    provenance = sigstore.bundle(sigstore.sign_statement(signing.statement(IMAGE)))
    result = judge(sigstore, provenance)
    assert (result.verified, result.reason) == (False, Reason.OTHER_PREDICATE)
