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

**A second tier** (:class:`SharedTier`, optional) is what other processes
know: replicas of one installation, or this process before a restart.
:mod:`controller.sharedcache` keeps one on Redis/Valkey; this module says what
goes into it and how an answer from it is trusted, so no tier implementation
can weaken that:

- content goes in as its body, keyed by (kind, digest), and every body read
  back is hashed again and must equal its digest (then parsed like a fresh
  one): whoever writes to the tier cannot place other bytes under a digest;
- tag → digest and failures are keyed with the credential fingerprint (a
  different credential set never reads them), live no longer than they would
  here (an answer read back keeps only the rest of its lifetime);
- a lookup missing everywhere is claimed (:meth:`SharedTier.claim`): one
  process fetches while the others poll for its answer for at most
  :attr:`SharedTier.wait` seconds, then fetch themselves;
- writes go out in the background and never hold a lookup; the tier answers
  every call within its own short timeout and never raises, so a tier that is
  down or slow costs a lookup at most that timeout (nothing, once its circuit
  breaker is open) and the answer comes from the registry as without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from controller import digests
from controller.caching import LRU, Clock, SingleFlight, TTLMap
from controller.errors import LookupFailed
from controller.registry.limits import current_account

log = logging.getLogger(__name__)

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
#: How long content lives in the shared tier: it never goes stale (content-addressed);
#: the bound only lets an unused body leave a database that is not LRU-configured.
DEFAULT_SHARED_CONTENT_TTL = 7 * 24 * 3600.0
#: Bodies read back from the shared tier this large or larger are hashed in a worker thread.
OFF_LOOP_HASH_BYTES = 256 * 1024
#: Writes to the shared tier in the background at once; past it a write is dropped (and counted).
MAX_PENDING_WRITES = 1024

SharedKey = tuple[str, ...]
"""A shared entry's key: its kind first (``content``, ``tag``, ``failure``, ``flight``), then
everything that makes its answer valid. The tier names the database key after all of it."""


@dataclass(frozen=True)
class SharedEntry:
    """What :meth:`SharedTier.get` found: the value as put, and how long ago it was put."""

    value: bytes
    age: float


