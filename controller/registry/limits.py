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

**Rate limits.** A registry that answered 429 is not asked again before the
time it named (``Retry-After``, or ``RateLimit-Reset``); meanwhile every
request to it fails at once with the same message (:class:`HoldOffs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

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


def per_tenant_limit(capacity: int) -> int:
    """Slots one tenant may hold: all of them below 4, else all but a quarter."""
    return capacity if capacity < 4 else capacity - capacity // 4


class FairSlots:
    """A per-host concurrency limit shared round-robin between tenants, each under a cap."""

    def __init__(self, capacity: int, *, per_tenant: int | None = None) -> None:
        self.capacity = capacity
        self.per_tenant = per_tenant if per_tenant is not None else per_tenant_limit(capacity)
        self.held = 0
        self.by_tenant: Counter[Tenant] = Counter()
        self._queues: OrderedDict[Tenant, deque[asyncio.Future[None]]] = OrderedDict()

    def waiting(self, tenant: Tenant = None) -> int:
        return len(self._queues.get(tenant, ()))

    def _can(self, tenant: Tenant) -> bool:
        return self.held < self.capacity and self.by_tenant[tenant] < self.per_tenant

    def _take(self, tenant: Tenant) -> None:
        self.held += 1
        self.by_tenant[tenant] += 1

    async def acquire(self, tenant: Tenant) -> None:
        if not self._queues.get(tenant) and self._can(tenant):
            self._take(tenant)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(tenant, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(tenant)  # granted as we were cancelled: hand it on
            else:
                queue = self._queues.get(tenant)
                if queue is not None:
                    with contextlib.suppress(ValueError):
                        queue.remove(granted)
                    if not queue:
                        del self._queues[tenant]
            raise

    def release(self, tenant: Tenant) -> None:
        self.held -= 1
        self.by_tenant[tenant] -= 1
        if self.by_tenant[tenant] <= 0:
            del self.by_tenant[tenant]
        self._wake()

    def _wake(self) -> None:
        """Grant free slots to waiting tenants, fewest slots held first, until none can take one.

        Ties go round-robin: a tenant that was just served moves behind the others.
        """
        while self.held < self.capacity and self._queues:
            ready = [t for t in self._queues if self._can(t)]
            if not ready:
                return
            tenant = min(ready, key=lambda t: self.by_tenant[t])  # min() keeps queue order on ties
            queue = self._queues[tenant]
            granted = queue.popleft()
            if queue:
                self._queues.move_to_end(tenant)
            else:
                del self._queues[tenant]
            if granted.done():  # its waiter was cancelled and has not run yet: skip it
                continue
            self._take(tenant)
            granted.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self, tenant: Tenant) -> AsyncIterator[None]:
        await self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)


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
