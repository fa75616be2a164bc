"""cosign's keyless simple signing (certificate and log promise in the .sig layer's annotations).

Verified by our code against the local Sigstore's trusted root, under the same
socket guard as the bundle tests: the certificate's chain at the logged time,
its SCT, the log's signed entry timestamp, the identity, the signature, and that
the logged entry is this very signature.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support import signing
from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore, simple_signing_keyless

from controller.trust.authorities import KeylessAuthority
from controller.trust.results import Reason, TrustResult
from controller.trust.roots import load_trusted_root
from controller.trust.simplesigning import SimpleSigning
from controller.trust.verify import verify

IMAGE = signing.sha256(b'{"schemaVersion":2,"layers":["distroless base"]}')
OTHER = signing.sha256(b'{"schemaVersion":2,"layers":["a copy in a mirror"]}')
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network use during keyless verification: {args[:2]!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture
def local(tmp_path: Path) -> LocalSigstore:
    return LocalSigstore(tmp_path)


def judge(local: LocalSigstore, parts: dict[str, Any], digest: str = IMAGE) -> TrustResult:
    authority = KeylessAuthority(
        "distroless", load_trusted_root(local.path), issuer=GITHUB, subject=WORKFLOW
    )
    return verify(digest, [SimpleSigning(**parts)], authority, NOW)


def test_keyless_simple_signing_verifies_offline(local: LocalSigstore) -> None:
    result = judge(local, simple_signing_keyless(local, IMAGE))
    assert result.verified, result.message
    assert result.message == f"signature for {IMAGE} verified: signed by {WORKFLOW}"
    # The chain annotation is optional: the trusted root holds the CA.
    assert judge(local, simple_signing_keyless(local, IMAGE, chain=False)).verified


def test_for_another_image(local: LocalSigstore) -> None:
    result = judge(local, simple_signing_keyless(local, OTHER))
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    assert result.message.startswith(f"signed for {OTHER}")


def test_wrong_identity(local: LocalSigstore) -> None:
    fork = "https://github.com/fork/base/.github/workflows/release.yml@refs/heads/main"
    result = judge(local, simple_signing_keyless(local, IMAGE, identity=fork))
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message.startswith(f"signed by {fork} from {GITHUB}, not by {WORKFLOW}")


def test_promise_signed_by_another_log(local: LocalSigstore) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    result = judge(local, simple_signing_keyless(local, IMAGE, log_key=rogue))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert result.message == "the log's signed entry timestamp does not verify"


def test_a_promise_for_another_payload_is_not_replayed(local: LocalSigstore) -> None:
    parts = simple_signing_keyless(local, IMAGE, logged_payload=b"something else was logged")
    result = judge(local, parts)
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert result.message == (
        "the log's entry is for another signature, certificate or payload than this one"
    )


def test_certificate_from_another_ca_or_sct_from_another_log(local: LocalSigstore) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    result = judge(local, simple_signing_keyless(local, IMAGE, ca_key=rogue))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "does not chain to the trusted root" in result.message
    result = judge(local, simple_signing_keyless(local, IMAGE, ct_key=rogue))
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert result.message == "no SCT of the signing certificate is from a trusted CT log"


def test_logged_after_the_certificate_expired(local: LocalSigstore) -> None:
    late = simple_signing_keyless(local, IMAGE, integrated=NOW + timedelta(hours=1))
    result = judge(local, late)
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "does not chain to the trusted root at" in result.message


def test_tampered_payload_signature_or_missing_promise(local: LocalSigstore) -> None:
    parts = simple_signing_keyless(local, IMAGE)
    altered = parts["payload"].replace(b"tests", b"evil!")
    result = judge(local, {**parts, "payload": altered})
    assert (result.verified, result.reason) == (False, Reason.TAMPERED)
    result = judge(local, {**parts, "payload": altered, "layer_digest": None})
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert result.message == "the signature does not verify with the signing certificate's key"
    result = judge(local, {**parts, "rekor_bundle": None})
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
    assert "the signature's time cannot be established offline" in result.message
    promise = json.loads(parts["rekor_bundle"])
    promise["Payload"]["logIndex"] += 1
    result = judge(local, {**parts, "rekor_bundle": json.dumps(promise)})
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)


def test_a_key_based_simple_signature_is_not_keyless(local: LocalSigstore) -> None:
    key = signing.new_key()
    payload = signing.simple_signing_payload(IMAGE)
    result = judge(
        local, {"payload": payload, "signature": signing.b64(signing.sign(key, payload))}
    )
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message == f"signed with a key, not keyless by {WORKFLOW} from {GITHUB}"
    result = judge(local, {**simple_signing_keyless(local, IMAGE), "certificate": "not a cert"})
    assert (result.verified, result.reason) == (False, Reason.MALFORMED)


# --- a real keyless cosign signature from the public-good instance --------------------
# A `.sig` layer cosign 1.x pushed in October 2022 for an image in Artifact Registry
# (published in a public walkthrough; the payload is rebuilt byte for byte, its digest
# is the layer's), verified against the public-good trusted root: real Fulcio chain,
# real SCT, real Rekor signed entry timestamp.

DATA = Path(__file__).parent.parent / "data" / "trust"


def real() -> tuple[dict[str, Any], SimpleSigning, KeylessAuthority]:
    doc = json.loads((DATA / "public-good-cosign-keyless-sig.json").read_text())
    notes = doc["layer"]["annotations"]
    artifact = SimpleSigning(
        doc["payload"].encode(),
        notes["dev.cosignproject.cosign/signature"],
        doc["layer"]["digest"],
        notes["dev.sigstore.cosign/certificate"],
        notes["dev.sigstore.cosign/chain"],
        notes["dev.sigstore.cosign/bundle"],
    )
    root = load_trusted_root(DATA / "public-good-trusted_root.json")
    return (
        doc,
        artifact,
        KeylessAuthority("gcp", root, issuer=doc["issuer"], subject=doc["identity"]),
    )


def test_a_real_keyless_cosign_signature_verifies_offline() -> None:
    doc, artifact, authority = real()
    result = verify(doc["image"], [artifact], authority, NOW)
    assert result.verified, result.message
    assert result.signer == "cosign@cosign-test-365209.iam.gserviceaccount.com"
    # Without the chain annotation: the trusted root holds the intermediate.
    result = verify(
        doc["image"], [SimpleSigning(**{**artifact.__dict__, "chain": None})], authority, NOW
    )
    assert result.verified, result.message


def test_the_real_signature_is_refused_for_another_identity_image_or_payload() -> None:
    doc, artifact, authority = real()
    other = KeylessAuthority(
        "gcp", authority.root, issuer=doc["issuer"], subject="release@corp.iam.gserviceaccount.com"
    )
    result = verify(doc["image"], [artifact], other, NOW)
    assert (result.verified, result.reason) == (False, Reason.WRONG_IDENTITY)
    assert result.message.startswith(
        "signed by cosign@cosign-test-365209.iam.gserviceaccount.com from https://accounts.google.com"
    )
    result = verify(IMAGE, [artifact], authority, NOW)
    assert (result.verified, result.reason) == (False, Reason.OTHER_IMAGE)
    altered = doc["payload"].replace("value1", "value2").encode()
    result = verify(
        doc["image"],
        [SimpleSigning(**{**artifact.__dict__, "payload": altered, "layer_digest": None})],
        authority,
        NOW,
    )
    assert (result.verified, result.reason) == (False, Reason.UNTRUSTED)
