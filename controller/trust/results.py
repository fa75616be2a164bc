"""What a verification answers: verified, or refused with a reason a user can act on.

PURE. Every refusal names the authority it was judged against and one reason
code from :class:`Reason`, so the caller can map it to a rule (``unsigned``,
``signature-invalid``) and a message without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a signature or attestation was refused."""

    #: No artifact at all was offered for the authority to judge.
    UNSIGNED = "unsigned"
    #: The signature does not verify under any of the authority's keys: signed by
    #: another key, or the signed bytes were altered after signing (the two cannot
    #: be told apart without a key hint).
    BAD_SIGNATURE = "bad-signature"
    #: The artifact names (by key hint or key id) a key the authority does not hold.
    WRONG_KEY = "wrong-key"
    #: The bytes do not match the digest recorded for them (a layer descriptor, a
    #: bundle's message digest): altered in transit or at rest.
    TAMPERED = "tampered"
    #: A valid signature, but over another image's digest.
    OTHER_IMAGE = "other-image"
    #: The only key that verifies it is outside its notBefore/notAfter window.
    OUTSIDE_WINDOW = "outside-window"
    #: Keyless: the certificate's identity or issuer is not the one required.
    WRONG_IDENTITY = "wrong-identity"
    #: Keyless: the chain to the trusted root, the SCT or the log entry fails.
    UNTRUSTED = "untrusted"
    #: Not parseable as the format it claims.
    MALFORMED = "malformed"
    #: A format, media type or algorithm this verifier does not handle.
    UNSUPPORTED = "unsupported"
    #: Attestations: a valid statement, but of another predicate type.
    OTHER_PREDICATE = "other-predicate"
    #: More signatures than a bound allows were offered and none examined verified:
    #: not evaluated, never taken as verified (the caller reports it like a failed lookup).
    TOO_MANY = "too-many"


@dataclass(frozen=True)
class TrustResult:
    """The answer for one artifact (or, from :func:`controller.trust.verify.verify`, for all).

    ``signer`` is who signed when verified: the key's name, or the keyless
    certificate's identity. ``predicate_type`` is set for verified attestations.
    """

    verified: bool
    authority: str
    message: str
    reason: Reason | None = None
    signer: str | None = None
    predicate_type: str | None = None

    @classmethod
    def ok(
        cls, authority: str, signer: str, message: str, *, predicate_type: str | None = None
    ) -> TrustResult:
        """A verified result."""
        return cls(True, authority, message, None, signer, predicate_type)

    @classmethod
    def refused(cls, authority: str, reason: Reason, message: str) -> TrustResult:
        """A refused result with its reason."""
        return cls(False, authority, message, reason)


class Refused(Exception):
    """Raised inside the format modules to stop at the first failure; carries reason and message."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TrustAnswer:
    """What was found for one (digest, authority, predicate): a result, or why there is none.

    ``failure`` is set when the registry could not answer or a bound was reached
    (judged like a failed lookup); ``examined`` counts the artifacts judged.
    """

    result: TrustResult | None = None
    failure: str | None = None
    examined: int = 0
