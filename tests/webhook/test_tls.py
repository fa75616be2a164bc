"""Certificate reloads under load, and mutual TLS, over real sockets to the real listener."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from support.webhook import Certs, default_docs, fill_store

from controller.assess import Assessor
from controller.policy.store import PolicyStore
from controller.tls.serving import CertReloader, self_signed
from controller.webhook.app import make_app
from controller.webhook.listener import listen
from controller.webhook.settings import Settings

Serve = Callable[..., Any]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(reloader, **app_kwargs)`` → the bound port of a webhook using ``reloader``."""
    runners: list[Any] = []

    async def start(reloader: CertReloader, **app_kwargs: Any) -> int:
        store = PolicyStore()
        fill_store(store, default_docs())
        settings = Settings(host="127.0.0.1", port=0)
        app = make_app(store=store, assessor=Assessor(None), settings=settings, **app_kwargs)
        runner, port = await listen(app, settings, reloader.context)
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


def serial(pem: bytes) -> int:
    from cryptography import x509

    return int(x509.load_pem_x509_certificate(pem).serial_number)


def handshakes(port: int, trust: ssl.SSLContext, stop: threading.Event, seen: dict[str, Any]) -> None:
    """Blocking handshakes in a loop, as a busy apiserver makes them; counts what fails."""
    while not stop.is_set():
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                trust.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                cert = tls.getpeercert()
                assert cert is not None
                with seen["lock"]:
                    seen["ok"] += 1
                    seen["serials"].add(int(cert["serialNumber"], 16))
        except (OSError, ssl.SSLError) as exc:
            with seen["lock"]:
                seen["failed"].append(repr(exc))


async def test_reloads_under_concurrent_handshakes_fail_none(
    serve: Serve, certs: Certs, tmp_path: Path
) -> None:
    """Forty reloads, alternating two pairs, while four clients handshake non-stop."""
    other = self_signed(["localhost", "127.0.0.1"])
    pairs = [certs.pair, other]
    pairs[0].write(tmp_path)
    reloader = CertReloader(tmp_path / "tls.crt", tmp_path / "tls.key")
    port = await serve(reloader)
    trust = ssl.create_default_context(cadata=certs.pair.ca_pem.decode() + other.ca_pem.decode())
    seen: dict[str, Any] = {"ok": 0, "failed": [], "serials": set(), "lock": threading.Lock()}
    stop = threading.Event()
    clients = [
        threading.Thread(target=handshakes, args=(port, trust, stop, seen)) for _ in range(4)
    ]
    for client in clients:
        client.start()

    def rotate() -> None:
        for i in range(40):
            pair = pairs[(i + 1) % 2]
            (tmp_path / "tls.key").write_bytes(pair.key_pem)
            (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
            assert reloader.check() is True
            stop.wait(0.02)

    try:
        await asyncio.to_thread(rotate)  # in a worker thread, as CertReloader.watch does
    finally:
        stop.set()
        await asyncio.to_thread(lambda: [c.join(10) for c in clients])
    assert reloader.reloads == 40
    assert seen["failed"] == []
    assert seen["ok"] > 40
    assert seen["serials"] == {serial(p.cert_pem) for p in pairs}
