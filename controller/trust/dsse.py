"""DSSE envelopes: the pre-authentication encoding and key-based verification.

PURE. Per the DSSE v1 protocol the signature covers
``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, where
LEN is the ASCII decimal byte length; never the base64 text nor the JSON of
the envelope. Envelopes are what cosign ``attest`` pushes (``.att`` layers of
``application/vnd.dsse.envelope.v1+json``), what BuildKit and GitHub
attestations carry, and what a Sigstore bundle's ``dsseEnvelope`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.trust.encoding import b64decode, json_object
from controller.trust.keys import TrustedKey, find_signer
from controller.trust.results import Reason, Refused

MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"

#: Signatures one envelope may carry: each costs a verification per key, and the
#: envelope is a registry's bytes. Real envelopes carry one.
MAX_SIGNATURES = 8

#: The refusals from most to least telling, when several signatures all fail.
_PRECEDENCE = (Reason.OUTSIDE_WINDOW, Reason.WRONG_KEY, Reason.BAD_SIGNATURE, Reason.MALFORMED)


@dataclass(frozen=True)
class Signature:
    """One signature of an envelope and its (unauthenticated) key id."""

    sig: bytes
    keyid: str


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: the payload's type and bytes, and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope_from_json(data: bytes | dict[str, Any]) -> Envelope:
    """An :class:`Envelope` from its JSON (bytes, or the object a bundle holds)."""
    doc = data if isinstance(data, dict) else json_object(data, "the DSSE envelope")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise Refused(Reason.MALFORMED, "the DSSE envelope has no payloadType")
    payload = b64decode(doc.get("payload"), "the DSSE envelope's payload")
    raw = doc.get("signatures")
    if not isinstance(raw, list) or not raw:
        raise Refused(Reason.MALFORMED, "the DSSE envelope has no signatures")
    if len(raw) > MAX_SIGNATURES:
        raise Refused(
            Reason.TOO_MANY,
            f"the DSSE envelope carries {len(raw)} signatures, more than {MAX_SIGNATURES}; not examined",
        )
    signatures = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise Refused(Reason.MALFORMED, f"the DSSE envelope's signatures[{i}] is not an object")
        keyid = entry.get("keyid")
        signatures.append(
            Signature(
                b64decode(entry.get("sig"), f"the DSSE envelope's signatures[{i}].sig"),
                keyid if isinstance(keyid, str) else "",
            )
        )
    return Envelope(payload_type, payload, tuple(signatures))


def verify_envelope(
    envelope: Envelope, keys: Sequence[TrustedKey], at: datetime, *, hint: str | None = None
) -> TrustedKey:
    """The authority's key (in its window) that signed the envelope's PAE; :class:`Refused` otherwise."""
    message = pae(envelope.payload_type, envelope.payload)
    refusals: list[Refused] = []
    for signature in envelope.signatures:
        try:
            return find_signer(keys, signature.sig, at, data=message, hint=signature.keyid or hint)
        except Refused as refused:
            refusals.append(refused)
    return _raise_best(refusals)


def _raise_best(refusals: list[Refused]) -> TrustedKey:
    refusals.sort(key=lambda r: _PRECEDENCE.index(r.reason) if r.reason in _PRECEDENCE else 99)
    raise refusals[0]
