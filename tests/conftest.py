"""Shared fixtures: real docker-registry processes, a token server, a faulty proxy.

The registry variants are session-scoped (each starts once, in ~50 ms). Tests
push their own images under unique repository names (``unique_repo``), so
they never depend on each other's state. When ``docker-registry`` is missing
the registry tests are skipped locally and FAIL under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from support.credentials import IDENTITY_TOKEN, TLS_USER, TOKEN_USER
from support.faulty_proxy import FaultyProxy
from support.preconditions import unavailable
from support.registry import INSTALL_HINT, RegistryProcess, registry_binary, start_registry
from support.token_server import TokenServer

from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost


def require_registry_binary(*, htpasswd: bool = False) -> None:
    """Skip (locally) or fail (CI=true) when the real registry (or htpasswd) is not installed."""
    missing = []
    if registry_binary() is None:
        missing.append(f"docker-registry is not installed: {INSTALL_HINT}")
    if htpasswd and shutil.which("htpasswd") is None:
        missing.append("htpasswd is not installed: apt-get install apache2-utils")
    if not missing:
        return
    unavailable("; ".join(missing))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Plain-HTTP registry: configure it with ``insecure=True``."""
    require_registry_binary()
    reg = start_registry(tmp_path_factory.mktemp("registry-plain"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """TLS + htpasswd basic auth; ``.ca_file``, ``.username``, ``.password``."""
    require_registry_binary(htpasswd=True)
    reg = start_registry(tmp_path_factory.mktemp("registry-tls"), tls=True, htpasswd=TLS_USER)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("token-server"),
        users=dict([TOKEN_USER]),
        refresh_tokens={IDENTITY_TOKEN: TOKEN_USER[0]},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RegistryProcess]:
    """Bearer-token registry (plain HTTP) trusting ``token_server``.

    Anonymous pull works under ``public/``; ``alice`` pulls everything but
    ``secret/``. Configure both ``token_registry.host`` and ``token_server.host``.
    """
    require_registry_binary()
    reg = start_registry(tmp_path_factory.mktemp("registry-token"), token_server=token_server)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def _proxy_server(registry: RegistryProcess) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(registry.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(_proxy_server: FaultyProxy) -> Iterator[FaultyProxy]:
    """The faulty proxy in front of ``registry``, with no faults and zero counts."""
    _proxy_server.clear()
    yield _proxy_server
    _proxy_server.clear()


@pytest.fixture(scope="session")
def _token_proxy_server(token_registry: RegistryProcess) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(token_registry.url, storage_authorization=token_registry._auth).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def token_proxy(_token_proxy_server: FaultyProxy) -> Iterator[FaultyProxy]:
    """A faulty proxy in front of ``token_registry``; serves ``/_storage/...`` as blob storage."""
    _token_proxy_server.clear()
    yield _token_proxy_server
    _token_proxy_server.clear()


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (lower-case, grammar-safe)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60] or "t"
    suffix = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    return f"t/{name}-{suffix}"


MakeClient = Callable[..., RegistryClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``make_client(*hosts, cache=None, **config)`` → a RegistryClient closed at teardown.

    ``hosts`` are :class:`RegistryHost` entries or registry/proxy objects with
    ``.host`` (configured ``insecure=True``, i.e. plain HTTP, explicitly allowed).
    """
    clients: list[RegistryClient] = []

    def make(*hosts: Any, cache: RegistryCache | None = None, **config: Any) -> RegistryClient:
        entries = [h if isinstance(h, RegistryHost) else RegistryHost(h.host, insecure=True) for h in hosts]
        client = RegistryClient(RegistryConfig.of(*entries, **config), cache=cache)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def registry_client(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    """A client for the plain ``registry`` (insecure, explicitly configured), fresh cache."""
    async with RegistryClient(RegistryConfig.of(RegistryHost(registry.host, insecure=True))) as client:
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests using a registry fixture with ``registry`` so ``-m 'not registry'`` works."""
    wanted = {"registry", "tls_registry", "token_registry", "proxy", "token_proxy", "registry_client"}
    for item in items:
        if wanted & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)
