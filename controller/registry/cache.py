"""What the registry told us, kept so the next admission does not ask again.

Three stores with three lifetimes, and one way to wait:

- content addressed by digest (manifests, configs) never goes stale: it is
  hashed on the way in, so an LRU bounded by entries and bytes is enough;
- tag → digest moves when someone pushes: a short TTL (30 s by default);
- failures are remembered for a few seconds (3 s by default) so an admission
  storm does not hammer a registry that is down;
- :class:`SingleFlight` makes concurrent callers for one key share one request.

The clock is a parameter, so tests move time without sleeping. A cache belongs
to one event loop (single-flight tasks are loop-bound).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from controller.errors import LookupFailed

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_TAG_TTL = 30.0
DEFAULT_FAILURE_TTL = 3.0
DEFAULT_MAX_ENTRIES = 20_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: A registry's Retry-After may stretch the failure TTL, up to this.
MAX_FAILURE_TTL = 60.0


class LRU(Generic[K, V]):
    """Least-recently-used map bounded by entry count and by the sum of entry sizes."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.max_bytes:
            return  # would evict everything else; not worth keeping
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self._data.popitem(last=False)
            self.bytes -= evicted

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0


class TTLMap(Generic[K, V]):
    """Entries that expire ``ttl`` seconds after they were put (per-entry TTL allowed)."""

    def __init__(self, *, ttl: float, clock: Clock, max_entries: int) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if self.clock() >= expires:
            return None  # kept for get_stale; evicted by size like the rest
        return value

    def get_stale(self, key: K) -> V | None:
        """The last value put, expired or not: what to revalidate cheaply."""
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, *, ttl: float | None = None) -> None:
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0:
            return
        self._data.pop(key, None)
        self._data[key] = (value, self.clock() + lifetime)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class SingleFlight(Generic[K, V]):
    """Concurrent calls for one key await one shared task.

    The work runs in its own task and every caller awaits it through
    :func:`asyncio.shield`: a caller that is cancelled (its admission deadline
    passed) stops waiting without cancelling the lookup for the others, and an
    exception reaches every waiter. The task is forgotten once done, so the
    next call after it starts afresh (results are cached elsewhere).
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self.joined = 0  # callers that shared someone else's request

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))  # type: ignore[misc]
        else:
            self.joined += 1
        return await asyncio.shield(task)

    def pending(self, key: K) -> asyncio.Task[V] | None:
        """The lookup in flight for ``key``, if any: another operation may join it."""
        return self._tasks.get(key)

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        # No need to fetch task.exception() here: shield() marks the result as
        # retrieved when its waiter was cancelled, so a failure nobody awaits
        # is not reported as "never retrieved".
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        self._tasks.clear()


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
        self.content.put((kind, digest), value, size)

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
        self.failures.put(key, error, ttl=ttl)

    async def single_flight(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> V:
        result: V = await self.flights.run(key, work)
        return result

    def clear(self) -> None:
        self.content.clear()
        self.tags.clear()
        self.failures.clear()
