"""The shared tier on Redis or Valkey: :class:`~controller.registry.cache.SharedTier`'s calls.

Each call is one round trip under its own deadline (:attr:`RedisTier.timeout`,
50 ms by default) and never raises: a timeout, a refused connection, an error
answer, or a call skipped because the circuit breaker is open is a "nothing"
for the caller, counted in ``baseguard_shared_cache_fallbacks_total`` and said
in the log (once per :data:`LOG_EVERY` seconds per kind of trouble: a dead
database must not flood the log either). The registry client then asks the
registry, as it would without a tier.

What is read is bounded before it is read (``GETRANGE`` to :attr:`max_value`
bytes: a database holding a 512 MiB value costs a reader no more than an
entry's worth), then authenticated (:mod:`controller.sharedcache.entries`); an entry that does not
authenticate is deleted (it can only be forged, damaged or past its signed
lifetime: one this key wrote there, in time, always verifies).
A lookup's lock is ``SET NX`` with a short lifetime whose value is itself an
authenticated entry, so a lock forged by someone without the key is ignored
(the lookup is fetched at once, not waited for); it is released only by its
holder (compare-and-delete), and it lapses on its own when the holder dies.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.registry.cache import SharedEntry, SharedKey
from controller.sharedcache import entries
from controller.sharedcache.breaker import Breaker
from controller.sharedcache.stats import SharedCacheCollector, SharedCacheStats

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("baseguard.sharedcache")

DEFAULT_TIMEOUT = 0.05
DEFAULT_WAIT = 0.5
DEFAULT_POLL = 0.02
DEFAULT_LOCK_TTL = 5.0
#: The largest value read or written: a manifest or config at the client's own bound
#: (4 MiB) with its media type, and the entry's header.
DEFAULT_MAX_VALUE = 4 * 1024 * 1024 + 1024
#: Seconds between two log lines about the same kind of trouble.
LOG_EVERY = 10.0

# Deletes the lock only if it still holds this holder's value: a lock that lapsed
# and was claimed by another process is not ours to delete.
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"""


class _Failed:
    """What a call that did not answer returns (``None`` is a real answer: a miss)."""


FAILED = _Failed()


