"""Keyless Sigstore bundles, verified by ``sigstore``'s verifier on the authority's trusted root.

``sigstore.verify.Verifier`` does, for a bundle of any version: a verified time
(the log's integrated time bound by its inclusion promise, or a trusted
timestamp), the signing certificate's chain to a trusted CA at that time, its
SCT, the identity policy, the inclusion proof against a signed checkpoint, the
promise, the certificate's validity at the logged time, the signature, and the
log entry's consistency with the bundle. Offline: it reads nothing but the
bundle and the root. What it returns unchecked is ours to check: the message
digest, or the statement's subject, must be the image judged.

The only module that imports ``sigstore`` for verification (with
:mod:`controller.trust.roots`), imported when a keyless authority is judged.
"""

from __future__ import annotations

import re

from cryptography.x509 import Certificate
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore.verify.policy import Identity, OIDCIssuer, VerificationPolicy
from sigstore_models.common.v1 import HashAlgorithm

from controller.trust.authorities import (
    KeylessAuthority,
    certificate_identities,
    certificate_issuer,
)
from controller.trust.bundles import (
    bundle_json,
    is_keyless,
    message_digest,
    other_image,
    sha256_bytes,
)
from controller.trust.encoding import field
from controller.trust.results import Reason, Refused
from controller.trust.statements import Statement, check_subject, parse_statement


def identity_policy(authority: KeylessAuthority) -> VerificationPolicy:
    """The identity policy for the signing certificate: ``sigstore``'s ``Identity``, or our pattern."""
    if authority.subject is not None:
        return Identity(identity=authority.subject, issuer=authority.issuer)
    return IdentityPattern(authority.issuer, str(authority.subject_regexp))


class IdentityPattern:
    """A ``sigstore`` verification policy: the issuer exactly, an identity by full regexp match."""

    def __init__(self, issuer: str, pattern: str) -> None:
        self._issuer = OIDCIssuer(issuer)
        self._pattern = re.compile(pattern)

    def verify(self, cert: Certificate) -> None:
        """Raise ``VerificationError`` unless the certificate is the issuer's and an identity matches."""
        self._issuer.verify(cert)
        identities = certificate_identities(cert)
        if not any(self._pattern.fullmatch(i) for i in identities):
            raise VerificationError(
                f"Certificate's SANs do not match /{self._pattern.pattern}/; actual SANs: {identities}"
            )


def verify_keyless_bundle(
    raw: bytes, digest: str, authority: KeylessAuthority
) -> tuple[str, Statement | None]:
    """The certificate identity that signed the bundle for ``digest``, through ``sigstore``'s verifier."""
    doc = bundle_json(raw)
    if not is_keyless(doc):
        raise Refused(
            Reason.WRONG_IDENTITY, "signed with a key, not keyless by " + authority.wanted()
        )
    try:
        bundle = Bundle.from_json(raw)
    except (SigstoreError, ValueError) as exc:
        raise Refused(Reason.MALFORMED, f"not a valid Sigstore bundle: {exc}") from None
    policy = identity_policy(authority)
    verifier = authority.root.verifier
    identity = ", ".join(certificate_identities(bundle.signing_certificate)) or "?"
    statement: Statement | None = None
    try:
        if isinstance(doc.get("dsseEnvelope"), dict):
            payload_type, payload = verifier.verify_dsse(bundle, policy)
        else:
            signature = field(doc, "messageSignature", "bundle")
            judged = sha256_bytes(digest)
            signed = message_digest(signature) or judged
            verifier.verify_artifact(
                Hashed(algorithm=HashAlgorithm.SHA2_256, digest=signed), bundle, policy
            )
            if signed != judged:
                raise other_image(signed, digest)
            return identity, None
    except (SigstoreError, ValueError, TypeError) as exc:
        # ValueError/TypeError: cryptography refusing a key or structure the library did
        # not screen (a certificate key that is not ECDSA); still a refusal, not a crash.
        raise _explain(exc, bundle, authority) from None
    statement = parse_statement(payload_type, payload)
    check_subject(statement, digest)
    return identity, statement


def _explain(exc: Exception, bundle: Bundle, authority: KeylessAuthority) -> Refused:
    """``wrong-identity`` when the certificate is not the authority's, else ``untrusted`` with the cause."""
    try:
        identity_policy(authority).verify(bundle.signing_certificate)
    except SigstoreError as mismatch:
        cert = bundle.signing_certificate
        found = ", ".join(certificate_identities(cert)) or "no identity"
        return Refused(
            Reason.WRONG_IDENTITY,
            f"signed by {found} from {certificate_issuer(cert)}, not by {authority.wanted()}"
            f" ({short(mismatch)})",
        )
    return Refused(Reason.UNTRUSTED, f"the keyless signature does not verify: {short(exc)}")


#: The library's messages can hold whole structures (an inclusion proof's bytes); keep the cause.
_MESSAGE_CHARS = 200


def short(exc: Exception) -> str:
    """An error's text on one line, cut to a length a message can hold."""
    text = " ".join(str(exc).split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
