"""Small decoding helpers every format here shares (base64, JSON objects), refusing with a reason.

PURE. Untrusted bytes become a :class:`~controller.trust.results.Refused`
(``malformed``) here, never an exception the caller has to know about.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from controller.trust.results import Reason, Refused


def b64decode(text: object, what: str) -> bytes:
    """Standard or URL-safe base64 (DSSE allows both), padded or not."""
    if not isinstance(text, str) or not text:
        raise Refused(Reason.MALFORMED, f"{what} is missing or not a string")
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(Reason.MALFORMED, f"{what} is not base64") from None


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Refused(Reason.MALFORMED, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(Reason.MALFORMED, f"{what} is not a JSON object")
    return value


def field(obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    """The object under ``key``, or a ``malformed`` refusal naming the path."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise Refused(Reason.MALFORMED, f"{what}.{key} is missing or not an object")
    return value
