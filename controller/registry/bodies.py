"""Reading a registry's body into memory: capped in bytes, values counted, hashed as it comes.

The transport (:mod:`controller.registry.transport`) decides what may be read and holds
the room for it; these functions only read, so the bounds of one body live in one place.
"""

from __future__ import annotations

import hashlib

import aiohttp

from controller.errors import LookupFailed
from controller.registry import jsonread
from controller.registry.limits import current_account

__all__ = ["charge_unread", "mib", "read_capped", "read_prefix"]


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


async def read_capped(
    resp: aiohttp.ClientResponse, limit: int, what: str, hp: str, where: str, max_values: int | None
) -> tuple[bytes, str]:
    """Read at most ``limit`` bytes, and their sha256 digest as they arrive (a 64 KiB
    chunk hashes in tens of microseconds); refuse on the Content-Length, or as soon as
    the stream passes it.

    With ``max_values`` (a manifest's bound), the commas are counted as the chunks
    arrive, and the read stops once they alone show more values than the JSON reader
    would parse (:func:`controller.registry.jsonread.values_at_most`): a 4 MiB index of
    a flood is refused after its first few hundred KiB, never read, hashed or scanned
    whole. The review is charged the bytes read, or the ``Content-Length`` of a body
    refused part-way for its values.
    """
    length = resp.content_length
    if length is not None and length > limit:
        raise LookupFailed(
            f"{what} over {mib(limit)} refused ({hp} {where}, Content-Length {length})",
            context={"registry": hp, "code": "TOO_LARGE"},
        )
    buf = bytearray()
    hasher = hashlib.sha256()
    commas = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            resp.close()
            charge_unread(len(buf))
            raise LookupFailed(
                f"{what} over {mib(limit)} refused ({hp} {where})",
                context={"registry": hp, "code": "TOO_LARGE"},
            )
        if max_values is not None:
            commas += chunk.count(b",")
            if commas + 1 > max_values:
                resp.close()
                # Charged at the size it declared: what its sender made this review ask for.
                # Stopping early saves the process the rest of the read, not the review its
                # budget, so a flood of refused indexes ends at the bytes bound as before.
                charge_unread(max(len(buf), length or 0))
                raise jsonread.too_many_values(what, max_values, read=len(buf))
        hasher.update(chunk)
    return bytes(buf), "sha256:" + hasher.hexdigest()


def charge_unread(size: int) -> None:
    """Charge a body refused part-way to the review: it was fetched, if never returned."""
    account = current_account()
    if account is not None:
        account.charge_fetched(size)


async def read_prefix(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (an error body: its code and message are at the start)."""
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(16 * 1024):
        buf += chunk
        if len(buf) >= limit:
            resp.close()
            break
    return bytes(buf[:limit])
