"""The cache: LRU, TTLs with an injected clock, single-flight; and the client using it against a real registry."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess

from controller.caching import LRU, SingleFlight, TTLMap
from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost

BASE = layer({"etc/os-release": "ID=ubuntu\n"})


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("max_entries", "max_bytes", "puts", "kept"),
    [
        (2, 100, [("a", 1), ("b", 1), ("c", 1)], ["b", "c"]),
        (10, 10, [("a", 4), ("b", 4), ("c", 4)], ["b", "c"]),
        (10, 10, [("a", 4), ("big", 11)], ["a"]),  # larger than the whole cache: not kept
        (2, 100, [("a", 1), ("b", 1), ("a", 1), ("c", 1)], ["a", "c"]),  # re-put refreshes
    ],
    ids=["by-entries", "by-bytes", "oversized-entry", "refresh-on-put"],
)
def test_lru_bounds(max_entries: int, max_bytes: int, puts: list[tuple[str, int]], kept: list[str]) -> None:
    lru: LRU[str, str] = LRU(max_entries=max_entries, max_bytes=max_bytes)
    for key, size in puts:
        lru.put(key, key.upper(), size)
    assert sorted(k for k in ("a", "b", "c", "big") if lru.get(k) is not None) == kept
    assert lru.bytes == sum(size for key, size in dict(puts).items() if key in kept)


def test_lru_get_refreshes_recency() -> None:
    lru: LRU[str, int] = LRU(max_entries=2, max_bytes=100)
    lru.put("a", 1, 1)
    lru.put("b", 2, 1)
    assert lru.get("a") == 1
    lru.put("c", 3, 1)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)


def test_ttl_map_expires_on_the_injected_clock() -> None:
    clock = Clock()
    ttl: TTLMap[str, str] = TTLMap(ttl=30, clock=clock, max_entries=10)
    ttl.put("tag", "sha256:a")
    ttl.put("short", "x", ttl=2)
    clock.now += 29.9
    assert (ttl.get("tag"), ttl.get("short")) == ("sha256:a", None)
    clock.now += 0.1
    assert ttl.get("tag") is None


async def test_single_flight_shares_one_call() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.create_task(flights.run("k", work)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()

    assert await asyncio.gather(*waiters) == [42] * 50
    assert calls == 1
    assert flights.joined == 49
    assert len(flights) == 0  # forgotten once done: the next call asks again
    assert await flights.run("k", work) == 42 and calls == 2


async def test_single_flight_exception_reaches_every_waiter() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        raise LookupFailed("registry down")

    waiters = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert [str(r) for r in results] == ["registry down"] * 5


async def test_cancelled_waiter_does_not_cancel_the_shared_lookup() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    finished = []

    async def work() -> str:
        await gate.wait()
        finished.append(True)
        return "manifest"

    first = asyncio.create_task(flights.run("k", work))  # this one started the lookup
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()

    assert await second == "manifest"
    assert first.cancelled()
    assert finished == [True]


def test_failures_are_remembered_for_retry_after_within_bounds() -> None:
    clock = Clock()
    cache = RegistryCache(clock=clock, failure_ttl=3)
    cache.put_failure("a", LookupFailed("down"))
    cache.put_failure("b", LookupFailed("429"), retry_after=20)
    cache.put_failure("c", LookupFailed("429"), retry_after=3600)
    clock.now += 10
    cache.check_failure("a")  # expired: does not raise
    with pytest.raises(LookupFailed, match="429") as info:
        cache.check_failure("b")
    assert info.value.context["cached"] is True
    clock.now += 55
    cache.check_failure("c")  # capped at 60 s


# ------------------------------------------------------------------ the client's use of it


@pytest.fixture
def image(registry: RegistryProcess, unique_repo: str) -> Any:
    return registry.push_image(unique_repo, "v1", [BASE], labels={"cache": "me"})


async def test_200_concurrent_fetches_make_one_request(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    proxy.fault("delay", "/manifests/", seconds=0.2)  # keep the first request in flight
    client: RegistryClient = make_client(proxy)
    ref = parse(f"{proxy.host}/{image.repository}:v1")

    results = await asyncio.gather(*(client.fetch_manifest(ref) for _ in range(200)))

    assert {r.digest for r in results} == {image.digest}
    assert proxy.count("/manifests/", method="GET") == 1
    assert client.stats.coalesced == 199


async def test_200_concurrent_config_fetches_and_digest_resolutions(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    client: RegistryClient = make_client(proxy)
    ref = parse(f"{proxy.host}/{image.repository}@{image.digest}")
    fetched = await client.fetch_manifest(ref)
    assert isinstance(fetched.manifest, media.ImageManifest)
    manifest = fetched.manifest
    proxy.fault("delay", "", seconds=0.2)
    tagged = parse(f"{proxy.host}/{image.repository}:v1")

    configs = await asyncio.gather(*(client.fetch_config(ref, manifest) for _ in range(200)))
    digests = await asyncio.gather(*(client.resolve_digest(tagged) for _ in range(200)))

    assert {c.labels["cache"] for c in configs} == {"me"}
    assert set(digests) == {image.digest}
    assert proxy.count("/blobs/", method="GET") == 1
    assert proxy.count("/manifests/v1", method="HEAD") == 1


async def test_tag_ttl_and_digest_content_forever(
    registry: RegistryProcess, proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    clock = Clock()
    client: RegistryClient = make_client(proxy, cache=RegistryCache(clock=clock, tag_ttl=30))
    tagged = parse(f"{proxy.host}/{image.repository}:v1")
    pinned = parse(f"{proxy.host}/{image.repository}@{image.digest}")

    assert (await client.fetch_manifest(tagged)).digest == image.digest
    moved = registry.push_image(image.repository, "v1", [BASE], labels={"cache": "moved"})
    clock.now += 29
    assert (await client.fetch_manifest(tagged)).digest == image.digest  # still inside the TTL
    assert proxy.count("/manifests/") == 1

    clock.now += 1.5
    assert (await client.fetch_manifest(tagged)).digest == moved.digest  # asked again
    # revalidated with a HEAD; the moved tag's content is new, so one GET by digest
    assert proxy.count("/manifests/v1", method="HEAD") == 1
    assert proxy.count(f"/manifests/{moved.digest}", method="GET") == 1
    assert proxy.count("/manifests/") == 3

    clock.now += 31
    assert (await client.fetch_manifest(tagged)).digest == moved.digest  # unchanged tag:
    assert proxy.count("/manifests/") == 4  # one HEAD, the content comes from the cache
    assert proxy.count("/manifests/v1", method="HEAD") == 2

    clock.now += 10**6
    assert (await client.fetch_manifest(pinned)).digest == image.digest  # content never expires
    assert proxy.count("/manifests/") == 4


async def test_a_digest_lookup_joins_a_tag_fetch_in_flight(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    """fetch_manifest(tag) and resolve_digest(tag) at once: one request, not GET + HEAD."""
    client: RegistryClient = make_client(proxy)
    tagged = parse(f"{proxy.host}/{image.repository}:v1")
    fetched, digest = await asyncio.gather(client.fetch_manifest(tagged), client.resolve_digest(tagged))
    assert fetched.digest == digest == image.digest
    assert proxy.count("/manifests/") == 1


async def test_failures_are_cached_briefly(proxy: FaultyProxy, make_client: Any, image: Any) -> None:
    clock = Clock()
    client: RegistryClient = make_client(proxy, cache=RegistryCache(clock=clock, failure_ttl=3))
    proxy.fault("status", "/manifests/", status=503, times=1)
    ref = parse(f"{proxy.host}/{image.repository}:v1")

    with pytest.raises(LookupFailed, match="HTTP 503"):
        await client.fetch_manifest(ref)
    clock.now += 2.9
    with pytest.raises(LookupFailed, match="HTTP 503") as info:
        await client.fetch_manifest(ref)
    assert info.value.context.get("cached") is True
    assert proxy.count("/manifests/") == 1

    clock.now += 0.2
    assert (await client.fetch_manifest(ref)).digest == image.digest
    assert proxy.count("/manifests/") == 2


async def test_lru_bounds_what_the_client_keeps(
    registry: RegistryProcess, proxy: FaultyProxy, make_client: Any, unique_repo: str
) -> None:
    client: RegistryClient = make_client(proxy, cache=RegistryCache(max_entries=2))
    refs = [
        parse(f"{proxy.host}/{unique_repo}@" + registry.push_image(unique_repo, None, [layer({"n": str(i)})]).digest)
        for i in range(3)
    ]
    for ref in refs:
        await client.fetch_manifest(ref)
    await client.fetch_manifest(refs[2])  # kept
    assert proxy.count("/manifests/") == 3
    await client.fetch_manifest(refs[0])  # evicted: asked again
    assert proxy.count("/manifests/") == 4


async def test_per_host_concurrency_limit(
    registry: RegistryProcess, proxy: FaultyProxy, make_client: Any, unique_repo: str
) -> None:
    digests = [registry.push_image(unique_repo, None, [layer({"n": str(i)})]).digest for i in range(6)]
    proxy.fault("delay", "/manifests/", seconds=0.1)
    client: RegistryClient = make_client(RegistryHost(proxy.host, insecure=True, max_concurrency=2))
    # The proxy is shared by the module: a request an earlier test abandoned may still be
    # in its hands, and would count as one of ours.
    for _ in range(100):
        if proxy.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    proxy.clear()
    proxy.fault("delay", "/manifests/", seconds=0.1)

    await asyncio.gather(*(client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}@{d}")) for d in digests))

    assert proxy.count("/manifests/") == 6
    assert proxy.max_in_flight == 2


async def test_the_last_waiter_leaving_cancels_the_shared_work() -> None:
    """Nobody left to read an answer: the work stops, and the next caller starts afresh."""
    flights: SingleFlight[str, str] = SingleFlight()
    started: list[int] = []
    stopped: list[int] = []

    async def work() -> str:
        started.append(1)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stopped.append(1)
            raise
        return "manifest"

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(2)]
    await asyncio.sleep(0)
    callers[0].cancel()
    await asyncio.sleep(0)
    assert stopped == []  # one caller is still waiting
    callers[1].cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)

    assert stopped == [1] and flights.abandoned == 1 and len(flights) == 0
    fresh = asyncio.create_task(flights.run("k", work))
    for _ in range(2):
        await asyncio.sleep(0)
    assert started == [1, 1]
    fresh.cancel()
    await asyncio.gather(fresh, return_exceptions=True)


# ------------------------------------------------------------------ memory, not body bytes


def _memory_of(parse: Any, body: bytes) -> int:
    """Bytes the parsed value of ``body`` keeps allocated (tracemalloc, after the parse)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        kept = parse(body)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return size


