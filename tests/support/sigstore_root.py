"""A local Sigstore, for keyless tests without the internet.

Stands in for the public-good instance, built from the formats' specs:

* a test CA in Fulcio's place, issuing short-lived code-signing certificates
  with the OIDC issuer extensions (``1.3.6.1.4.1.57264.1.1`` raw, ``.1.8`` as a
  DER UTF8String) and the identity as a SAN, each carrying an embedded SCT;
* a CT log key signing that SCT (RFC 6962 §3.2, over the precertificate's TBS);
* a transparency-log key that signs a checkpoint (a signed note) over a Merkle
  tree holding the entry (RFC 6962 §2.1 hashes and inclusion path) and the
  entry's inclusion promise (the SET: the canonical JSON of body, integrated
  time, log id and index);
* ``trusted_root.json`` naming the three, in the Sigstore trusted-root format.

The bundles it writes are verified, in the tests, by ``sigstore``'s own verifier.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.signing import BUNDLE_MEDIA_TYPES, IN_TOTO, b64, pae

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
GITHUB = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/corp/base/.github/workflows/release.yml@refs/heads/main"


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962's log/key id: SHA-256 of the SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(key)).digest()


def _der_octets(data: bytes) -> bytes:
    n = len(data)
    length = (
        bytes([n])
        if n < 128
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return b"\x04" + length + data


def _utf8string(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128
    return b"\x0c" + bytes([len(data)]) + data


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), from the leaf's sibling upwards."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


@dataclass
class Signed:
    """A keyless signature's parts, before they are put in a bundle (tests alter them)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    content: dict[str, Any]
    body: dict[str, Any]


