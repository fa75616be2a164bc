"""The keyless trust root: a ``trusted_root.json`` file read once, offline.

The file is the Sigstore trusted-root format
(``application/vnd.dev.sigstore.trustedroot+json;version=0.1``): the Fulcio
certificate authorities, the CT logs' keys (for the SCT in each signing
certificate) and the transparency logs' keys (for checkpoints and inclusion
promises), each with its validity period. It is parsed by ``sigstore``'s
``TrustedRoot.from_file``; no TUF repository is consulted, ever: updating the
file is an operator's act, out of band.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier

from controller.errors import BaseguardError

#: A trusted root is a handful of keys and certificates; anything far larger is not one.
MAX_ROOT_BYTES = 1 << 20


class InvalidTrustRoot(BaseguardError):
    """A ``trusted_root.json`` that cannot be used: unreadable, not the format, missing a part."""


@dataclass(frozen=True)
class LogKey:
    """A transparency or CT log's key, by its RFC 6962 id (SHA-256 of the key's SPKI)."""

    key_id: bytes
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
    start: datetime | None
    end: datetime | None

    def valid_at(self, when: datetime) -> bool:
        """Whether the log used this key at ``when`` (its ``validFor`` period)."""
        return (self.start is None or self.start <= when) and (self.end is None or when <= self.end)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's over ``data`` (ECDSA/RSA over SHA-256, Ed25519)."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            elif isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class TrustRoot:
    """A loaded trusted root, the ``sigstore`` verifier built on it, and its log keys.

    The log keys are read here (not through the library) for the one format
    ``sigstore`` does not verify, cosign's keyless simple signing.
    """

    path: str
    trusted_root: TrustedRoot = field(repr=False)
    verifier: Verifier = field(repr=False)
    tlog_keys: tuple[LogKey, ...] = field(default=(), repr=False)
    ct_keys: tuple[LogKey, ...] = field(default=(), repr=False)

    def log_key(self, keys: tuple[LogKey, ...], key_id: bytes) -> LogKey | None:
        """The key of ``keys`` with this id, or ``None``."""
        return next((k for k in keys if k.key_id == key_id), None)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _log_keys(doc: dict[str, Any], part: str) -> tuple[LogKey, ...]:
    keys = []
    for i, log in enumerate(doc.get(part) or []):
        try:
            public = log["publicKey"]
            der = base64.b64decode(public["rawBytes"])
            key = serialization.load_der_public_key(der)
            period = public.get("validFor") or {}
            start, end = _when(period.get("start")), _when(period.get("end"))
        except (KeyError, TypeError, ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
            raise InvalidTrustRoot(f"{part}[{i}].publicKey is not a usable key ({exc})") from None
        if not isinstance(
            key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
        ):
            raise InvalidTrustRoot(f"{part}[{i}].publicKey: unsupported key type")
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys.append(LogKey(hashlib.sha256(spki).digest(), key, start, end))
    return tuple(keys)


def load_trusted_root(path: str | Path) -> TrustRoot:
    """The trusted root at ``path``; :class:`InvalidTrustRoot` says what is wrong with it."""
    where = str(path)
    try:
        size = Path(where).stat().st_size
    except OSError as exc:
        raise InvalidTrustRoot(f"{where}: cannot read the trusted root ({exc.strerror})") from None
    if size > MAX_ROOT_BYTES:
        raise InvalidTrustRoot(
            f"{where}: {size} bytes, larger than a trusted root can be ({MAX_ROOT_BYTES})"
        )
    try:
        doc = json.loads(Path(where).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidTrustRoot(f"{where}: not JSON ({exc})") from None
    # Each part keyless verification needs, named here rather than failing at the first bundle.
    for part, needed_for in (
        ("certificateAuthorities", "the signing certificates' chain"),
        ("ctlogs", "the certificates' SCTs"),
        ("tlogs", "the transparency log's checkpoints and promises"),
    ):
        if not isinstance(doc, dict) or not doc.get(part):
            raise InvalidTrustRoot(f"{where}: no {part} (needed for {needed_for})")
    try:
        root = TrustedRoot.from_file(where)
        root.get_fulcio_certs()
        verifier = Verifier(trusted_root=root)
    except (SigstoreError, ValueError) as exc:
        raise InvalidTrustRoot(f"{where}: not a usable trusted root: {exc}") from None
    try:
        tlogs, ctlogs = _log_keys(doc, "tlogs"), _log_keys(doc, "ctlogs")
    except InvalidTrustRoot as exc:
        raise InvalidTrustRoot(f"{where}: {exc}") from None
    return TrustRoot(where, root, verifier, tlogs, ctlogs)
