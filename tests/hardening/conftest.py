"""The real webhook (HTTPS, real app) in front of a real registry, for the hardening suite.

Each test starts its own webhook with its own :class:`RegistryClient` (so no
cached answer or remembered failure crosses tests); helpers live in
:mod:`support.hardening`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.hardening import CLIENT_TIMEOUT, BlackHole, Listener, listen_on
from support.webhook import Certs, Webhook, fill_store

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.policy.store import PolicyStore
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.tls.serving import CertReloader, self_signed
from controller.webhook.app import make_app
from controller.webhook.listener import listen
from controller.webhook.metrics import Metrics
from controller.webhook.settings import Settings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pair = self_signed(["localhost", "127.0.0.1"])
    directory = tmp_path_factory.mktemp("hardening-tls")
    ca, cert, key = pair.write(directory)
    return Certs(pair, directory, ca, cert, key)


@pytest_asyncio.fixture
async def start_webhook(certs: Certs) -> AsyncIterator[Any]:
    """``await start_webhook(hosts=[RegistryHost...], docs=[...])`` → (Webhook, RegistryClient).

    The client is configured with exactly ``hosts`` (nothing else is explicit)
    and ``client_timeout=CLIENT_TIMEOUT`` unless given.
    """
    started: list[tuple[Webhook, RegistryClient]] = []

    async def start(
        *,
        hosts: list[RegistryHost],
        docs: list[Mapping[str, Any]],
        client_timeout: float = CLIENT_TIMEOUT,
        settings: Settings | None = None,
        cache: RegistryCache | None = None,
    ) -> tuple[Webhook, RegistryClient]:
        client = RegistryClient(RegistryConfig.of(*hosts, timeout=client_timeout), cache=cache)
        store = PolicyStore()
        fill_store(store, list(docs))
        metrics = Metrics(snapshot=lambda: store.snapshot)
        settings = settings or Settings(host="127.0.0.1", port=0)
        app = make_app(
            store=store,
            assessor=Assessor(LineageResolver(client), bounds=settings.bounds),
            settings=settings,
            metrics=metrics,
        )
        reloader = CertReloader(certs.cert, certs.key)
        runner, _ = await listen(app, settings, reloader.context)  # the bounded listener, as served
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=certs.client_context(), limit=0))
        port = runner.addresses[0][1]
        hook = Webhook(f"https://127.0.0.1:{port}", session, store, metrics, reloader, runner)
        started.append((hook, client))
        return hook, client

    yield start
    for hook, client in started:
        await hook.session.close()
        await hook.runner.cleanup()
        await client.close()


# --------------------------------------------------------------------------- witnesses


@pytest.fixture
def listener_127_0_0_2() -> Iterator[Listener]:
    listener = listen_on("127.0.0.2")
    yield listener
    listener.close()


@pytest.fixture
def listener_localhost() -> Iterator[Listener]:
    listener = listen_on("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def listener_ipv6() -> Iterator[Listener]:
    listener = listen_on("::1", socket.AF_INET6)
    yield listener
    listener.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()
