"""Public keys an authority trusts, each with an optional validity window.

PURE. A key-based signature carries no trusted time (no log timestamp is
checked for it), so a key's ``notBefore``/``notAfter`` window is judged at the
moment of verification: a key rotated out stops verifying at its ``notAfter``,
a new one starts at its ``notBefore``, and both can be listed at once so a
rotation needs no flag day.

Algorithms are the ones cosign signs with: ECDSA P-256 (SHA-256), P-384
(SHA-384, or SHA-256 as older cosign signs with every key), P-521, Ed25519
(over the message itself), RSA >= 2048 bits with PKCS#1 v1.5 or PSS over
SHA-256. The primitives are ``cryptography``'s; choosing among them is ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from controller.errors import BaseguardError
from controller.trust.results import Reason, Refused

#: The smallest RSA modulus accepted (cosign and the Sigstore specs refuse smaller).
MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_EC_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
    "secp521r1": (hashes.SHA512, hashes.SHA256),
}


class InvalidKey(BaseguardError):
    """A public key that cannot be used: not PEM, an unsupported algorithm, a bad window."""


@dataclass(frozen=True)
class TrustedKey:
    """One public key of an authority; ``name`` is how results and messages name it."""

    name: str
    key: PublicKey
    not_before: datetime | None = None
    not_after: datetime | None = None

    @property
    def key_id(self) -> str:
        """The hex SHA-256 of the key's SubjectPublicKeyInfo (what DSSE ``keyid``s and hints often are)."""
        der = self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def in_window(self, at: datetime) -> bool:
        """Whether ``at`` lies inside the key's window (both ends inclusive)."""
        if self.not_before is not None and at < self.not_before:
            return False
        return self.not_after is None or at <= self.not_after

    def window_text(self) -> str:
        """The window for a message: ``valid 2026-01-01T00:00:00+00:00 .. 2026-06-30T…``."""
        start = self.not_before.isoformat() if self.not_before else "always"
        end = self.not_after.isoformat() if self.not_after else "no end"
        return f"valid {start} .. {end}"

    def matches_hint(self, hint: str) -> bool:
        """Whether an unauthenticated key hint (a key id or the key's name) names this key."""
        return hint in (self.name, self.key_id)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's over ``data``."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
                return True
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                return any(
                    _ec_ok(self.key, signature, data, ec.ECDSA(h()))
                    for h in _EC_HASHES[self.key.curve.name]
                )
            return _rsa_ok(self.key, signature, data, hashes.SHA256())
        except InvalidSignature:
            return False

    def verifies_digest(self, signature: bytes, digest: bytes) -> bool:
        """Whether ``signature`` is this key's over a message whose SHA-256 is ``digest``.

        Ed25519 signs the message itself, never a digest, so it answers False here.
        """
        if isinstance(self.key, ed25519.Ed25519PublicKey) or len(digest) != 32:
            return False
        prehashed = utils.Prehashed(hashes.SHA256())
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return _ec_ok(self.key, signature, digest, ec.ECDSA(prehashed))
        return _rsa_ok(self.key, signature, digest, prehashed)


def _ec_ok(
    key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, algorithm: ec.ECDSA
) -> bool:
    try:
        key.verify(signature, data, algorithm)
    except InvalidSignature:
        return False
    return True


def _rsa_ok(
    key: rsa.RSAPublicKey,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | utils.Prehashed,
) -> bool:
    paddings: tuple[padding.AsymmetricPadding, ...] = (
        padding.PKCS1v15(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
    )
    for pad in paddings:
        try:
            key.verify(signature, data, pad, algorithm)
            return True
        except InvalidSignature:
            continue
    return False


def load_key(
    name: str,
    pem: str | bytes,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> TrustedKey:
    """A :class:`TrustedKey` from a PEM public key; :class:`InvalidKey` says what is wrong."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"key {name!r}: not a PEM public key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_HASHES:
            raise InvalidKey(
                f"key {name!r}: unsupported curve {key.curve.name} (P-256, P-384, P-521)"
            )
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(
                f"key {name!r}: RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidKey(
            f"key {name!r}: unsupported key type {type(key).__name__} (ECDSA, Ed25519 or RSA)"
        )
    for label, when in (("notBefore", not_before), ("notAfter", not_after)):
        if when is not None and when.tzinfo is None:
            raise InvalidKey(f"key {name!r}: {label} must carry a time zone")
    if not_before and not_after and not_after < not_before:
        raise InvalidKey(f"key {name!r}: notAfter is before notBefore")
    return TrustedKey(name, key, not_before, not_after)


def find_signer(
    keys: Sequence[TrustedKey],
    signature: bytes,
    at: datetime,
    *,
    data: bytes | None = None,
    digest: bytes | None = None,
    hint: str | None = None,
) -> TrustedKey:
    """The key (in its window at ``at``) whose signature this is, over ``data`` or a SHA-256 ``digest``.

    Raises :class:`Refused` with the most precise reason: ``outside-window`` when
    only a key out of its window verifies it, ``wrong-key`` when the artifact's
    hint names none of the keys, otherwise ``bad-signature``.
    """
    names = ", ".join(k.name for k in keys) or "none"
    verifying = [
        k
        for k in keys
        if (k.verifies(signature, data) if data is not None else False)
        or (k.verifies_digest(signature, digest) if digest is not None else False)
    ]
    for key in verifying:
        if key.in_window(at):
            return key
    if verifying:
        key = verifying[0]
        raise Refused(
            Reason.OUTSIDE_WINDOW,
            f"signed by key {key.name!r}, which is {key.window_text()}, not at {at.isoformat()}",
        )
    if hint and not any(k.matches_hint(hint) for k in keys):
        raise Refused(Reason.WRONG_KEY, f"signed by key {hint!r}, not one of the keys ({names})")
    raise Refused(
        Reason.BAD_SIGNATURE,
        f"the signature does not verify with any key ({names}): signed by another key, "
        "or the signed bytes were altered",
    )
