"""The identity index's tag history in the shared tier: what a tag named before a restart
is still known after it, for the same credentials only, and never from a forged entry.
Real redis-server, real docker-registry behind the counting proxy."""

from __future__ import annotations

from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.redis_server import RedisServer
from support.registry import RegistryProcess

from controller.lineage.identity import KnownTags
from controller.lineage.indexer import IdentityIndex, IndexSettings
from controller.reference import parse
from controller.registry.cache import RegistryCache, SharedKey
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.sharedcache import entries

from .conftest import MakeReplica, MakeTier
from .test_faults import sealed, set_raw

OS = layer({"etc/os-release": "ID=debian\n"})


async def learn_a_moved_tag(
    registry: RegistryProcess, proxy: FaultyProxy, tier_url: str, make_tier: MakeTier, repo: str,
    host: RegistryHost | None = None,
) -> tuple[str, str]:
    """Process 1: its index sees ``3.12-slim`` name one image, then another (pushed over
    it). Its tag answers are not kept (so process 2 asks the registry what the tag names
    now). The two digests, the old first."""
    old = registry.push_image(repo, "3.12-slim", [OS, layer({"usr/bin/python3.12": "3.12.0\n"})])
    client = RegistryClient(
        RegistryConfig.of(host or RegistryHost(proxy.host, insecure=True)),
        cache=RegistryCache(shared=make_tier(tier_url), tag_ttl=0),
    )
    try:
        index = IdentityIndex(client, settings=IndexSettings(ttl=0))
        name = parse(f"{proxy.host}/{repo}").name
        await index.ensure({name: frozenset({"3.12*"})})
        new = registry.push_image(repo, "3.12-slim", [OS, layer({"usr/bin/python3.12": "3.12.1\n"})])
        await index.ensure({name: frozenset({"3.12*"})})
        assert index.history.known(name, old.digest) == KnownTags(frozenset({"3.12-slim"}))
    finally:
        await client.close()  # the process goes; its writes have landed
    return old.digest, new.digest


async def test_a_restarted_replica_knows_what_a_tag_named_before_the_restart(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    repo = f"{unique_repo}/python"
    name = parse(f"{proxy.host}/{repo}").name
    old, new = await learn_a_moved_tag(registry, proxy, redis_server.url, make_tier, repo)

    proxy.clear()
    after = IdentityIndex(make_replica(proxy, make_tier(redis_server.url)))  # nothing in memory
    await after.ensure({name: frozenset({"3.12*"})})
    # The old digest is still known as what 3.12-slim named (the registry no longer says so).
    assert after.history.known(name, old) == KnownTags(frozenset({"3.12-slim"}))
    assert after.history.known(name, new) == KnownTags(frozenset({"3.12-slim"}), frozenset({"3.12-slim"}))
    # Its requests are the listing's own, as without a tier: the history cost none.
    assert [(s.method, s.path.rsplit("/", 2)[-1]) for s in proxy.seen] == [
        ("GET", "list?n=1000"), ("HEAD", "3.12-slim")
    ]


async def test_the_history_is_not_shared_across_credential_sets(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    repo = f"{unique_repo}/python"
    name = parse(f"{proxy.host}/{repo}").name
    team_a = RegistryHost(proxy.host, insecure=True, username="team-a", password="s3cret")
    old, _ = await learn_a_moved_tag(registry, proxy, redis_server.url, make_tier, repo, host=team_a)

    anonymous = IdentityIndex(make_replica(proxy, make_tier(redis_server.url)))
    await anonymous.ensure({name: frozenset({"3.12*"})})
    assert anonymous.history.known(name, old) is None  # team-a's history is not its answer

    again = IdentityIndex(make_replica(proxy, make_tier(redis_server.url), host=team_a))
    await again.ensure({name: frozenset({"3.12*"})})
    assert again.history.known(name, old) == KnownTags(frozenset({"3.12-slim"}))


async def test_a_forged_or_malformed_history_entry_is_ignored(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    repo = f"{unique_repo}/python"
    ref = parse(f"{proxy.host}/{repo}")
    old, new = await learn_a_moved_tag(registry, proxy, redis_server.url, make_tier, repo)
    tier = make_tier(redis_server.url)
    client = make_replica(proxy, tier)
    key: SharedKey = ("history", ref.registry, ref.repository, client.fingerprint(ref))
    bogus = b'{"3.8-slim":{"current":["%s"],"past":[]}}' % new.encode()  # "new is 3.8-slim"

    # Written by someone without the HMAC key: not an entry of ours.
    set_raw(redis_server, *sealed(tier, key, bogus, keys=entries.Keys.derive(b"x" * 32)))
    forged = IdentityIndex(client)
    await forged.ensure({ref.name: frozenset({"3.*"})})
    assert forged.history.known(ref.name, old) is None  # the stored history was not taken
    assert forged.history.known(ref.name, new) == KnownTags(frozenset({"3.12-slim"}), frozenset({"3.12-slim"}))
    assert tier.stats.rejected["mac"] == 1

    # Signed with the key, but not a history (a digest that is not one): ignored whole, dropped.
    set_raw(redis_server, *sealed(tier, key, b'{"3.12-slim":{"current":["sha256:nope"],"past":[]}}'))
    replica = make_replica(proxy, tier)
    malformed = IdentityIndex(replica)
    await malformed.ensure({ref.name: frozenset({"3.*"})})
    assert malformed.history.known(ref.name, old) is None
    assert tier.stats.rejected["malformed"] == 1
    await replica.cache.settle()
    found = await tier.get(key)  # replaced by what this replica learned itself
    assert found is not None and b"nope" not in found.value and new.encode() in found.value