class SharedTier(Protocol):
    """A cache other processes share (:mod:`controller.sharedcache` keeps one on Redis).

    Every call answers within the tier's own short timeout and never raises: a
    tier that is down, slow, or holding an entry it cannot authenticate answers
    "nothing" (``None``, ``True`` for :meth:`claim`) and counts why. Values are
    opaque bytes; what they mean, and how far they are trusted, is this module's.
    """

    #: Seconds a process that did not win :meth:`claim` polls for the winner's answer.
    wait: float
    #: Seconds between two polls.
    poll: float

    async def get(self, key: SharedKey) -> SharedEntry | None:
        """The value put under ``key`` and still alive, authenticated; else ``None``."""
        ...

    async def put(self, key: SharedKey, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (best effort)."""
        ...

    async def reject(self, key: SharedKey, reason: str) -> None:
        """An entry :meth:`get` returned was wrong (``reason``: ``digest``, ``malformed``):
        count it and drop it, so the next reader does not pay for it again."""
        ...

    async def claim(self, key: SharedKey) -> bool:
        """Whether this process should fetch ``key`` now: ``True`` when it holds the
        lookup's short lock (or the tier cannot tell); ``False`` while another
        process holds it."""
        ...

    async def release(self, key: SharedKey) -> None:
        """Let go of a lock :meth:`claim` took (after the answer has been put)."""
        ...


def _shared_key(key: Hashable) -> SharedKey | None:
    """``key`` as a shared key's tail, when it is a tuple of strings (every client key is)."""
    if isinstance(key, tuple) and all(isinstance(part, str) for part in key):
        return key
    return None


def _scalar_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """What of a failure's context another process may read: plain JSON scalars."""
    return {
        k: v
        for k, v in context.items()
        if k not in ("per_review", "cached") and isinstance(v, str | int | float | bool)
    }


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
    """The client's memory: digest-addressed content, tag TTLs, brief failures, in-flight lookups.

    ``shared``: a second tier other processes share (see the module's docstring).
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        tag_ttl: float = DEFAULT_TAG_TTL,
        failure_ttl: float = DEFAULT_FAILURE_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        shared: SharedTier | None = None,
        shared_content_ttl: float = DEFAULT_SHARED_CONTENT_TTL,
    ) -> None:
        self.clock = clock
        self.content: LRU[tuple[str, str], Any] = LRU(max_entries=max_entries, max_bytes=max_bytes)
        self.tags: TTLMap[Hashable, str] = TTLMap(ttl=tag_ttl, clock=clock, max_entries=max_entries)
        self.failures: TTLMap[Hashable, LookupFailed] = TTLMap(
            ttl=failure_ttl, clock=clock, max_entries=max_entries
        )
        self.flights: SingleFlight[Hashable, Any] = SingleFlight()
        self.stats = CacheStats()
        self.shared = shared
        self.shared_content_ttl = shared_content_ttl
        self._writes: set[asyncio.Task[None]] = set()
        self.dropped_writes = 0

    # content: key = (kind, digest); kind is "manifest" or "config"
    def get_content(self, kind: str, digest: str) -> Any | None:
        value = self.content.get((kind, digest))
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def put_content(
        self, kind: str, digest: str, value: Any, size: int, *, body: bytes | None = None,
        media_type: str = "",
    ) -> None:
        """Keep ``value`` (parsed from a body of ``size`` bytes), weighed by its memory.

        With ``body`` (the verified bytes ``value`` was parsed from, and the media type
        it was parsed as), the shared tier keeps the body too.
        """
        self.content.put((kind, digest), value, weight(value, size))
        if body is not None and "\n" not in media_type:
            self._share(("content", kind, digest), media_type.encode() + b"\n" + body,
                        self.shared_content_ttl)

    def get_tag(self, key: Hashable) -> str | None:
        digest = self.tags.get(key)
        if digest is not None:
            self.stats.hits += 1
        return digest

    def stale_tag(self, key: Hashable) -> str | None:
        """The digest the tag had when last seen, even past its TTL."""
        return self.tags.get_stale(key)

    def put_tag(self, key: Hashable, digest: str, *, scope: str | None = None) -> None:
        """Remember ``key``'s digest; with ``scope`` (the credential fingerprint that
        asked) the shared tier keeps it too, for that credential set only."""
        self.tags.put(key, digest)
        tail = _shared_key(key)
        if scope is not None and tail is not None:
            self._share(("tag", *tail, scope), digest.encode(), self.tags.ttl)

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
        tail = _shared_key(key)
        if tail is not None:
            record = {"message": error.message, "context": _scalar_context(error.context)}
            self._share(("failure", *tail), json.dumps(record).encode(),
                        self.failures.ttl if ttl is None else ttl)

    # -- the shared tier --------------------------------------------------------------

    def _share(self, key: SharedKey, value: bytes, ttl: float) -> None:
        """Put ``value`` in the shared tier in the background: a lookup never waits for it."""
        tier = self.shared
        if tier is None or ttl <= 0:
            return
        if len(self._writes) >= MAX_PENDING_WRITES:
            self.dropped_writes += 1
            return
        task = asyncio.get_running_loop().create_task(tier.put(key, value, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def settle(self) -> None:
        """Wait for the shared tier's writes under way (each is bounded by the tier's timeout)."""
        while self._writes:
            await asyncio.wait(list(self._writes))

    async def shared_body(self, kind: str, digest: str) -> tuple[bytes, str] | None:
        """The body (and media type) another process kept for ``digest``, hashed again here.

        A body that does not hash to its digest is rejected and reported to the tier; so
        is an entry without the media-type line. The bytes read are charged to the
        review's account like a registry body (the parse is charged by the parser).
        """
        tier = self.shared
        if tier is None:
            return None
        account = current_account()
        if account is not None:
            account.check_bytes()
        key: SharedKey = ("content", kind, digest)
        found = await tier.get(key)
        if found is None:
            return None
        if account is not None:
            account.charge_fetched(len(found.value))
        media_type, newline, body = found.value.partition(b"\n")
        if not newline:
            await tier.reject(key, "malformed")
            return None
        algorithm = digest.partition(":")[0]
        try:
            if len(body) < OFF_LOOP_HASH_BYTES:
                actual = digests.compute(body, algorithm)
            else:
                actual = await asyncio.to_thread(digests.compute, body, algorithm)
        except ValueError:
            actual = ""
        if actual != digest:
            log.warning(
                "shared cache entry does not match its digest: ignored",
                extra={"fields": {"kind": kind, "digest": digest}},
            )
            await tier.reject(key, "digest")
            return None
        return body, media_type.decode("ascii", errors="replace")

    def put_answer(self, key: SharedKey, value: bytes, ttl: float) -> None:
        """Share an answer that is not content-addressed (a referrers list) for ``ttl``
        seconds; ``key`` carries what makes it valid, credential fingerprint included."""
        self._share(key, value, ttl)

    async def shared_answer(self, key: SharedKey) -> bytes | None:
        """An answer :meth:`put_answer` shared, authenticated and within its lifetime."""
        if self.shared is None:
            return None
        found = await self.shared.get(key)
        return None if found is None else found.value

    async def reject_shared(self, key: SharedKey, reason: str) -> None:
        """Tell the tier an entry it gave was unusable (a body that does not parse)."""
        if self.shared is not None:
            await self.shared.reject(key, reason)

    async def shared_tag(self, key: Hashable, scope: str) -> str | None:
        """The digest another process learned for ``key`` with credentials ``scope``; kept
        here for the rest of its lifetime only (an answer does not live longer for
        having been passed on)."""
        tier, tail = self.shared, _shared_key(key)
        if tier is None or tail is None:
            return None
        shared_key: SharedKey = ("tag", *tail, scope)
        found = await tier.get(shared_key)
        if found is None:
            return None
        digest = found.value.decode("ascii", errors="replace")
        if not digests.is_digest(digest):
            await tier.reject(shared_key, "malformed")
            return None
        remaining = min(self.tags.ttl - found.age, self.tags.ttl)
        if remaining <= 0:  # older than a tag answer lives here: not an answer any more
            return None
        self.tags.put(key, digest, ttl=remaining)
        return digest

    async def _shared_failure(self, key: SharedKey) -> None:
        """Raise the failure another process remembered for the flight ``key``, if any."""
        tier = self.shared
        if tier is None:
            return
        found = await tier.get(("failure", *key))
        if found is None:
            return
        try:
            record = json.loads(found.value)
            message, context = record["message"], record["context"]
            if not isinstance(message, str) or not isinstance(context, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            await tier.reject(("failure", *key), "malformed")
            return
        self.stats.failure_hits += 1
        raise LookupFailed(message, context={**_scalar_context(context), "cached": True, "shared": True})

    async def _tiered(
        self, tier: SharedTier, key: SharedKey, work: Callable[[], Awaitable[V]],
        lookup: Callable[[], Awaitable[V | None]],
    ) -> V:
        """The shared tier's answer, or one process's fetch for all of them.

        Look (answer, then failure); claim the lookup; a process that did not win polls
        for the winner's answer and claims again after each poll, so a claimant that
        gave up or died hands over at once; past :attr:`SharedTier.wait` it fetches
        anyway. The winner looks once more before it fetches: a miss is only final once
        this process holds the lookup, since another one may have put its answer and
        let go between our look and our claim (it lets go only after its writes have
        landed, so the look after a won claim sees them). The wait is bounded by the
        review's deadline too: the flight is cancelled with the last review waiting.
        """
        found = await self._shared_answer(key, lookup)
        if found is not None:
            return found
        flight: SharedKey = ("flight", *key)
        deadline = time.monotonic() + tier.wait
        while not await tier.claim(flight):
            if time.monotonic() >= deadline:
                return await work()
            await asyncio.sleep(tier.poll)
            found = await self._shared_answer(key, lookup)
            if found is not None:
                return found
        try:
            # Ours now, and only now is a miss final: the answer may have landed (and its
            # writer let go) between the last look and the claim.
            found = await self._shared_answer(key, lookup)
            return found if found is not None else await work()
        finally:
            self._release(tier, flight)

    async def _shared_answer(
        self, key: SharedKey, lookup: Callable[[], Awaitable[V | None]]
    ) -> V | None:
        """The answer another process shared for ``key``; its shared failure is raised."""
        found = await lookup()
        if found is None:
            await self._shared_failure(key)
        return found

    def _release(self, tier: SharedTier, flight: SharedKey) -> None:
        """Let go of ``flight`` once the writes under way have landed (in the background)."""
        pending = list(self._writes)

        async def release() -> None:
            if pending:
                await asyncio.wait(pending)
            await tier.release(flight)

        task = asyncio.get_running_loop().create_task(release())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def single_flight(
        self,
        key: Hashable,
        work: Callable[[], Awaitable[V]],
        *,
        shared: Callable[[], Awaitable[V | None]] | None = None,
    ) -> V:
        """One ``work()`` per key in this process; with ``shared`` (how to read the answer
        from the shared tier) and a tier, one per key across the processes sharing it."""
        tier, tail = self.shared, _shared_key(key)
        if tier is not None and shared is not None and tail is not None:
            lookup, shared_tier, shared_key = shared, tier, tail

            async def tiered() -> V:
                return await self._tiered(shared_tier, shared_key, work, lookup)

            result: V = await self.flights.run(key, tiered)
        else:
            result = await self.flights.run(key, work)
        return result

    def clear(self) -> None:
        self.content.clear()
        self.tags.clear()
        self.failures.clear()
