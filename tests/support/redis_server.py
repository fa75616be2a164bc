"""A real ``redis-server`` (Debian's package) on 127.0.0.1, a free port and a temporary dir.

No persistence (``save ""``, no AOF): each server starts empty and leaves nothing
behind but its log. :func:`require_redis` skips locally and FAILS under ``CI``
when the binary is missing (``apt-get install redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.preconditions import unavailable
from support.registry import free_port

INSTALL_HINT = "apt-get install redis-server"


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def require_redis() -> None:
    if redis_binary() is None:
        unavailable(f"redis-server is not installed: {INSTALL_HINT}")


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, *args: str | bytes) -> bytes:
        """One command over a plain socket (RESP), for tests that write behind the client's back."""
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        if self.password is not None:
            parts_auth = [b"AUTH", self.password.encode()]
            request = _resp(parts_auth) + _resp(parts)
        else:
            request = _resp(parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        if self.password is not None:
            assert data.startswith(b"+OK\r\n"), data
            data = data[len(b"+OK\r\n") :]
        return data

    def stop(self) -> None:
        """SIGTERM, or SIGKILL when it does not go (``kill()`` is the sudden death)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def _resp(parts: list[bytes]) -> bytes:
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        out += b"$%d\r\n%s\r\n" % (len(part), part)
    return out


def start_redis(
    workdir: Path, *, password: str | None = None, port: int | None = None, ready_timeout: float = 10.0
) -> RedisServer:
    """Start a server (on ``port``, e.g. a killed one's, else a free one) and wait for its PONG."""
    exe = redis_binary()
    if exe is None:
        raise RuntimeError(f"redis-server not found: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        exe, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
        "--logfile", str(workdir / "redis.log"),
    ]
    if password is not None:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(port, workdir, process, password)
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}:\n{server.log}")
        try:
            if server.command("PING").startswith(b"+PONG"):
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"redis-server not ready within {ready_timeout}s:\n{server.log}")
        time.sleep(0.02)


class SilentServer:
    """A TCP server that never answers: a database that hangs. The kernel completes each
    connection (the listen backlog) and takes the commands, and no reply ever comes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.sock.close()
