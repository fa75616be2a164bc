"""cosign's keyless simple signing: a certificate and the log's promise beside the ``.sig`` layer.

OURS, because no library verifies it offline: cosign (before its bundle format)
puts the Fulcio certificate in ``dev.sigstore.cosign/certificate``, its chain in
``dev.sigstore.cosign/chain``, and the transparency log's signed entry
timestamp (SET) with the logged entry in ``dev.sigstore.cosign/bundle``. That
carries an inclusion *promise* but no inclusion proof or checkpoint, which
``sigstore``'s verifier requires of every log entry, so it cannot take it.

The checks, each with ``cryptography`` primitives and the trusted root's keys:

1. the SET is signed by a transparency log of the trusted root, over the
   canonical JSON of the entry (body, integrated time, log id, index), with a key
   valid at the integrated time; that time is the signature's time;
2. the certificate chains to a trusted CA at that time (``cryptography``'s path
   builder, as ``sigstore`` uses it), with the code-signing usage;
3. an embedded SCT is signed by a trusted CT log (RFC 6962 §3.2, over the
   precertificate's TBS and the issuer's key hash);
4. the identity policy (``sigstore``'s, see :mod:`controller.trust.keyless`);
5. the signature over the payload, by the certificate's key;
6. the logged entry is this signature: a ``hashedrekord`` of the payload's
   SHA-256, this signature and this certificate (else a promise for another
   signature could be replayed);
7. the payload is for the image judged.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from sigstore.errors import Error as SigstoreError

from controller.trust.authorities import (
    KeylessAuthority,
    certificate_identities,
    certificate_issuer,
)
from controller.trust.encoding import b64decode, field, json_object
from controller.trust.keyless import identity_policy, short
from controller.trust.results import Reason, Refused
from controller.trust.roots import TrustRoot
from controller.trust.simplesigning import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    Payload,
    SimpleSigning,
    check_layer_digest,
    payload_for,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def verify_cosign_keyless(
    artifact: SimpleSigning, digest: str, authority: KeylessAuthority
) -> tuple[str, Payload]:
    """The certificate identity that signed ``artifact`` for ``digest``; :class:`Refused` otherwise."""
    if not artifact.certificate:
        raise Refused(
            Reason.WRONG_IDENTITY, "signed with a key, not keyless by " + authority.wanted()
        )
    check_layer_digest(artifact)
    cert = _certificate(artifact.certificate)
    try:
        _verify(artifact, cert, authority)
    except Refused as refused:
        if refused.reason is Reason.UNTRUSTED:
            _raise_if_other_identity(cert, authority)
        raise
    return ", ".join(certificate_identities(cert)) or "?", payload_for(artifact.payload, digest)


def _verify(artifact: SimpleSigning, cert: x509.Certificate, authority: KeylessAuthority) -> None:
    root = authority.root
    if not artifact.rekor_bundle:
        raise Refused(
            Reason.UNTRUSTED,
            f"no {BUNDLE_ANNOTATION} annotation: the signature's time cannot be established offline",
        )
    entry = json_object(artifact.rekor_bundle.encode(), f"the {BUNDLE_ANNOTATION} annotation")
    integrated = _verify_promise(entry, root)
    chain = _verify_chain(cert, artifact.chain, root, integrated)
    _verify_sct(cert, chain, root)
    try:
        identity_policy(authority).verify(cert)
    except SigstoreError:
        _raise_if_other_identity(cert, authority)
    signature = b64decode(artifact.signature, f"the {SIGNATURE_ANNOTATION} annotation")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused(Reason.UNSUPPORTED, "the signing certificate's key is not ECDSA")
    try:
        key.verify(signature, artifact.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(
            Reason.UNTRUSTED, "the signature does not verify with the signing certificate's key"
        ) from None
    _check_logged_entry(entry, signature, cert, artifact.payload)


def _certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise Refused(
            Reason.MALFORMED, f"the {CERTIFICATE_ANNOTATION} annotation is not a PEM certificate"
        ) from None


def _payload(entry: dict[str, Any]) -> tuple[str, int, int, str]:
    inner = field(entry, "Payload", BUNDLE_ANNOTATION)
    body, time, index, log_id = (
        inner.get("body"),
        inner.get("integratedTime"),
        inner.get("logIndex"),
        inner.get("logID"),
    )
    if not (
        isinstance(body, str)
        and isinstance(time, int)
        and isinstance(index, int)
        and isinstance(log_id, str)
    ):
        raise Refused(
            Reason.MALFORMED,
            f"{BUNDLE_ANNOTATION}.Payload needs body, integratedTime, logIndex and logID",
        )
    return body, time, index, log_id


def _verify_promise(entry: dict[str, Any], root: TrustRoot) -> datetime:
    """Step 1: the SET by a trusted log, valid then; returns the integrated time."""
    body, time, index, log_id = _payload(entry)
    try:
        key = root.log_key(root.tlog_keys, bytes.fromhex(log_id))
        integrated = datetime.fromtimestamp(time, UTC)
    except (ValueError, OverflowError, OSError):
        raise Refused(
            Reason.MALFORMED, f"{BUNDLE_ANNOTATION}.Payload has a bad logID or time"
        ) from None
    if key is None:
        raise Refused(
            Reason.UNTRUSTED,
            f"logged in {log_id[:16]}…, not a transparency log of the trusted root",
        )
    if not key.valid_at(integrated):
        raise Refused(Reason.UNTRUSTED, f"the log's key was not in use at {integrated.isoformat()}")
    canonical = json.dumps(
        {"body": body, "integratedTime": time, "logID": log_id, "logIndex": index},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    promise = b64decode(
        entry.get("SignedEntryTimestamp"), f"{BUNDLE_ANNOTATION}.SignedEntryTimestamp"
    )
    if not key.verifies(promise, canonical):
        raise Refused(Reason.UNTRUSTED, "the log's signed entry timestamp does not verify")
    return integrated


def _verify_chain(
    cert: x509.Certificate, chain_pem: str | None, root: TrustRoot, when: datetime
) -> list[x509.Certificate]:
    """Step 2: the chain to a trusted CA at the logged time, and the code-signing usage."""
    try:
        given = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    except ValueError:
        raise Refused(
            Reason.MALFORMED, "the dev.sigstore.cosign/chain annotation is not PEM"
        ) from None
    # Fulcio certificates carry code signing, not the client-auth EKU the client verifier
    # expects; the usage is checked below instead (what sigstore's verifier does too).
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(root.trusted_root.get_fulcio_certs()))
        .time(when)
        .extension_policies(ca_policy=ca, ee_policy=ee)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(cert, [c for c in given if c != cert]).chain
    except (VerificationError, x509.UnsupportedGeneralNameType) as exc:
        raise Refused(
            Reason.UNTRUSTED,
            f"the signing certificate does not chain to the trusted root at {when.isoformat()}: {short(exc)}",
        ) from None
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise Refused(Reason.UNTRUSTED, "the signing certificate has no key usages") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise Refused(Reason.UNTRUSTED, "the signing certificate is not for code signing")
    return list(verified)


def _verify_sct(cert: x509.Certificate, chain: list[x509.Certificate], root: TrustRoot) -> None:
    """Step 3: an embedded SCT from a trusted CT log (RFC 6962 §3.2, precertificate entry)."""
    try:
        scts = cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        raise Refused(Reason.UNTRUSTED, "the signing certificate carries no SCT") from None
    if len(chain) < 2:
        raise Refused(Reason.UNTRUSTED, "the signing certificate has no issuer to check its SCT")
    issuer_spki = (
        chain[1]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    issuer_key_hash = hashlib.sha256(issuer_spki).digest()
    tbs = cert.tbs_precertificate_bytes
    for sct in scts:
        key = root.log_key(root.ct_keys, sct.log_id)
        if (
            key is None
            or sct.entry_type != LogEntryType.PRE_CERTIFICATE
            or not isinstance(sct.signature_hash_algorithm, hashes.SHA256)
        ):
            continue
        when = sct.timestamp.replace(tzinfo=UTC)
        ms = (when - _EPOCH) // timedelta(milliseconds=1)
        ext = sct.extension_bytes
        signed = (
            struct.pack("!BBQH", sct.version.value, 0, ms, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", len(ext))
            + ext
        )
        if key.verifies(sct.signature, signed):
            return
    raise Refused(Reason.UNTRUSTED, "no SCT of the signing certificate is from a trusted CT log")


def _check_logged_entry(
    entry: dict[str, Any], signature: bytes, cert: x509.Certificate, payload: bytes
) -> None:
    """Step 6: the entry the log promised is a hashedrekord of this payload, signature, certificate."""
    body = json_object(
        b64decode(_payload(entry)[0], f"{BUNDLE_ANNOTATION}.Payload.body"), "the logged entry"
    )
    if body.get("kind") != "hashedrekord":
        raise Refused(
            Reason.UNSUPPORTED, f"the logged entry is a {body.get('kind')!r}, not a hashedrekord"
        )
    spec = field(body, "spec", "the logged entry")
    logged_sig = b64decode(field(spec, "signature", "spec").get("content"), "the logged signature")
    public = field(field(spec, "signature", "spec"), "publicKey", "spec.signature")
    logged_pem = b64decode(public.get("content"), "the logged certificate")
    data = field(field(spec, "data", "spec"), "hash", "spec.data")
    try:
        logged_cert = x509.load_pem_x509_certificate(logged_pem)
    except ValueError:
        raise Refused(Reason.UNTRUSTED, "the logged entry holds no certificate") from None
    if (
        logged_sig != signature
        or logged_cert != cert
        or data.get("algorithm") != "sha256"
        or data.get("value") != hashlib.sha256(payload).hexdigest()
    ):
        raise Refused(
            Reason.UNTRUSTED,
            "the log's entry is for another signature, certificate or payload than this one",
        )


def _raise_if_other_identity(cert: x509.Certificate, authority: KeylessAuthority) -> None:
    try:
        identity_policy(authority).verify(cert)
    except SigstoreError as mismatch:
        found = ", ".join(certificate_identities(cert)) or "no identity"
        raise Refused(
            Reason.WRONG_IDENTITY,
            f"signed by {found} from {certificate_issuer(cert)}, not by {authority.wanted()}"
            f" ({short(mismatch)})",
        ) from None
