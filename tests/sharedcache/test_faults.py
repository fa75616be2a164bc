"""A shared tier that dies, hangs or lies: lookups still answer, and answer right.

Against a real redis-server killed mid-run, a real socket that never answers, and
entries written straight into the real database behind the client's back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

from support.faulty_proxy import FaultyProxy
from support.redis_server import RedisServer, SilentServer, start_redis
from support.registry import RegistryProcess

from controller.reference import parse
from controller.registry.cache import SharedKey
from controller.sharedcache import entries
from controller.sharedcache.breaker import Breaker
from controller.sharedcache.tier import RedisTier

from .conftest import MakeReplica, MakeTier
from .test_sharing import look_up, push_two_platforms


def set_raw(server: RedisServer, name: str, blob: bytes) -> None:
    assert server.command("SET", name, blob, "PX", "60000").startswith(b"+OK")


def sealed(tier: RedisTier, key: SharedKey, value: bytes, *, keys: entries.Keys | None = None,
           now: float | None = None, ttl: float = 60.0, name: str | None = None) -> tuple[str, bytes]:
    """An entry for ``key`` as a writer with ``keys`` (default: the tier's own) would write it."""
    where = name if name is not None else tier.name(key)
    blob = entries.seal(keys or tier.keys, where, value, now=time.time() if now is None else now, ttl=ttl)
    return tier.name(key), blob


async def test_redis_killed_mid_run_fails_no_lookup_and_the_fallback_is_counted(
    registry: RegistryProcess, proxy: FaultyProxy, tmp_path: Path,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        names = []
        for i in range(6):
            digest = push_two_platforms(registry, f"{unique_repo}-{i}")
            names.append((f"{proxy.host}/{unique_repo}-{i}:v1", digest))
        tier = make_tier(server.url)
        client = make_replica(proxy, tier)
        for name, digest in names[:2]:
            assert (await look_up(client, name))[0] == digest
        assert tier.stats.writes > 0 and sum(tier.stats.fallbacks.values()) == 0

        server.kill()  # SIGKILL: no goodbye on the connections
        slowest = 0.0
        for name, digest in names[2:]:
            started = time.monotonic()
            assert (await look_up(client, name))[0] == digest  # every lookup answers, from the registry
            slowest = max(slowest, time.monotonic() - started)
        assert tier.stats.fallbacks["error"] + tier.stats.fallbacks["timeout"] >= 3
        assert tier.breaker.is_open
        assert tier.stats.fallbacks["open"] > 0  # then not asked at all
        assert slowest < 2.0
    finally:
        server.kill()


async def test_a_database_that_never_answers_costs_at_most_its_timeout_then_nothing(
    registry: RegistryProcess, proxy: FaultyProxy,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    silent = SilentServer()
    try:
        digest = push_two_platforms(registry, unique_repo)
        tier = make_tier(silent.url, timeout=0.05)
        client = make_replica(proxy, tier)
        started = time.monotonic()
        assert (await look_up(client, f"{proxy.host}/{unique_repo}:v1"))[0] == digest
        took = time.monotonic() - started
        assert tier.stats.fallbacks["timeout"] == tier.breaker.threshold  # three calls waited 50 ms ...
        assert tier.stats.fallbacks["open"] > 0  # ... and no call after them did
        assert tier.breaker.is_open
        assert took < 1.0  # three timeouts and the registry's answers

        # the breaker open: a lookup pays nothing for the tier
        other = push_two_platforms(registry, f"{unique_repo}-2")
        timeouts = tier.stats.fallbacks["timeout"]
        assert (await look_up(client, f"{proxy.host}/{unique_repo}-2:v1"))[0] == other
        assert tier.stats.fallbacks["timeout"] == timeouts
    finally:
        silent.close()


async def test_the_tier_answers_again_once_the_database_is_back(
    registry: RegistryProcess, proxy: FaultyProxy, tmp_path: Path,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    server = start_redis(tmp_path / "redis")
    port = server.port
    server.kill()
    digest = push_two_platforms(registry, unique_repo)
    tier = make_tier(server.url)
    tier.breaker = Breaker(cooldown=0.05)
    client = make_replica(proxy, tier)
    assert (await look_up(client, f"{proxy.host}/{unique_repo}:v1"))[0] == digest
    assert tier.breaker.is_open

    revived = start_redis(tmp_path / "revived", port=port)
    try:
        deadline = time.monotonic() + 5
        while not await tier.ping():
            assert time.monotonic() < deadline, "the breaker never let a probe through"
            await asyncio.sleep(0.06)
        assert not tier.breaker.is_open
    finally:
        revived.kill()


async def test_a_forged_tag_entry_is_ignored_and_the_registry_answers(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """Someone who can write to the database, not holding the key, points a tag elsewhere."""
    right = push_two_platforms(registry, unique_repo)
    wrong = push_two_platforms(registry, f"{unique_repo}-evil")
    tier = make_tier(redis_server.url)
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    key: SharedKey = ("tag", ref.registry, ref.repository, "v1", "anonymous")
    forger = entries.Keys.derive(b"not the installation's key, but long enough to use")
    set_raw(redis_server, *sealed(tier, key, wrong.encode(), keys=forger))

    client = make_replica(proxy, tier)
    assert await client.resolve_digest(ref) == right
    assert tier.stats.rejected["mac"] == 1
    assert proxy.count(r"/manifests/v1$") == 1  # asked the registry instead


async def test_an_entry_copied_under_another_name_does_not_verify(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """A genuine entry (another repository's tag, signed with the real key) replayed under
    this tag's name: the MAC covers the name, so it is refused."""
    right = push_two_platforms(registry, unique_repo)
    other = push_two_platforms(registry, f"{unique_repo}-other")
    tier = make_tier(redis_server.url)
    writer = make_replica(proxy, tier)
    assert (await look_up(writer, f"{proxy.host}/{unique_repo}-other:v1"))[0] == other
    await writer.cache.settle()
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    theirs = tier.name(("tag", ref.registry, f"{ref.repository}-other", "v1", "anonymous"))
    ours = tier.name(("tag", ref.registry, ref.repository, "v1", "anonymous"))
    genuine = redis_server.command("GET", theirs)
    blob = genuine.split(b"\r\n", 1)[1][: -len(b"\r\n")]  # the bulk string's bytes
    set_raw(redis_server, ours, blob)

    reader = make_tier(redis_server.url)
    fresh = make_replica(proxy, reader)
    assert await fresh.resolve_digest(ref) == right
    assert reader.stats.rejected["mac"] == 1


async def test_a_body_that_does_not_hash_to_its_digest_is_ignored_even_when_signed(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """Even a holder of the key (a compromised replica) cannot change content: every body
    read back is hashed against its digest, and the registry's bytes are used instead."""
    digest = push_two_platforms(registry, unique_repo)
    tier = make_tier(redis_server.url)
    index = json.loads(registry.pusher._call("GET", f"/v2/{unique_repo}/manifests/{digest}", unique_repo,
                                             headers={"Accept": "application/vnd.oci.image.index.v1+json"})[2])
    index["manifests"] = index["manifests"][:1]  # one platform fewer: another answer
    lie = b"application/vnd.oci.image.index.v1+json\n" + json.dumps(index).encode()
    assert hashlib.sha256(lie).hexdigest() != digest
    set_raw(redis_server, *sealed(tier, ("content", "manifest", digest), lie))

    client = make_replica(proxy, tier)
    _, platforms = await look_up(client, f"{proxy.host}/{unique_repo}:v1")
    assert platforms == ["linux/amd64", "linux/arm64"]  # the real index, from the registry
    assert tier.stats.rejected["digest"] == 1
    assert proxy.count(rf"/manifests/{digest}$") == 1


async def test_a_replayed_entry_past_its_signed_lifetime_is_refused(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """A tag answer recorded an hour ago, written back with a long database TTL: the
    lifetime it was signed with (30 s), not the database's, decides."""
    right = push_two_platforms(registry, unique_repo)
    old = push_two_platforms(registry, f"{unique_repo}-old")
    tier = make_tier(redis_server.url)
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    key: SharedKey = ("tag", ref.registry, ref.repository, "v1", "anonymous")
    set_raw(redis_server, *sealed(tier, key, old.encode(), now=time.time() - 3600, ttl=30.0))

    client = make_replica(proxy, tier)
    assert await client.resolve_digest(ref) == right
    assert tier.stats.rejected["expired"] == 1


async def test_a_forged_lock_does_not_make_a_replica_wait(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """Locks are signed too: one written by someone without the key is not waited for."""
    digest = push_two_platforms(registry, unique_repo)
    tier = make_tier(redis_server.url, wait=5.0)
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    flight: SharedKey = ("flight", "digest", ref.registry, ref.repository, "v1", "anonymous")
    set_raw(redis_server, tier.name(flight), b"locked by someone else")

    client = make_replica(proxy, tier)
    started = time.monotonic()
    assert await client.resolve_digest(ref) == digest
    assert time.monotonic() - started < 1.0
    assert tier.stats.rejected["malformed"] == 1


async def test_a_value_over_the_bound_is_ignored(
    redis_server: RedisServer, make_tier: MakeTier,
) -> None:
    """64 MiB under an entry's name: read up to the bound (GETRANGE), and ignored."""
    tier = make_tier(redis_server.url, timeout=2.0)
    key: SharedKey = ("content", "manifest", "sha256:" + "0" * 64)
    name = tier.name(key)
    assert redis_server.command("SETRANGE", name, str(64 * 1024 * 1024 - 1), "x").startswith(b":")
    assert await tier.get(key) is None
    assert tier.stats.rejected["malformed"] == 1
    assert tier.max_value < 5 * 1024 * 1024
