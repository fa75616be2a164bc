"""The cross-replica single-flight when answers land at the worst moment: between a
replica's look at the shared tier and its claim of the lookup. Real redis-server, real
docker-registry behind the counting proxy; the moment is forced, not waited for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable

from support.faulty_proxy import FaultyProxy
from support.redis_server import RedisServer
from support.registry import RegistryProcess

from controller.reference import parse
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost

from .conftest import MakeReplica, MakeTier
from .test_sharing import push_two_platforms


class Meanwhile(RegistryCache):
    """A replica's cache that, right after its first tag look misses, lets ``meanwhile``
    (another replica's whole lookup, writes and release included) run to its end."""

    def __init__(self, meanwhile: Callable[[], Awaitable[None]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    async def shared_tag(self, key: Hashable, scope: str) -> str | None:
        found = await super().shared_tag(key, scope)
        if found is None and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return found


async def test_an_answer_that_lands_between_the_look_and_the_claim_is_not_fetched_again(
    registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    make_tier: MakeTier, make_replica: MakeReplica, unique_repo: str,
) -> None:
    digest = push_two_platforms(registry, unique_repo)
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    first = make_replica(proxy, make_tier(redis_server.url))

    async def first_replica_answers() -> None:
        assert (await first.fetch_manifest(ref)).digest == digest
        await first.cache.settle()  # its entries are written and its claim let go

    late_tier = make_tier(redis_server.url)
    late = RegistryClient(
        RegistryConfig.of(RegistryHost(proxy.host, insecure=True)),
        cache=Meanwhile(first_replica_answers, shared=late_tier),
    )
    try:
        proxy.clear()
        assert (await late.fetch_manifest(ref)).digest == digest
        assert proxy.count(r"/manifests/v1$") == 1, [s.path for s in proxy.seen]  # the first's only
        assert late.stats.total == 0  # the late replica asked the registry nothing
        assert late_tier.stats.claims["led"] == 1  # it won the claim, and looked again
    finally:
        await late.close()
