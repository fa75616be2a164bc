"""The HTTPS listener: aiohttp's request handling behind bounds no client can stretch.

aiohttp's own site (``web.TCPSite``) has no header timeout, no TLS handshake
timeout it lets us set, and no limit on connections: 300 TLS connections that
trickle one header byte at a time were all held for more than 100 seconds,
and each holds memory. So the webhook listens through :class:`BoundedSite`,
which opens the server socket itself and puts a :class:`_Guard` in front of
each connection's aiohttp ``RequestHandler``:

* **Handshake.** The TLS handshake must finish within
  :attr:`~controller.webhook.settings.Settings.handshake_timeout` (asyncio closes the
  socket otherwise).
* **Headers.** A new connection, and a kept-alive one once the first byte of
  its next request arrives, must deliver the whole request head within
  :attr:`~controller.webhook.settings.Settings.header_timeout`; else it is closed
  (Go's ``ReadHeaderTimeout``). The body is bounded by the review handler
  (``body_timeout``), the idle time between requests by ``idle_timeout``.
* **Connections.** At most :attr:`~controller.webhook.settings.Settings.max_connections`
  at once; one more is closed as soon as its handshake completes. The
  apiserver then applies the webhook's ``failurePolicy`` to the call that
  used it, as it does for any connection it cannot use.
* **Memory per connection.** asyncio gives every TLS connection a read buffer
  of ``SSLProtocol.max_size`` bytes, zero-filled when the connection opens:
  256 KiB by default, so the 512 connections allowed held 128 MiB before one
  byte was read (a trickling client's 512 connections took the process from
  55 to 230 MiB of its 384 MiB). :data:`TLS_READ_BUFFER` (64 KiB, four TLS
  records) is set before listening: the same 512 connections cost ~60 MiB.

Closures are counted in ``baseguard_connections_closed_total{reason}``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.errors import InputError
from controller.webhook.app import METRICS

if TYPE_CHECKING:
    from collections.abc import Callable

    from controller.webhook.settings import Settings

log = logging.getLogger("baseguard.webhook")

#: The read buffer each TLS connection gets (asyncio's ``SSLProtocol.max_size``,
#: 256 KiB by default, process-wide: the registry client's connections share it).
TLS_READ_BUFFER = 64 * 1024

SLOW_HEADERS = "slow-headers"
OVER_LIMIT = "over-limit"


class Connections:
    """The connections of one listener: how many are open, and a counter of closures."""

    def __init__(
        self, *, limit: int, header_timeout: float, closed: Callable[[str], None] | None = None
    ) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.open = 0
        self._closed = closed or (lambda reason: None)

    def closed(self, reason: str) -> None:
        self._closed(reason)


class _Guard(asyncio.Protocol):
    """One connection: aiohttp's ``RequestHandler`` behind a connection limit and a header clock.

    Reads two attributes of the handler that aiohttp does not document:
    ``_request_count`` (request heads parsed so far) and ``_waiter`` (set
    while the handler waits for the next request). The transport tests
    fail if a new aiohttp changes them.
    """

    def __init__(self, inner: Any, connections: Connections) -> None:
        self.inner = inner
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.heads = 0

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        connections = self.connections
        if connections.open >= connections.limit:
            connections.closed(OVER_LIMIT)
            transport.abort()
            return
        connections.open += 1
        self.counted = True
        self.inner.connection_made(transport)
        self._arm()  # a new connection must send its first request's head in time

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        inner.data_received(data)
        heads = inner._request_count
        if heads != self.heads:  # a whole head arrived: the clock stops
            self.heads = heads
            self._disarm()
        elif self.timer is None and inner._waiter is not None and not inner._waiter.done():
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def eof_received(self) -> bool | None:
        if not self.counted:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.counted:
            self.counted = False
            self.connections.open -= 1
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.counted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.counted:
            self.inner.resume_writing()

    # ---- the header clock

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.connections.header_timeout, self._expire, self.heads)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self, heads: int) -> None:
        self.timer = None
        if self.inner._request_count != heads or self.transport is None:
            return
        self.connections.closed(SLOW_HEADERS)
        log.debug("closed a connection that sent no request head in time")
        self.transport.abort()


class BoundedSite(web.BaseSite):
    """A TCP+TLS site whose connections go through :class:`_Guard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        settings: Settings,
        connections: Connections,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=settings.backlog)
        self._host = host
        self._port = port
        self._settings = settings
        self.connections = connections

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        connections = self.connections

        def factory() -> _Guard:
            return _Guard(server(), connections)

        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._settings.handshake_timeout,
            backlog=self._backlog,
            reuse_address=True,
        )


async def listen(
    app: web.Application,
    settings: Settings,
    ssl_context: ssl.SSLContext,
    *,
    closed: Callable[[str], None] | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` over HTTPS on ``settings.host``/``port``: (its ``AppRunner``, the bound port).

    Shared by ``serve`` and ``run``. ``closed`` is told the reason of each
    connection the bounds close (by default the app's metrics count it). Raises :class:`InputError` when the port
    cannot be bound.
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        keepalive_timeout=settings.idle_timeout,
        # after an answer given before the body was read (413, 408), aiohttp reads what
        # is left of it before closing, for up to this long (10 s by default)
        lingering_time=1.0,
    )
    # asyncio reads the buffer size from this class attribute when a connection opens; it
    # has no parameter for it (create_server, start_tls and aiohttp pass none).
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    await runner.setup()
    if closed is None and METRICS in app:
        closed = app[METRICS].connection_closed
    connections = Connections(
        limit=settings.max_connections, header_timeout=settings.header_timeout, closed=closed
    )
    site = BoundedSite(
        runner,
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        settings=settings,
        connections=connections,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise InputError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    return runner, _bound_port(runner, settings.port)


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default
