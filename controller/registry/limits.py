"""How much of a registry one tenant may take, and when a registry may be asked at all.

**Fair shares.** Each registry host has ``maxConcurrency`` request slots
(8 by default). A plain semaphore hands them out first come, first served,
so one namespace that sends a pod with 1,000 bogus tags queues 1,000
requests in front of every other namespace's honest lookup. Here the slots
are shared per *tenant* (the namespace a review came from; ``None`` for the
CLI and anything without one):

- a released slot goes to the waiting tenant that holds the fewest slots
  (round-robin between equals), so a tenant with one request waits for at
  most one release, however long another tenant's queue is;
- one tenant may hold at most ``capacity - capacity // 4`` slots (6 of 8) at
  once, so the rest stay free for others even while a flood's requests are
  slow to answer (below 4 slots there is no reserve).

The tenant travels in a context variable (:func:`as_tenant`), set by the
assessment for each lookup it starts; a shared lookup runs as the tenant
that started it.

**Bytes.** The review's account (:class:`ByteAccount`, the lineage's
``ReviewBudget``) travels the same way (:func:`charged_to`, set around each
registry call a review makes): the transport charges it every body it reads
and asks it before every request it sends, and the JSON reader
(:mod:`controller.registry.jsonread`) charges it every text it parses. A
shared lookup is charged to the review that started it, as its requests are.

**Rate limits.** A registry that answered 429 is not asked again before the
time it named (``Retry-After``, or ``RateLimit-Reset``); meanwhile every
request to it fails at once with the same message (:class:`HoldOffs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from controller.caching import Clock
from controller.errors import LookupFailed

Tenant = str | None

_TENANT: ContextVar[Tenant] = ContextVar("baseguard_registry_tenant", default=None)


def current_tenant() -> Tenant:
    return _TENANT.get()


@contextlib.contextmanager
def as_tenant(tenant: Tenant) -> Iterator[None]:
    """Registry requests made inside (and in tasks started inside) count against ``tenant``."""
    token = _TENANT.set(tenant)
    try:
        yield
    finally:
        _TENANT.reset(token)


class ByteAccount(Protocol):
    """What one review may still fetch and parse (``controller.lineage.budget.ReviewBudget``)."""

    def check_bytes(self) -> None:
        """Raise :class:`LookupFailed` (naming the bound) when the review has no bytes left."""

    def charge_fetched(self, size: int) -> None:
        """Count ``size`` bytes of a body read from a registry."""

    def charge_parsed(self, size: int) -> None:
        """Count ``size`` bytes of JSON text parsed."""


_ACCOUNT: ContextVar[ByteAccount | None] = ContextVar("baseguard_registry_account", default=None)


def current_account() -> ByteAccount | None:
    return _ACCOUNT.get()


@contextlib.contextmanager
def charged_to(account: ByteAccount) -> Iterator[None]:
    """Bytes fetched and parsed inside (and in tasks started inside) count against ``account``."""
    token = _ACCOUNT.set(account)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


def per_tenant_limit(capacity: int) -> int:
    """Slots one tenant may hold: all of them below 4, else all but a quarter."""
    return capacity if capacity < 4 else capacity - capacity // 4


class FairSlots:
    """A per-host concurrency limit shared round-robin between tenants, each under a cap.

    Units are slots by default (one per request); :class:`BodyRoom` uses the same
    scheduler with bytes as units, so a request may take ``amount`` units at once
    (clamped to what one tenant may hold, so no request waits for ever).
    """

    def __init__(self, capacity: int, *, per_tenant: int | None = None) -> None:
        self.capacity = capacity
        self.per_tenant = per_tenant if per_tenant is not None else per_tenant_limit(capacity)
        self.held = 0
        self.by_tenant: Counter[Tenant] = Counter()
        self._queues: OrderedDict[Tenant, deque[tuple[asyncio.Future[None], int]]] = OrderedDict()

    def waiting(self, tenant: Tenant = None) -> int:
        return len(self._queues.get(tenant, ()))

    def clamp(self, amount: int) -> int:
        return max(1, min(amount, self.per_tenant))

    def _can(self, tenant: Tenant, amount: int) -> bool:
        return self.held + amount <= self.capacity and self.by_tenant[tenant] + amount <= self.per_tenant

    def _take(self, tenant: Tenant, amount: int) -> None:
        self.held += amount
        self.by_tenant[tenant] += amount

    async def acquire(self, tenant: Tenant, amount: int = 1) -> None:
        """Take ``amount`` units (already :meth:`clamp`-ed by the caller) for ``tenant``."""
        if not self._queues.get(tenant) and self._can(tenant, amount):
            self._take(tenant, amount)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = (granted, amount)
        self._queues.setdefault(tenant, deque()).append(ticket)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(tenant, amount)  # granted as we were cancelled: hand it on
            else:
                queue = self._queues.get(tenant)
                if queue is not None:
                    with contextlib.suppress(ValueError):
                        queue.remove(ticket)
                    if not queue:
                        del self._queues[tenant]
            raise

    def release(self, tenant: Tenant, amount: int = 1) -> None:
        self.held -= amount
        self.by_tenant[tenant] -= amount
        if self.by_tenant[tenant] <= 0:
            del self.by_tenant[tenant]
        self._wake()

    def _wake(self) -> None:
        """Grant free units to waiting tenants, fewest units held first, until none can take theirs.

        Ties go round-robin: a tenant that was just served moves behind the others.
        """
        while self.held < self.capacity and self._queues:
            ready = [t for t, queue in self._queues.items() if self._can(t, queue[0][1])]
            if not ready:
                return
            tenant = min(ready, key=lambda t: self.by_tenant[t])  # min() keeps queue order on ties
            queue = self._queues[tenant]
            granted, amount = queue.popleft()
            if queue:
                self._queues.move_to_end(tenant)
            else:
                del self._queues[tenant]
            if granted.done():  # its waiter was cancelled and has not run yet: skip it
                continue
            self._take(tenant, amount)
            granted.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self, tenant: Tenant, amount: int = 1) -> AsyncIterator[None]:
        amount = self.clamp(amount)
        await self.acquire(tenant, amount)
        try:
            yield
        finally:
            self.release(tenant, amount)


#: Bytes of registry bodies the whole process may be reading at once (32 MiB), and one
#: tenant's share of them. A body is read into memory whole (it is hashed and parsed
#: whole), so without this bound memory grew with the requests in flight: 8 per host on
#: 4 hostile hosts, each a 4 MiB index, held 128 MiB of bodies and their copies at once,
#: four such reviews took the process past its 384 MiB limit.
BODY_ROOM_BYTES = 32 * 1024 * 1024


class BodyRoom(FairSlots):
    """The process's bytes of bodies being read, shared between tenants like request slots.

    A reader takes the body's ``Content-Length`` (or the most it may read, when the
    registry does not say) before reading; one tenant may hold three quarters, so a
    flood of large bodies from one namespace leaves room for another's manifests.
    """

    def __init__(self, capacity: int = BODY_ROOM_BYTES) -> None:
        super().__init__(capacity, per_tenant=per_tenant_limit(capacity))


#: How long a 429 without Retry-After or RateLimit-Reset keeps a host quiet.
DEFAULT_HOLD = 30.0
#: The longest a registry's answer may keep us from asking it (Docker Hub's window is 6 h).
MAX_HOLD = 3600.0


@dataclass(frozen=True)
class RateLimit:
    """What a 429 said: seconds until we may ask again (if it said), and the limit in words."""

    reset_after: float | None
    limit: str | None

    @property
    def hold(self) -> float:
        return min(self.reset_after if self.reset_after is not None else DEFAULT_HOLD, MAX_HOLD)

    def describe(self, *, wall: float | None = None) -> str:
        """``limit 100 per 21600s, 0 left; resets at 2026-12-04T17:05:07Z``."""
        parts = [self.limit] if self.limit else []
        when = dt.datetime.fromtimestamp((wall or time.time()) + self.hold, tz=dt.UTC)
        parts.append(f"resets at {when.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        return "; ".join(parts)


def _seconds(value: str, *, wall: float) -> float | None:
    """A delta in seconds, an epoch timestamp, or an HTTP date → seconds from now."""
    text = value.strip().split(";", 1)[0].split(",", 1)[0].strip()
    try:
        number = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(when.timestamp() - wall, 0.0)
    if number < 0:
        return None
    return max(number - wall, 0.0) if number > 1_000_000_000 else number


_WINDOW = re.compile(r"\bw=(\d+)")


def rate_limit_of(headers: Mapping[str, str], *, wall: float | None = None) -> RateLimit:
    """Read ``Retry-After`` and the ``RateLimit-*`` headers (Docker Hub's ``100;w=21600``)."""
    now = wall if wall is not None else time.time()
    reset = None
    for name in ("Retry-After", "RateLimit-Reset", "X-RateLimit-Reset"):
        value = headers.get(name)
        if value:
            reset = _seconds(value, wall=now)
            if reset is not None:
                break
    limit = None
    raw = headers.get("RateLimit-Limit") or headers.get("X-RateLimit-Limit")
    if raw:
        count = raw.split(";", 1)[0].split(",", 1)[0].strip()
        window = _WINDOW.search(raw)
        if count.isdigit():
            limit = f"limit {count}" + (f" per {window.group(1)}s" if window else "")
            left = (headers.get("RateLimit-Remaining") or headers.get("X-RateLimit-Remaining") or "")
            left = left.split(";", 1)[0].strip()
            if left.isdigit():
                limit += f", {left} left"
    return RateLimit(reset, limit)


@dataclass(frozen=True)
class HoldOff:
    """A registry's rate limit: do not ask ``host`` before ``until`` (our clock)."""

    host: str
    until: float
    message: str
    limit: str | None


class HoldOffs:
    """Hosts that answered 429, until the time they named; checked before every request."""

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock
        self._hosts: dict[str, HoldOff] = {}

    def check(self, host: str) -> None:
        held = self._hosts.get(host)
        if held is None:
            return
        left = held.until - self.clock()
        if left <= 0:
            del self._hosts[host]
            return
        raise LookupFailed(
            f"{held.message}; not asking {host} again for {left:.0f}s",
            context={"registry": host, "status": 429, "code": "TOOMANYREQUESTS", "cached": True,
                     "retry_after": left, "rate_limit": held.limit},
        )

    def hold(self, host: str, seconds: float, message: str, limit: str | None) -> None:
        until = self.clock() + seconds
        current = self._hosts.get(host)
        if current is None or current.until < until:
            self._hosts[host] = HoldOff(host, until, message, limit)

    def __contains__(self, host: str) -> bool:
        held = self._hosts.get(host)
        return held is not None and held.until > self.clock()
