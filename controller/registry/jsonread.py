"""The one reader of JSON that registries send: bounded in bytes, values and depth.

Whatever a registry answers is written by whoever pushed it, so every JSON
document read from one goes through :func:`read`: manifests, indexes and
configs (:mod:`controller.registry.media`), error bodies
(:mod:`controller.registry.transport`), tag lists, referrers indexes, and what
lineage reads out of them (the Buildpacks label, BuildKit's buildinfo record,
in-toto statements and their DSSE payloads). One reader means one place where
a hostile document is bounded, and one way its refusal is named: a
:class:`~controller.errors.LookupFailed` whose message names the document and
the bound, so the image is ``lookup-failed`` and ``onLookupFailure`` decides.

The bounds, each checked before anything is built from the text:

- **bytes**: over ``max_bytes`` (the caller's, e.g. a manifest's 4 MiB) the text
  is not read;
- **values**: an upper bound on the values the text holds is counted first
  (every value but the first of a list or mapping follows a comma, and every
  list or mapping opens with a bracket: commas plus brackets plus one, and
  text inside strings only makes the count larger, never smaller). Over
  ``max_values`` the text is never parsed: parsing is the costly part (half a
  microsecond per value, holding the interpreter throughout, in a thread or
  not), counting is a scan of the bytes thirty times faster;
- **depth**: nesting deeper than :data:`MAX_DEPTH` is refused, as for files
  (:data:`controller.documents.MAX_DEPTH`, counted by the same function): the
  readers downstream walk data as a tree, and ``RecursionError`` is not a message.
"""

from __future__ import annotations

import json
from typing import Any

from controller.documents import MAX_DEPTH, nesting_depth
from controller.errors import LookupFailed
from controller.registry.limits import current_account

__all__ = ["MAX_DEPTH", "MAX_VALUES", "is_refusal", "read", "too_many_values", "values_at_most"]

#: Values one document may hold. An image config with a long history and a Buildpacks
#: label is a few thousand; an index of 128 entries about 1,500. 64 Ki values parse in
#: about 30 ms: the longest one document may hold the event loop.
MAX_VALUES = 65_536

# How each refusal ends, so a command can tell "the registry sent what we do not read"
# (bad input, exit 2) from "the registry could not be asked" (:func:`is_refusal`).
_TOO_LARGE = "bytes baseguard reads; refused"
_TOO_MANY = "baseguard parses in one document; refused unparsed"
_TOO_DEEP = "levels deep (lists and mappings); refused"


def is_refusal(message: str) -> bool:
    """Whether a lookup failure's text is this reader refusing a document for a bound."""
    return any(mark in message for mark in (_TOO_LARGE, _TOO_MANY, _TOO_DEEP))


def values_at_most(text: bytes | str) -> int:
    """An upper bound on the JSON values ``text`` holds, without parsing it (a few scans)."""
    if isinstance(text, str):
        return text.count(",") + text.count("[") + text.count("{") + 1
    return text.count(b",") + text.count(b"[") + text.count(b"{") + 1


def read(
    text: bytes | str,
    what: str,
    *,
    max_bytes: int | None = None,
    max_values: int = MAX_VALUES,
) -> Any:
    """The value of the JSON ``text`` (``what`` names it in messages, e.g. ``"image config"``).

    Raises :class:`LookupFailed`: ``"<what> is not JSON: …"`` for text that is
    not JSON (context ``code: INVALID``), and a message naming the bound for
    text over ``max_bytes``, ``max_values`` or :data:`MAX_DEPTH` (``code:
    TOO_LARGE`` or ``TOO_DEEP``).
    """
    size = len(text)
    if max_bytes is not None and size > max_bytes:
        raise LookupFailed(
            f"{what} is {size} bytes, over the {max_bytes} {_TOO_LARGE}",
            context={"code": "TOO_LARGE", "bytes": size},
        )
    account = current_account()
    if account is not None:  # the review pays for the parse, refused or not: the scan is work too
        account.charge_parsed(size)
    values = values_at_most(text)
    if values > max_values:
        raise LookupFailed(
            f"{what} holds up to {values} JSON values, over the {max_values} {_TOO_MANY}",
            context={"code": "TOO_LARGE", "bytes": size},
        )
    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(what, size) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LookupFailed(f"{what} is not JSON: {exc}", context={"code": "INVALID"}) from None
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise _too_deep(what, size)
    return data


def too_many_values(what: str, max_values: int, *, read: int) -> LookupFailed:
    """The refusal of a document found, while still being read (``read`` bytes so far),
    to hold more than ``max_values`` values: the same words and code as :func:`read`'s,
    so it is told apart the same way (:func:`is_refusal`)."""
    return LookupFailed(
        f"{what} holds more than the {max_values} JSON values {_TOO_MANY}",
        context={"code": "TOO_LARGE", "bytes": read},
    )


def _too_deep(what: str, size: int) -> LookupFailed:
    return LookupFailed(
        f"{what} is nested more than {MAX_DEPTH} {_TOO_DEEP}",
        context={"code": "TOO_DEEP", "bytes": size},
    )