class RedisTier:
    """A :class:`~controller.registry.cache.SharedTier` on one Redis/Valkey database."""

    def __init__(
        self,
        redis: Redis,
        keys: entries.Keys,
        *,
        prefix: str = "baseguard:",
        timeout: float = DEFAULT_TIMEOUT,
        wait: float = DEFAULT_WAIT,
        poll: float = DEFAULT_POLL,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        max_value: int = DEFAULT_MAX_VALUE,
        breaker: Breaker | None = None,
        wall_clock: Callable[[], float] = time.time,
        where: str = "",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.prefix = prefix
        self.timeout = timeout
        self.wait = wait
        self.poll = poll
        self.lock_ttl = lock_ttl
        self.max_value = max_value
        self.breaker = breaker if breaker is not None else Breaker()
        self.wall_clock = wall_clock
        self.where = where  # the URL without credentials, for log lines
        self.stats = SharedCacheStats()
        self._held: dict[str, bytes] = {}
        self._logged: dict[str, float] = {}
        self._release = redis.register_script(_RELEASE)

    # -- the SharedTier protocol -------------------------------------------------------

    async def get(self, key: SharedKey) -> SharedEntry | None:
        name = self.name(key)
        blob = await self._call("get", lambda: self.redis.getrange(name, 0, self.max_value))
        if isinstance(blob, _Failed):
            return None
        if not blob:
            self.stats.lookups["miss"] += 1
            return None
        if len(blob) > self.max_value:
            await self.reject(key, "malformed")
            return None
        try:
            value, age = entries.unseal(self.keys, name, bytes(blob), now=self.wall_clock())
        except entries.Rejected as exc:
            # Dropped, so the next look (this lookup's own, once it holds the claim, or
            # another replica's) is a plain miss: it pays for the entry once, not each time.
            await self.reject(key, exc.reason)
            return None
        self.stats.lookups["hit"] += 1
        return SharedEntry(value, age)

    async def put(self, key: SharedKey, value: bytes, ttl: float) -> None:
        if len(value) + entries.OVERHEAD > self.max_value or ttl <= 0:
            return
        name = self.name(key)
        blob = entries.seal(self.keys, name, value, now=self.wall_clock(), ttl=ttl)
        done = await self._call("set", lambda: self.redis.set(name, blob, px=max(1, int(ttl * 1000))))
        if not isinstance(done, _Failed):
            self.stats.writes += 1

    async def reject(self, key: SharedKey, reason: str) -> None:
        self._rejected(key, reason)
        name = self.name(key)
        await self._call("del", lambda: self.redis.delete(name))

    async def claim(self, key: SharedKey) -> bool:
        name = self.name(key)
        token = secrets.token_hex(16).encode()
        blob = entries.seal(self.keys, name, token, now=self.wall_clock(), ttl=self.lock_ttl)
        px = max(1, int(self.lock_ttl * 1000))
        old = await self._call("claim", lambda: self.redis.set(name, blob, nx=True, px=px, get=True))
        if isinstance(old, _Failed):
            return True  # nobody to coordinate with: fetch
        if old is None:
            self._held[name] = blob
            self.stats.claims["led"] += 1
            return True
        try:
            entries.unseal(self.keys, name, bytes(old), now=self.wall_clock())
        except entries.Rejected as exc:
            self._rejected(key, exc.reason)  # a lock we did not write: not worth waiting for
            return True
        self.stats.claims["busy"] += 1
        return False

    async def release(self, key: SharedKey) -> None:
        name = self.name(key)
        blob = self._held.pop(name, None)
        if blob is not None:
            await self._call("release", lambda: self._release(keys=[name], args=[blob]))

    # -- the rest ----------------------------------------------------------------------

    def name(self, key: SharedKey) -> str:
        return entries.name(self.keys, self.prefix, key)

    def collector(self) -> SharedCacheCollector:
        """The Prometheus collector of this tier's counters (register it with the webhook's)."""
        return SharedCacheCollector(self.stats, lambda: self.breaker.is_open)

    async def ping(self) -> bool:
        """Whether the database answers now (start-up says so in the log; it never fails)."""
        return not isinstance(await self._call("ping", self.redis.ping), _Failed)

    async def close(self) -> None:
        try:
            await self.redis.aclose()
        except Exception as exc:  # closing a dead connection must not fail a shutdown
            log.debug("closing the shared cache: %s", exc)

    async def _call(self, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """One round trip within :attr:`timeout`; :data:`FAILED` (counted, logged) otherwise."""
        breaker = self.breaker
        if not breaker.allow():
            self.stats.fallbacks["open"] += 1
            return FAILED
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except TimeoutError:
            reason, detail = "timeout", f"no answer within {self.timeout * 1000:g} ms"
        except asyncio.CancelledError:
            breaker.abandoned()
            raise
        except Exception as exc:  # any failure of the tier is a fallback, never a failed review
            reason, detail = "error", f"{type(exc).__name__}: {exc}"
        else:
            if breaker.succeeded():
                log.info("shared cache answers again", extra={"fields": {"where": self.where}})
            return result
        self.stats.fallbacks[reason] += 1
        opened = breaker.failed()
        if opened or self._may_log(reason):
            log.warning(
                "shared cache unavailable: lookups go on without it",
                extra={
                    "fields": {
                        "where": self.where,
                        "call": what,
                        "reason": reason,
                        "error": detail,
                        "circuit_open": breaker.is_open,
                    }
                },
            )
        return FAILED

    def _rejected(self, key: SharedKey, reason: str) -> None:
        self.stats.rejected[reason] += 1
        if self._may_log(f"rejected-{reason}"):
            log.warning(
                "shared cache entry ignored",
                extra={"fields": {"where": self.where, "kind": key[0], "reason": reason}},
            )

    def _may_log(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) < LOG_EVERY:
            return False
        self._logged[kind] = now
        return True
