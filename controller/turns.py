"""Turns on the event loop for CPU-bound work, handed out round-robin by tenant.

Judging images is pure computation on the event loop. Each review judges in
short slices and yields between them, so no slice holds the loop for long;
but plain yielding is fair per *task*: a namespace with eight heavy reviews in
flight would get eight turns for every one of another namespace's honest
review. :class:`FairTurns` makes the order fair per *tenant* (the namespace of
the object judged): a slice starts only with a turn, and when turns are
wanted by several tenants they go to each tenant in rotation, first come first
served within a tenant. Nobody waiting: a turn is free at once.

The registry client already shares its concurrency per tenant
(:mod:`controller.registry.limits`); this is the same rule for CPU.

The queue is keyed by the tenant's namespace (``None`` for objects without one)
and holds only futures of reviews in flight: no tenant can shape another's
entry, and every entry is gone when its review's slice ends or is cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairTurns:
    """One turn at a time, granted round-robin across tenants."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = False
        self._waiting: dict[str | None, deque[asyncio.Future[None]]] = {}

    def _reset_for(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop (each CLI run has its own): what the old one left means nothing."""
        if self._loop is not loop:
            self._loop, self._held, self._waiting = loop, False, {}

    @property
    def waiting(self) -> int:
        """Slices waiting for a turn (for tests and metrics)."""
        return sum(len(q) for q in self._waiting.values())

    async def take(self, tenant: str | None) -> None:
        """Wait for a turn; the caller must :meth:`give` it back."""
        loop = asyncio.get_running_loop()
        self._reset_for(loop)
        if not self._held and not self._waiting:
            self._held = True
            return
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(tenant, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give()  # granted just as we were cancelled: pass it on
            else:
                queue = self._waiting.get(tenant)
                if queue is not None and future in queue:
                    queue.remove(future)
                    if not queue:
                        del self._waiting[tenant]
            raise

    def give(self) -> None:
        """End the current turn: the next tenant in rotation gets one, or the turn is free."""
        while self._waiting:
            tenant = next(iter(self._waiting))
            queue = self._waiting.pop(tenant)
            future = queue.popleft()
            if queue:
                self._waiting[tenant] = queue  # back of the rotation
            if not future.done():
                future.set_result(None)
                return
        self._held = False

    @asynccontextmanager
    async def turn(self, tenant: str | None) -> AsyncIterator[None]:
        """``async with turns.turn(namespace):`` one slice of work."""
        await self.take(tenant)
        try:
            yield
        finally:
            self.give()


#: The process's turns: every assessor judges under it, so fairness spans them all
#: (the webhook keeps one assessor per credential set).
TURNS = FairTurns()
