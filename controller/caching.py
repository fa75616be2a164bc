"""The one home of baseguard's in-memory caches: bounded maps, TTLs, single-flight.

Every layer remembers something for a while — the registry client its
manifests and tag answers, the webhook its lineages and review results, the
operator the pull secrets it read, the credential sources what their helper
programs said — and every layer shares a lookup in flight between concurrent
callers. They all use the pieces here, so a bound, an expiry or a
cancellation rule is decided once:

- :class:`LRU` bounds by entries and by the sum of entry sizes
  (``cachetools.LRUCache`` with a size function);
- :class:`TTLMap` expires each entry after its own lifetime on an injected
  clock (tests move time without sleeping), keeps the last value for a cheap
  revalidation (:meth:`TTLMap.get_stale`), and is LRU-bounded by entries;
- :class:`SingleFlight` makes concurrent callers for one key await one task.
  A caller that is cancelled (its admission deadline passed) stops waiting
  without cancelling the work for the others; when the *last* caller is gone
  the work is cancelled too (after ``linger`` seconds, 0 by default), so a
  review that has been answered leaves nothing running behind it;
- :class:`Loader` is a TTL map filled through a single flight, each load
  saying how long its answer lives (pull secrets, helper programs);
- :class:`Instances` keeps one object per key for the last N keys (one
  assessor per registry credential set).

Nothing here is thread-safe or shared between processes: each belongs to one
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import cachetools

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Least-recently-used map bounded by entry count and by the sum of entry sizes.

    An entry larger than the whole budget is not kept: it would evict
    everything else.
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: cachetools.LRUCache[K, tuple[V, int]] = cachetools.LRUCache(
            maxsize=max_bytes, getsizeof=lambda item: item[1]
        )

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes(self) -> int:
        return int(self._data.currsize)

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.max_bytes:
            return
        self._data[key] = (value, size)
        while len(self._data) > self.max_entries:
            self._data.popitem()

    def clear(self) -> None:
        self._data.clear()


class TTLMap(Generic[K, V]):
    """Entries that expire ``ttl`` seconds after they were put (per-entry TTL allowed).

    Expired entries are kept (and evicted LRU-first like the rest) so that
    :meth:`get_stale` can offer the last value for revalidation. ``hits`` and
    ``misses`` count :meth:`get`.
    """

    def __init__(self, *, ttl: float, clock: Clock, max_entries: int) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._data: cachetools.LRUCache[K, tuple[V, float]] = cachetools.LRUCache(
            maxsize=max(max_entries, 1)
        )
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None or self.clock() >= item[1]:
            self.misses += 1
            return None
        self.hits += 1
        return item[0]

    def get_stale(self, key: K) -> V | None:
        """The last value put, expired or not: what to revalidate cheaply."""
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, *, ttl: float | None = None) -> None:
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0 or self.max_entries <= 0:
            return
        self._data[key] = (value, self.clock() + lifetime)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class SingleFlight(Generic[K, V]):
    """Concurrent calls for one key await one shared task.

    The work runs in its own task. Callers wait through :func:`asyncio.shield`
    and are counted: a cancelled caller stops waiting without cancelling the
    work for the others, and an exception reaches every waiter. When no
    caller waits any more the work is cancelled ``linger`` seconds later
    (unless someone joined meanwhile): work nobody will read must not keep
    a registry connection, a concurrency slot or a request budget. The task
    is forgotten once done, so the next call starts afresh (results are
    cached elsewhere).
    """

    def __init__(self, *, linger: float = 0.0) -> None:
        self.linger = linger
        self._tasks: dict[K, asyncio.Task[V]] = {}
        self._waiters: dict[K, int] = {}
        self.joined = 0  # callers that shared someone else's work
        self.abandoned = 0  # works cancelled because every caller had gone

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: K, work: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        """The task for ``key``: the one in flight, or a new one running ``work()``."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            self._waiters[key] = 0
            task.add_done_callback(lambda t, k=key: self._done(k, t))  # type: ignore[misc]
        else:
            self.joined += 1
        return task

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        return await self.wait(key, self.start(key, work))

    def pending(self, key: K) -> asyncio.Task[V] | None:
        """The work in flight for ``key``, if any: another operation may :meth:`wait` on it."""
        return self._tasks.get(key)

    async def wait(self, key: K, task: asyncio.Task[V]) -> V:
        """Await ``task`` (the flight of ``key``) as one counted caller."""
        if self._tasks.get(key) is not task:
            return await asyncio.shield(task)  # finished and forgotten: nothing to count
        self._waiters[key] += 1
        try:
            return await asyncio.shield(task)
        finally:
            if self._tasks.get(key) is task:
                self._waiters[key] -= 1
                if self._waiters[key] == 0 and not task.done():
                    self._abandon(key, task)

    def _abandon(self, key: K, task: asyncio.Task[V]) -> None:
        def cancel() -> None:
            if self._tasks.get(key) is task and self._waiters.get(key) == 0 and not task.done():
                self.abandoned += 1
                del self._tasks[key]  # whoever asks next starts afresh, not on a dying task
                del self._waiters[key]
                task.cancel()

        if self.linger > 0:
            asyncio.get_running_loop().call_later(self.linger, cancel)
        else:
            cancel()

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        # shield() marks the result as retrieved when its waiter was cancelled,
        # so a failure nobody awaits is not reported as "never retrieved".
        if not task.cancelled():
            task.exception()
        if self._tasks.get(key) is task:
            del self._tasks[key]
            self._waiters.pop(key, None)

    def forget(self) -> None:
        """Let flights under way finish for their own callers; new calls start afresh."""
        self._tasks.clear()
        self._waiters.clear()

    def cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        self.forget()


class Loader(Generic[K, V]):
    """A TTL map filled through one single flight per key.

    ``load()`` returns ``(value, ttl)``: each answer says how long it lives
    (a missing secret for a minute, a failed read for seconds, a credential
    for what its helper said). An exception is not remembered.
    """

    def __init__(self, *, ttl: float, max_entries: int, clock: Clock, linger: float = 0.0) -> None:
        self.entries: TTLMap[K, V] = TTLMap(ttl=ttl, clock=clock, max_entries=max_entries)
        self.flights: SingleFlight[K, tuple[V, float]] = SingleFlight(linger=linger)

    async def get(self, key: K, load: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        entries = self.entries
        found = entries.get(key)
        if found is not None:
            return found

        async def landing() -> tuple[V, float]:
            value, ttl = await load()
            entries.put(key, value, ttl=ttl)
            return value, ttl

        value, _ = await self.flights.run(key, landing)
        return value

    def clear(self) -> None:
        self.entries.clear()


class Instances(Generic[K, V]):
    """One object per key, for the last ``max_entries`` keys used (LRU).

    Used for "one assessor per registry credential set": a team's next pod
    finds its assessor (and that assessor's memories) warm.
    """

    def __init__(self, make: Callable[[K], V], *, max_entries: int) -> None:
        self.make = make
        self._data: cachetools.LRUCache[K, V] = cachetools.LRUCache(maxsize=max(max_entries, 1))
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V:
        found = self._data.get(key)
        if found is None:
            found = self.make(key)
            if self.max_entries > 0:
                self._data[key] = found
        return found
