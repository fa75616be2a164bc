"""The webhook's one way to start: frozen settings and collaborators in, a listening server out.

``baseguard serve`` and ``baseguard run`` build their collaborators (a policy
store filled from files or from kopf's watch, an assessor, metrics, a TLS
context, perhaps a reviewer that knows namespaces and pull secrets) and hand
them here, the way ``kopf.operator(registry=, settings=, memo=)`` takes its
parts. Nothing here reads arguments, files or the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.errors import InputError
from controller.webhook.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

    from controller.assess import Assessor
    from controller.policy.store import PolicyStore
    from controller.webhook.handlers import Reviewer
    from controller.webhook.metrics import Metrics

log = logging.getLogger("baseguard.webhook.server")

Closer = Callable[[], Awaitable[None]]


@dataclass
class Server:
    """A started webhook: its runner, bound port, background tasks and what to close after."""

    runner: web.AppRunner
    port: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)

    async def close(self) -> None:
        """Stop the tasks, drain in-flight reviews (``shutdown_timeout``), then run the closers."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.cleanup()
        for closer in reversed(self.closers):
            await closer()


async def start(
    settings: Settings,
    *,
    store: PolicyStore,
    assessor: Assessor,
    metrics: Metrics,
    ssl_context: ssl.SSLContext,
    reviewer: Reviewer | None = None,
    tasks: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    closers: Sequence[Closer] = (),
) -> Server:
    """Serve ``/validate``, ``/mutate``, the probes and ``/metrics`` on ``settings.host``/``port``.

    ``tasks`` are started once the port is bound and cancelled by
    :meth:`Server.close`; ``closers`` run after the drain (last first), and
    also when the port cannot be bound (:class:`InputError`), so a caller
    never leaks a registry client.
    """
    from controller.webhook.app import make_app
    from controller.webhook.listener import listen

    app = make_app(
        store=store, assessor=assessor, settings=settings, metrics=metrics, reviewer=reviewer
    )
    try:
        runner, port = await listen(app, settings, ssl_context)
    except InputError:
        for closer in reversed(closers):
            await closer()
        raise
    started: list[asyncio.Task[None]] = [asyncio.create_task(task()) for task in tasks]
    return Server(runner=runner, port=port, tasks=started, closers=list(closers))
