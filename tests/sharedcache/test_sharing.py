"""Replicas sharing one real redis-server: one cold lookup for all, a warm restart, and
the requests counted where the registry sees them (the faulty proxy in front of the
real docker-registry)."""

from __future__ import annotations

import asyncio

import pytest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.redis_server import RedisServer
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost
from controller.registry.media import ImageIndex

from .conftest import MakeReplica, MakeTier


def push_two_platforms(registry: RegistryProcess, repository: str, tag: str = "v1") -> str:
    """An index of two images (amd64, arm64), tagged: the index's digest."""
    amd = registry.push_image(repository, None, [layer({"etc/os-release": f"ID={repository}\n"})])
    arm = registry.push_image(
        repository, None, [layer({"etc/os-release": f"ID={repository}-arm\n"})], arch="arm64"
    )
    return registry.push_index(repository, tag, [(amd, "linux/amd64"), (arm, "linux/arm64")]).digest


async def look_up(client: RegistryClient, name: str) -> tuple[str, list[str]]:
    """What a lineage lookup asks of one image: the tag, the index, each image, each config."""
    ref = parse(name)
    digest = await client.resolve_digest(ref)
    top = await client.fetch_manifest(ref, digest)
    assert isinstance(top.manifest, ImageIndex)
    platforms = []
    for desc in top.manifest.manifests:
        image = await client.fetch_manifest(ref, desc.digest)
        config = await client.fetch_config(ref, image.manifest)  # type: ignore[arg-type]
        platforms.append(f"{config.os}/{config.architecture}")
    return top.digest, sorted(platforms)


async def test_three_replicas_make_the_registry_requests_of_one(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    alone_digest = push_two_platforms(registry, f"{unique_repo}-alone")
    shared_digest = push_two_platforms(registry, f"{unique_repo}-shared")

    one = make_replica(proxy, None)
    assert await look_up(one, f"{proxy.host}/{unique_repo}-alone:v1") == (
        alone_digest, ["linux/amd64", "linux/arm64"]
    )
    alone = proxy.count()
    assert alone >= 6  # the tag, the index, two images, two configs

    proxy.clear()
    tiers = [make_tier(redis_server.url, wait=3.0) for _ in range(3)]  # a loaded CI machine
    replicas = [make_replica(proxy, tier) for tier in tiers]
    answers = await asyncio.gather(
        *(look_up(r, f"{proxy.host}/{unique_repo}-shared:v1") for r in replicas)
    )
    assert answers == [(shared_digest, ["linux/amd64", "linux/arm64"])] * 3
    assert proxy.count() == alone  # three replicas, cold: the requests of one
    # Each document claimed by one replica; a claim may also be won by a waiter just after
    # the fetcher let go, which then finds the answer instead of asking again.
    assert sum(t.stats.claims["led"] for t in tiers) >= alone
    assert sum(t.stats.claims["busy"] for t in tiers) > 0  # the others waited for it
    assert sum(sum(t.stats.fallbacks.values()) for t in tiers) == 0


async def test_a_restarted_replica_answers_warm_with_no_registry_request(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    digest = push_two_platforms(registry, unique_repo)
    name = f"{proxy.host}/{unique_repo}:v1"
    before = make_replica(proxy, make_tier(redis_server.url))
    first = await look_up(before, name)
    await before.close()  # the rollout: this replica goes, its writes have landed
    assert proxy.count() >= 6

    proxy.clear()
    after = make_replica(proxy, make_tier(redis_server.url))  # a new process: nothing in memory
    assert await look_up(after, name) == first == (digest, ["linux/amd64", "linux/arm64"])
    assert proxy.count() == 0
    assert after.stats.total == 0


async def test_tag_answers_and_failures_are_not_shared_across_credential_sets(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    """Keyed by the credential fingerprint: another credential set asks for itself (but the
    content, which is hashed against its digest, is shared)."""
    digest = push_two_platforms(registry, unique_repo)
    name = f"{proxy.host}/{unique_repo}:v1"
    with_password = RegistryHost(proxy.host, insecure=True, username="team-a", password="s3cret")
    a = make_replica(proxy, make_tier(redis_server.url), host=with_password)
    assert (await look_up(a, name))[0] == digest
    with pytest.raises(LookupFailed):
        await a.fetch_manifest(parse(f"{proxy.host}/{unique_repo}:missing"))

    proxy.clear()
    anonymous = make_replica(proxy, make_tier(redis_server.url))
    assert (await look_up(anonymous, name))[0] == digest
    assert proxy.count() == 1  # its own tag request; the index, images and configs were shared
    with pytest.raises(LookupFailed) as failed:
        await anonymous.fetch_manifest(parse(f"{proxy.host}/{unique_repo}:missing"))
    assert "shared" not in failed.value.context
    assert proxy.count(r"/manifests/missing$") == 1  # asked: team-a's 404 is not its answer

    proxy.clear()
    b = make_replica(proxy, make_tier(redis_server.url), host=with_password)
    with pytest.raises(LookupFailed) as failed:
        await b.fetch_manifest(parse(f"{proxy.host}/{unique_repo}:missing"))
    assert failed.value.context.get("shared") is True  # the same credentials: the remembered 404
    assert proxy.count() == 0
