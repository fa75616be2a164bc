"""A reverse proxy in front of a real registry that misbehaves on request.

Each fault applies to the requests whose path matches a regular expression
(``re.search``), optionally only to one method and only ``times`` times. The
proxy runs its own event loop in a thread, so a test's client loop and the
proxy never block each other, and sync fixtures can own it. Every request is
recorded (method, path, headers) so tests can count round trips and check
which headers arrived.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
MiB = 1024 * 1024


@dataclass
class Fault:
    """What to do instead of (or on top of) forwarding.

    kinds: ``delay`` (before headers), ``slow_body`` (half the body, pause, the
    rest), ``reset`` (abort the connection), ``status`` (answer ``status`` with
    ``headers``/``body``), ``corrupt`` (forward with a changed body, headers
    kept), ``oversized`` (5 MiB with Content-Length), ``oversized_chunked`` (5 MiB,
    chunked), ``endless`` (a chunked body that never ends), ``trickle`` (an
    endless body, one small chunk per ``seconds``), ``redirect_loop``,
    ``redirect`` (to ``location``), ``unauthorized_loop`` (401 + Bearer challenge
    to the proxy's own ``/_token``, whose tokens are never accepted).
    """

    kind: str
    pattern: str = ""
    method: str | None = None
    seconds: float = 0.0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    location: str = ""
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.times is not None and self.times <= 0:
            return False
        return re.search(self.pattern, path) is not None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    host: str
    headers: dict[str, str]


class FaultyProxy:
    def __init__(
        self,
        upstream: str,
        *,
        upstream_ssl: ssl.SSLContext | None = None,
        storage_authorization: Callable[[str], str | None] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._upstream_ssl = upstream_ssl
        self._storage_authorization = storage_authorization
        self._faults: list[Fault] = []
        self._seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most requests handled at once since clear()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FaultyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("faulty proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        fut.result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._startup())
        self._ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)  # handlers still sleeping in a fault
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self._session = ClientSession(
            connector=TCPConnector(ssl=self._upstream_ssl or True, force_close=True),
            auto_decompress=False,
            timeout=ClientTimeout(total=30),
        )

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- faults --------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fault(self, kind: str, pattern: str = "", **kwargs: Any) -> Fault:
        return self.add(Fault(kind, pattern, **kwargs))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()
            self.max_in_flight = self.in_flight

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # -- counting ------------------------------------------------------------------
    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def count(self, pattern: str = "", *, method: str | None = None) -> int:
        return sum(
            1
            for s in self.seen
            if (method is None or s.method == method) and re.search(pattern, s.path)
        )

    # -- handling ------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._dispatch(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        with self._lock:
            self._seen.append(
                Seen(request.method, path, request.host, {k: v for k, v in request.headers.items()})
            )
        if request.path == "/_token":
            return web.json_response({"token": "never-accepted", "expires_in": 300})
        if request.path.startswith("/_storage/"):
            return await self._storage(request)
        fault = self._take_fault(request.method, path)
        if fault is None:
            return await self._forward(request)
        kind = fault.kind
        if kind == "delay":
            await asyncio.sleep(fault.seconds)
            return await self._forward(request)
        if kind == "reset":
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                transport.abort()
            raise asyncio.CancelledError
        if kind == "status":
            return web.Response(status=fault.status, headers=fault.headers, body=fault.body)
        if kind == "redirect_loop":
            return web.Response(status=307, headers={"Location": str(request.url)})
        if kind == "redirect":
            return web.Response(status=307, headers={"Location": fault.location})
        if kind == "unauthorized_loop":
            challenge = (
                f'Bearer realm="{self.url}/_token",service="loop",'
                f'scope="repository:{_repository(request.path)}:pull"'
            )
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        if kind in ("oversized", "oversized_chunked", "endless", "trickle"):
            return await self._big(request, fault)
        status, headers, body = await self._upstream(request)
        if kind == "corrupt":
            body = fault.body or body + b"\n"
            return _response(request, status, headers, body)
        if kind == "slow_body":
            resp = web.StreamResponse(status=status, headers=_clean(headers))
            resp.content_length = len(body)
            await resp.prepare(request)
            half = len(body) // 2
            await resp.write(body[:half])
            await asyncio.sleep(fault.seconds)
            await resp.write(body[half:])
            await resp.write_eof()
            return resp
        raise ValueError(f"unknown fault kind {kind!r}")

    async def _big(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        resp = web.StreamResponse(status=200, headers=headers)
        if fault.kind == "oversized":
            resp.content_length = 5 * MiB
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        # Large writes: the endless body must reach the client's 4 MiB cap in a few
        # loop turns, or a loaded machine sees the client's timeout first.
        chunk = b" " * MiB
        try:
            if fault.kind in ("oversized", "oversized_chunked"):
                for _ in range(5 * MiB // len(chunk)):
                    await resp.write(chunk)
            elif fault.kind == "endless":
                while True:
                    await resp.write(chunk)
            else:
                await resp.write(b"{")
                while True:
                    await asyncio.sleep(fault.seconds)
                    await resp.write(b" ")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _upstream(self, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=data or None,
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                out["Content-Length"] = resp.headers["Content-Length"]
            return resp.status, out, body

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        status, headers, body = await self._upstream(request)
        return _response(request, status, headers, body)

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        """A stand-in for blob storage behind a 307: serves ``/_storage/<repo>/blobs/<digest>``."""
        assert self._session is not None
        rest = request.path[len("/_storage/") :]
        repo = rest.split("/blobs/")[0]
        headers = {}
        if self._storage_authorization is not None:
            value = self._storage_authorization(repo)
            if value:
                headers["Authorization"] = value
        async with self._session.get(f"{self.upstream}/v2/{rest}", headers=headers) as resp:
            body = await resp.read()
            return web.Response(status=resp.status, body=body, content_type="application/octet-stream")


def _repository(path: str) -> str:
    m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", path)
    return m.group(1) if m else "unknown"


def _clean(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def _response(request: web.Request, status: int, headers: dict[str, str], body: bytes) -> web.Response:
    if request.method == "HEAD":
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, headers=_clean(headers), body=body)
