"""A small forward proxy, run as its own process: ``CONNECT`` tunnels and absolute-URI requests.

What a corporate ``HTTPS_PROXY`` does, reduced to the protocol: ``CONNECT
host:port`` opens a tunnel (TLS goes through it untouched), ``GET
http://host:port/path`` is forwarded in origin form. Every request line and
whether it carried ``Authorization`` is appended to a log file (one JSON object
per line) so tests can see what went through the proxy and what did not.

``python forward_proxy.py LOGFILE`` prints the port it listens on, then serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        with_close(writer)


def with_close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Path) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        with_close(writer)
        return
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = [h for h in lines[1:] if h]
    with log.open("a") as out:
        out.write(json.dumps({
            "method": method, "target": target,
            "authorization": any(h.lower().startswith("authorization:") for h in headers),
        }) + "\n")
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            with_close(writer)
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        return
    # Absolute URI: http://host:port/path → origin form, one request per connection.
    rest = target.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        with_close(writer)
        return
    kept = [h for h in headers if not h.lower().startswith(("connection:", "proxy-connection:", "keep-alive:"))]
    request = f"{method} /{path} {version}\r\n" + "\r\n".join([*kept, "Connection: close"]) + "\r\n\r\n"
    up_writer.write(request.encode("latin-1"))
    length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
    if length:
        up_writer.write(await reader.readexactly(length))
    await up_writer.drain()
    response = await up_reader.read()  # Connection: close → the whole answer, then EOF
    head, _, body = response.partition(b"\r\n\r\n")
    out_lines = [h for h in head.split(b"\r\n") if not h.lower().startswith((b"connection:", b"keep-alive:"))]
    writer.write(b"\r\n".join([*out_lines, b"Connection: close"]) + b"\r\n\r\n" + body)
    await writer.drain()
    with_close(up_writer)
    with_close(writer)


async def _serve(log: Path) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, log), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class ForwardProxy:
    """The proxy process; ``url`` for ``HTTPS_PROXY``, ``seen()`` for what went through it."""

    log: Path
    process: subprocess.Popen[str] | None = None
    port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.log)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("forward proxy did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def seen(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def clear(self) -> None:
        if self.log.exists():
            os.truncate(self.log, 0)


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))