async def test_the_content_cache_holds_no_more_memory_than_its_bound(
    registry: RegistryProcess, unique_repo: str, make_client: Any
) -> None:
    """What the cache accounts is what its entries take: a parsed manifest or config is
    several times its body, so counting bodies let the cache grow past its bound (and the
    pod past its memory limit). Filled through the client with real images, the entries it
    keeps measure under its bound."""
    cap = 256 * 1024
    labels = {f"org.example.label{i}": "x" * 40 for i in range(150)}  # a 9 KiB config each
    pushed = [
        registry.push_image(unique_repo, f"t{i}", [layer({"srv/app": str(i)})], labels={**labels, "n": str(i)})
        for i in range(24)
    ]
    bodies = {p.digest: p.body for p in pushed}
    cache = RegistryCache(max_bytes=cap)
    client = make_client(registry, cache=cache)
    configs: dict[str, bytes] = {}
    for p in pushed:
        fetched = await client.fetch_manifest(parse(f"{registry.host}/{unique_repo}:{p.tag}"))
        assert isinstance(fetched.manifest, media.ImageManifest)
        await client.fetch_config(parse(f"{registry.host}/{unique_repo}"), fetched.manifest)
        configs[fetched.manifest.config.digest] = b""
    async with aiohttp.ClientSession() as session:  # the config bodies, as the registry holds them
        for digest in configs:
            async with session.get(f"http://{registry.host}/v2/{unique_repo}/blobs/{digest}") as resp:
                configs[digest] = await resp.read()

    measured = sum(
        _memory_of(lambda b: media.parse_manifest(b, None), body)
        for digest, body in bodies.items()
        if cache.get_content("manifest", digest) is not None
    ) + sum(
        _memory_of(media.parse_config, body)
        for digest, body in configs.items()
        if cache.get_content("config", digest) is not None
    )

    assert cache.content.bytes <= cap
    assert 0 < measured <= cap, f"the cache keeps {measured} bytes of objects under a bound of {cap}"
