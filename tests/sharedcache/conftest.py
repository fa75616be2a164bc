"""Fixtures of the shared-cache suite: a real redis-server, the HMAC key, tiers and clients on them.

The server is session-scoped (it starts in ~20 ms, but every test would pay it) and
emptied before each test; tests that kill a server start their own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.redis_server import RedisServer, require_redis, start_redis

from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.sharedcache import RedisTier, SharedCacheConfig, open_tier


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_server: RedisServer) -> RedisServer:
    """The session's redis-server, empty."""
    assert _redis_server.command("FLUSHALL").startswith(b"+OK")
    return _redis_server


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "hmac-key"
    path.write_bytes(os.urandom(48).hex().encode())
    return str(path)


MakeTier = Callable[..., RedisTier]


@pytest.fixture
async def make_tier(key_file: str) -> AsyncIterator[MakeTier]:
    """``make_tier(url, **config)`` → a tier (what one replica opens), closed at teardown."""
    tiers: list[RedisTier] = []

    def make(url: str, **config: Any) -> RedisTier:
        tier = open_tier(SharedCacheConfig(url=url, key_file=config.pop("key_file", key_file), **config))
        tiers.append(tier)
        return tier

    yield make
    for tier in tiers:
        await tier.close()


MakeReplica = Callable[..., RegistryClient]


@pytest.fixture
async def make_replica() -> AsyncIterator[MakeReplica]:
    """``make_replica(registry_or_proxy, tier, host=None)`` → a registry client with its own
    in-process cache on ``tier`` (what one replica has), closed at teardown."""
    clients: list[RegistryClient] = []

    def make(target: FaultyProxy | Any, tier: RedisTier | None, *, host: RegistryHost | None = None) -> RegistryClient:
        entry = host if host is not None else RegistryHost(target.host, insecure=True)
        client = RegistryClient(RegistryConfig.of(entry), cache=RegistryCache(shared=tier))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()

