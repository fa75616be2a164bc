"""What the registry told us, kept so the next admission does not ask again.

Three stores with three lifetimes, and one way to wait:

- content addressed by digest (manifests, configs) never goes stale: it is
  hashed on the way in, so an LRU bounded by entries and bytes is enough. The
  bytes are those the entries take in memory, not their bodies': a parsed
  document is several times its JSON (measured: an index 3.7x, a manifest 4.5x,
  a config 5.5x, as it keeps its parsed JSON too, plus about 2 KiB of objects
  each), so each is weighed by :func:`weight`;
- tag → digest moves when someone pushes: a short TTL (30 s by default);
- failures are remembered for a few seconds (3 s by default) so an admission
  storm does not hammer a registry that is down;
- a :class:`~controller.caching.SingleFlight` makes concurrent callers for one
  key share one request, and cancels it when every caller has gone.

The pieces are :mod:`controller.caching`'s (one implementation of bounds,
expiry and single-flight for the whole controller); this module decides the
registry's lifetimes. The clock is a parameter, so tests move time without
sleeping. A cache belongs to one event loop (single-flight tasks are
loop-bound).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from controller.caching import LRU, Clock, SingleFlight, TTLMap
from controller.errors import LookupFailed

V = TypeVar("V")

DEFAULT_TAG_TTL = 30.0
DEFAULT_FAILURE_TTL = 3.0
DEFAULT_MAX_ENTRIES = 20_000
#: Memory the content cache may take (weighed by :func:`weight`, not body bytes).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: A parsed document is weighed at this many times its body, plus :data:`PARSED_OVERHEAD`.
PARSED_FACTOR = 6
PARSED_OVERHEAD = 2048
#: A blob kept as bytes: its size plus the ``bytes`` object and the key.
BLOB_OVERHEAD = 256
#: A registry's Retry-After may stretch the failure TTL, up to this.
MAX_FAILURE_TTL = 60.0


def weight(value: Any, size: int) -> int:
    """Bytes ``value``, read from a body of ``size`` bytes, is taken to occupy in memory.

    An upper estimate: over the measured ratio of every kind the cache holds, so its
    byte bound is a bound on what it takes (a bytes blob is its size).
    """
    if isinstance(value, bytes | bytearray):
        return size + BLOB_OVERHEAD
    return PARSED_FACTOR * size + PARSED_OVERHEAD


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    failure_hits: int = 0


class RegistryCache:
    """The client's memory: digest-addressed content, tag TTLs, brief failures, in-flight lookups."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        tag_ttl: float = DEFAULT_TAG_TTL,
        failure_ttl: float = DEFAULT_FAILURE_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.clock = clock
        self.content: LRU[tuple[str, str], Any] = LRU(max_entries=max_entries, max_bytes=max_bytes)
        self.tags: TTLMap[Hashable, str] = TTLMap(ttl=tag_ttl, clock=clock, max_entries=max_entries)
        self.failures: TTLMap[Hashable, LookupFailed] = TTLMap(
            ttl=failure_ttl, clock=clock, max_entries=max_entries
        )
        self.flights: SingleFlight[Hashable, Any] = SingleFlight()
        self.stats = CacheStats()

    # content: key = (kind, digest); kind is "manifest" or "config"
    def get_content(self, kind: str, digest: str) -> Any | None:
        value = self.content.get((kind, digest))
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put_content(self, kind: str, digest: str, value: Any, size: int) -> None:
        """Keep ``value`` (parsed from a body of ``size`` bytes), weighed by its memory."""
        self.content.put((kind, digest), value, weight(value, size))

    def get_tag(self, key: Hashable) -> str | None:
        digest = self.tags.get(key)
        if digest is not None:
            self.stats.hits += 1
        return digest

    def stale_tag(self, key: Hashable) -> str | None:
        """The digest the tag had when last seen, even past its TTL."""
        return self.tags.get_stale(key)

    def put_tag(self, key: Hashable, digest: str) -> None:
        self.tags.put(key, digest)

    def check_failure(self, key: Hashable) -> None:
        """Raise the remembered failure for ``key`` (a fresh exception, same message)."""
        failed = self.failures.get(key)
        if failed is not None:
            self.stats.failure_hits += 1
            raise LookupFailed(failed.message, context={**failed.context, "cached": True})

    def put_failure(self, key: Hashable, error: LookupFailed, *, retry_after: float | None = None) -> None:
        ttl = None
        if retry_after is not None:
            ttl = min(max(retry_after, self.failures.ttl), MAX_FAILURE_TTL)
        # Only the message and context are kept: the exception itself holds its traceback,
        # and through it (and its ``__context__``) the frames that read the refused body.
        # Kept as is, every remembered "index over the bounds" held its 4 MiB alive.
        self.failures.put(key, LookupFailed(error.message, context=dict(error.context)), ttl=ttl)

    async def single_flight(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> V:
        result: V = await self.flights.run(key, work)
        return result

    def clear(self) -> None:
        self.content.clear()
        self.tags.clear()
        self.failures.clear()
