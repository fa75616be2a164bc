"""Who may sign: an authority is either a set of public keys or a keyless identity.

PURE (the trusted root is read once by the caller, see :mod:`controller.trust.roots`).
The keyless identity is checked on the signing certificate: the OIDC issuer
extension (``1.3.6.1.4.1.57264.1.1``, as Fulcio writes it) and a subject
alternative name (URI, e-mail or Sigstore's other-name), equal to ``subject``
or fully matching ``subject_regexp``. The exact form is ``sigstore``'s
``Identity`` policy; the regular-expression form is ours, on its extension reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.x509 import (
    Certificate,
    ExtensionNotFound,
    ObjectIdentifier,
    OtherName,
    RFC822Name,
    SubjectAlternativeName,
    UniformResourceIdentifier,
)
from sigstore.errors import VerificationError
from sigstore.verify.policy import Identity, OIDCIssuer, VerificationPolicy

from controller.trust.keys import TrustedKey
from controller.trust.roots import TrustRoot

#: Sigstore's other-name SAN type (a username identity).
_OTHERNAME_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass(frozen=True)
class KeyAuthority:
    """An authority that signs with one of ``keys`` (cosign ``--key``)."""

    name: str
    keys: tuple[TrustedKey, ...]


@dataclass(frozen=True)
class KeylessAuthority:
    """An authority that signs keyless: a certificate for ``subject`` from ``issuer``, under ``root``."""

    name: str
    root: TrustRoot
    issuer: str
    subject: str | None = None
    subject_regexp: str | None = None

    def __post_init__(self) -> None:
        if (self.subject is None) == (self.subject_regexp is None):
            raise ValueError("a keyless authority needs exactly one of subject, subject_regexp")

    def policy(self) -> VerificationPolicy:
        """The identity policy the ``sigstore`` verifier applies to the signing certificate."""
        if self.subject is not None:
            return Identity(identity=self.subject, issuer=self.issuer)
        return IdentityPattern(self.issuer, str(self.subject_regexp))

    def wanted(self) -> str:
        """The identity required, for messages."""
        who = self.subject if self.subject is not None else f"/{self.subject_regexp}/"
        return f"{who} from {self.issuer}"


def certificate_identities(cert: Certificate) -> list[str]:
    """The certificate's identities (URI, e-mail and Sigstore other-name SANs), in SAN order."""
    try:
        san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    except ExtensionNotFound:
        return []
    found: list[str] = []
    found.extend(san.get_values_for_type(UniformResourceIdentifier))
    found.extend(san.get_values_for_type(RFC822Name))
    found.extend(
        on.value.decode(errors="replace")
        for on in san.get_values_for_type(OtherName)
        if on.type_id == _OTHERNAME_OID
    )
    return found


def certificate_issuer(cert: Certificate) -> str:
    """The OIDC issuer the certificate records (Fulcio's raw ``1.3.6.1.4.1.57264.1.1``), or ``?``."""
    try:
        ext = cert.extensions.get_extension_for_oid(OIDCIssuer.oid).value
    except ExtensionNotFound:
        return "?"
    value = getattr(ext, "value", b"")
    return value.decode(errors="replace") if isinstance(value, bytes) else "?"


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