class LocalSigstore:
    """A test CA, CT log and transparency log, and the ``trusted_root.json`` naming them."""

    def __init__(self, directory: Path, *, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        self.origin = "rekor.test - 1193050959916656506"
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "baseguard tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, "test fulcio"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=30))
            .not_valid_after(self.now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.path = directory / "trusted_root.json"
        self.path.write_text(json.dumps(self.trusted_root(), indent=2))
        # Other entries already in the log, so the inclusion proof has a real path.
        self.earlier = [_leaf_hash(b"earlier entry %d" % i) for i in range(6)]

    # --- trusted_root.json ------------------------------------------------------------

    def _log_instance(self, key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(_spki(key.public_key())),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {
                    "start": (self.now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
                },
            },
            "logId": {"keyId": b64(_key_id(key.public_key()))},
        }

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root in the Sigstore format (``…trustedroot+json;version=0.1``)."""
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [self._log_instance(self.log_key, "https://rekor.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "baseguard tests", "commonName": "test fulcio"},
                    "uri": "https://fulcio.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {
                        "start": (self.now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    },
                }
            ],
            "ctlogs": [self._log_instance(self.ct_key, "https://ctfe.test")],
            "timestampAuthorities": [],
        }

    # --- Fulcio and the CT log --------------------------------------------------------

    def certificate(
        self,
        identity: str = WORKFLOW,
        issuer: str = GITHUB,
        *,
        issued: datetime | None = None,
        ca_key: ec.EllipticCurvePrivateKey | None = None,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A 10-minute signing certificate for ``identity`` with an SCT embedded."""
        issued = issued or self.now - timedelta(minutes=2)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )

        def build(sct_list: bytes) -> x509.Certificate:
            return (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(issued)
                .not_valid_after(issued + timedelta(minutes=10))
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=False,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                    critical=False,
                )
                .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                .add_extension(
                    x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), critical=False
                )
                .add_extension(
                    x509.UnrecognizedExtension(OIDC_ISSUER_V2, _utf8string(issuer)), critical=False
                )
                .add_extension(
                    x509.UnrecognizedExtension(SCT_LIST, _der_octets(sct_list)), critical=False
                )
                .sign(ca_key or self.ca_key, hashes.SHA256())
            )

        placeholder = build(self._sct_list(b"\x00" * 8, issued))
        tbs = placeholder.tbs_precertificate_bytes
        cert = build(self._sct_list(self._sct_signature(tbs, issued, ct_key), issued))
        assert cert.tbs_precertificate_bytes == tbs
        return cert, key

    def _sct_signed_data(self, tbs: bytes, when: datetime) -> bytes:
        # RFC 6962 §3.2: version v1(0), signature_type certificate_timestamp(0), timestamp (ms),
        # entry_type precert_entry(1), issuer_key_hash[32], TBSCertificate<1..2^24-1>, extensions<0..2^16-1>.
        issuer_key_hash = _key_id(self.ca_key.public_key())
        ms = int(when.timestamp() * 1000)
        return (
            struct.pack("!BBQH", 0, 0, ms, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)
        )

    def _sct_signature(
        self, tbs: bytes, when: datetime, ct_key: ec.EllipticCurvePrivateKey | None
    ) -> bytes:
        return (ct_key or self.ct_key).sign(
            self._sct_signed_data(tbs, when), ec.ECDSA(hashes.SHA256())
        )

    def _sct_list(self, signature: bytes, when: datetime) -> bytes:
        ms = int(when.timestamp() * 1000)
        sct = (
            struct.pack("!B", 0)
            + _key_id(self.ct_key.public_key())
            + struct.pack("!QH", ms, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        one = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(one)) + one

    # --- signing and the transparency log ---------------------------------------------

    def sign_message(self, digest: str, **cert: Any) -> Signed:
        """A keyless message signature over the manifest whose digest is ``digest`` (hashedrekord)."""
        from cryptography.hazmat.primitives.asymmetric import utils

        certificate, key = self.certificate(**cert)
        raw = bytes.fromhex(digest.partition(":")[2])
        sig = key.sign(raw, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": raw.hex()}},
                "signature": {"content": b64(sig), "publicKey": {"content": b64(pem)}},
            },
        }
        content = {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(raw)},
                "signature": b64(sig),
            }
        }
        return Signed(certificate, key, content, body)

    def sign_statement(self, payload: bytes, **cert: Any) -> Signed:
        """A keyless DSSE envelope over an in-toto statement (a dsse 0.0.1 log entry)."""
        certificate, key = self.certificate(**cert)
        sig = key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payloadType": IN_TOTO,
            "payload": b64(payload),
            "signatures": [{"sig": b64(sig)}],
        }
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [{"signature": b64(sig), "verifier": b64(pem)}],
            },
        }
        return Signed(certificate, key, {"dsseEnvelope": envelope}, body)

    def bundle(
        self,
        signed: Signed,
        *,
        version: str = "v0.3",
        integrated: datetime | None = None,
        log_key: ec.EllipticCurvePrivateKey | None = None,
        tamper: str = "",
    ) -> bytes:
        """The bundle: certificate, the log entry with its inclusion proof, checkpoint and promise.

        ``tamper`` alters one part after signing: ``body`` (the logged entry),
        ``root`` (the proof's root hash), ``checkpoint`` (the signed note's text).
        """
        integrated = integrated or self.now - timedelta(minutes=1)
        body = json.dumps(signed.body, separators=(",", ":")).encode()
        leaves = [*self.earlier, _leaf_hash(body)]
        index = len(leaves) - 1
        root = merkle_root(leaves)
        path = inclusion_path(index, leaves)
        signer = log_key or self.log_key
        log_id = _key_id(self.log_key.public_key())
        note = f"{self.origin}\n{len(leaves)}\n{b64(root)}\n"
        note_sig = signer.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        if tamper == "checkpoint":
            note = note.replace(str(len(leaves)), str(len(leaves) + 1))
        checkpoint = f"{note}\n\u2014 rekor.test {b64(log_id[:4] + note_sig)}\n"
        set_payload = json.dumps(
            {
                "body": b64(body),
                "integratedTime": int(integrated.timestamp()),
                "logID": log_id.hex(),
                "logIndex": index,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        promise = signer.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        if tamper == "body":
            body = body.replace(b'"sha256"', b'"sha256" ', 1)
        if tamper == "root":
            root = hashlib.sha256(root).digest()
        entry = {
            "logIndex": str(index),
            "logId": {"keyId": b64(log_id)},
            "kindVersion": {"kind": signed.body["kind"], "version": "0.0.1"},
            "integratedTime": str(int(integrated.timestamp())),
            "inclusionPromise": {"signedEntryTimestamp": b64(promise)},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [b64(h) for h in path],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": b64(body),
        }
        der = b64(signed.certificate.public_bytes(serialization.Encoding.DER))
        material: dict[str, Any] = {"tlogEntries": [entry]}
        if version == "v0.3":
            material["certificate"] = {"rawBytes": der}
        else:
            material["x509CertificateChain"] = {"certificates": [{"rawBytes": der}]}
        return json.dumps(
            {
                "mediaType": BUNDLE_MEDIA_TYPES[version],
                "verificationMaterial": material,
                **signed.content,
            }
        ).encode()



def simple_signing_keyless(
    local: LocalSigstore,
    digest: str,
    *,
    log_key: ec.EllipticCurvePrivateKey | None = None,
    logged_payload: bytes | None = None,
    integrated: datetime | None = None,
    chain: bool = True,
    **cert: Any,
) -> dict[str, Any]:
    """cosign's keyless ``.sig`` layer, as its parts: payload, signature and the three annotations.

    ``logged_payload`` logs another payload's hash than the one signed (a replayed
    promise); ``log_key`` signs the promise with another key.
    """
    from support.signing import sha256, simple_signing_payload

    certificate, key = local.certificate(**cert)
    payload = simple_signing_payload(digest)
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {
                "hash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(logged_payload or payload).hexdigest(),
                }
            },
            "signature": {"content": b64(sig), "publicKey": {"content": b64(pem)}},
        },
    }
    integrated = integrated or local.now - timedelta(minutes=1)
    entry = {
        "body": b64(json.dumps(body, separators=(",", ":")).encode()),
        "integratedTime": int(integrated.timestamp()),
        "logID": _key_id(local.log_key.public_key()).hex(),
        "logIndex": 4242,
    }
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    promise = (log_key or local.log_key).sign(canonical, ec.ECDSA(hashes.SHA256()))
    return {
        "payload": payload,
        "signature": b64(sig),
        "layer_digest": sha256(payload),
        "certificate": pem.decode(),
        "chain": local.ca_cert.public_bytes(serialization.Encoding.PEM).decode() if chain else None,
        "rekor_bundle": json.dumps({"SignedEntryTimestamp": b64(promise), "Payload": entry}),
    }
