"""Who may sign: an authority is either a set of public keys or a keyless identity.

PURE (the trusted root is read once by the caller, see :mod:`controller.trust.roots`).
The keyless identity is checked on the signing certificate: the OIDC issuer
extension (``1.3.6.1.4.1.57264.1.1``, as Fulcio writes it) and a subject
alternative name (URI, e-mail or Sigstore's other-name), equal to ``subject``
or fully matching ``subject_regexp``. The check itself is in
:mod:`controller.trust.keyless`; nothing here loads ``sigstore``, so key-based
verification never pays for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.x509 import (
    Certificate,
    ExtensionNotFound,
    ObjectIdentifier,
    OtherName,
    RFC822Name,
    SubjectAlternativeName,
    UniformResourceIdentifier,
)

from controller.errors import BaseguardError
from controller.trust.keys import TrustedKey

if TYPE_CHECKING:  # the root (and with it ``sigstore``) is loaded only for keyless authorities
    from controller.trust.roots import TrustRoot

#: Sigstore's other-name SAN type (a username identity).
_OTHERNAME_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
#: Fulcio's OIDC issuer extension (the raw UTF-8 form).
OIDC_ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


class InvalidAuthority(BaseguardError):
    """An authority that cannot be used: a keyless one without a subject, or a bad pattern."""


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
            raise InvalidAuthority(
                f"authority {self.name!r}: a keyless authority needs exactly one of subject, subjectRegExp"
            )
        if self.subject_regexp is not None:
            try:
                re.compile(self.subject_regexp)
            except re.error as exc:
                raise InvalidAuthority(
                    f"authority {self.name!r}: subjectRegExp {self.subject_regexp!r} is not a "
                    f"regular expression ({exc})"
                ) from None

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
        ext = cert.extensions.get_extension_for_oid(OIDC_ISSUER_OID).value
    except ExtensionNotFound:
        return "?"
    value = getattr(ext, "value", b"")
    return value.decode(errors="replace") if isinstance(value, bytes) else "?"
