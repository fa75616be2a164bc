"""One namespace cannot take all of a registry's concurrency, and abandoned lookups stop.

The hostile namespace floods one registry with bogus tags whose answers the
faulty proxy slows down; the honest namespace's lookup on the same registry
must still be answered at once (before: it queued behind the whole flood on
a shared first-come-first-served semaphore).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.policy.compile import compile_policy
from controller.reference import parse
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.registry.limits import FairSlots, as_tenant, per_tenant_limit
from controller.webhook.review import parse_review, workloads_of
from controller.workloads import Workload

DATA = __import__("pathlib").Path(__file__).resolve().parent.parent / "data" / "admission"
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
FLOOD = 200
SLOW = 0.5  # seconds the proxy holds each hostile answer


# ------------------------------------------------------------------ the slots alone


async def test_a_waiting_tenant_is_served_before_the_rest_of_a_long_queue() -> None:
    slots = FairSlots(2, per_tenant=2)
    order: list[str] = []

    async def take(tenant: str, hold: asyncio.Event) -> None:
        async with slots.slot(tenant):
            order.append(tenant)
            await hold.wait()

    hold = asyncio.Event()
    flood = [asyncio.create_task(take("hostile", hold)) for _ in range(10)]
    await asyncio.sleep(0)
    honest = asyncio.create_task(take("honest", hold))
    await asyncio.sleep(0)
    assert order == ["hostile", "hostile"] and slots.waiting("hostile") == 8
    hold.set()
    await asyncio.gather(*flood, honest)
    assert order.index("honest") == 2  # the first slot released went to the other tenant


async def test_one_tenant_never_holds_the_reserved_slots() -> None:
    assert [per_tenant_limit(n) for n in (1, 3, 4, 8, 16)] == [1, 3, 3, 6, 12]
    slots = FairSlots(8)
    for _ in range(6):
        await slots.acquire("hostile")
    blocked = asyncio.create_task(slots.acquire("hostile"))
    await asyncio.sleep(0)
    assert not blocked.done() and slots.held == 6
    await asyncio.wait_for(slots.acquire("honest"), 0.1)  # free at once
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert slots.waiting("hostile") == 0


# ------------------------------------------------------------------ against the real registry


@pytest_asyncio.fixture
async def client(registry: RegistryProcess, proxy: FaultyProxy) -> AsyncIterator[RegistryClient]:
    config = RegistryConfig.of(RegistryHost(proxy.host, insecure=True))  # 8 slots: the default
    async with RegistryClient(config) as client:
        yield client


async def test_an_honest_namespace_is_answered_while_another_floods_the_registry(
    client: RegistryClient, registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    image = registry.push_image(f"{unique_repo}/honest", "1.0", [layer({"h": unique_repo})])
    proxy.fault("delay", "/hostile/", seconds=SLOW)

    async def bogus(i: int) -> None:
        with as_tenant("team-hostile"):
            await client.resolve_digest(parse(f"{proxy.host}/{unique_repo}/hostile:bogus-{i}"))

    flood = [asyncio.ensure_future(bogus(i)) for i in range(FLOOD)]
    await asyncio.sleep(0.1)  # the flood holds the registry's slots and queues the rest
    started = time.monotonic()
    with as_tenant("team-honest"):
        fetched = await asyncio.wait_for(
            client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}/honest:1.0")), timeout=5
        )
    waited = time.monotonic() - started

    assert fetched.digest == image.digest
    assert waited < 2 * SLOW, f"the honest lookup waited {waited:.2f}s behind the flood"
    assert sum(task.done() for task in flood) < FLOOD // 2  # the flood was really still going
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)
    asked = proxy.count("/hostile/")
    await asyncio.sleep(2 * SLOW)
    assert proxy.count("/hostile/") == asked  # cancelled lookups ask nothing more
    assert len(client.cache.flights) == 0


def _workload(namespace: str, images: dict[str, str]) -> Workload:
    review = json.loads((DATA / "pod-create.json").read_text())
    review["request"]["namespace"] = namespace
    review["request"]["object"]["metadata"]["namespace"] = namespace
    containers = [
        {"name": name, "image": image} for name, image in images.items()
    ]
    review["request"]["object"]["spec"] = {"containers": containers}
    (workload,) = workloads_of(parse_review(json.dumps(review)))
    return workload


def _needs_lineage(python: str) -> Any:
    return compile_policy(
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "bases"},
            "spec": {
                "mode": "Enforce",
                "pinning": {"disallowedTags": []},
                "bases": {"allowed": [{"image": python, "tags": ["3.12*"]}]},
                "lineage": {"onLookupFailure": "Deny", "onUnknownBase": "Deny"},
            },
        }
    )


async def test_reviews_from_two_namespaces_share_the_registry_fairly(
    client: RegistryClient, registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    """Through the assessment: each lookup counts against its workload's namespace."""
    python = registry.push_image(
        f"{unique_repo}/python", "3.12", [layer({"py": unique_repo})], annotations={media.BASE_NAME: "scratch"}
    )
    registry.push_image(
        f"{unique_repo}/app",
        "1.0",
        [layer({"py": unique_repo}), layer({"app": unique_repo})],
        annotations={media.BASE_NAME: f"{proxy.host}/{python.tagged.split('/', 1)[1]}", media.BASE_DIGEST: python.digest},
    )
    proxy.fault("delay", "/hostile/", seconds=SLOW)
    policies = (_needs_lineage(f"{proxy.host}/{unique_repo}/python"),)
    assessor = Assessor(LineageResolver(client), budget=30)
    hostile = _workload(
        "team-hostile", {f"c{i}": f"{proxy.host}/{unique_repo}/hostile:bogus-{i}" for i in range(FLOOD)}
    )
    honest = _workload("team-honest", {"app": f"{proxy.host}/{unique_repo}/app:1.0"})

    flood = asyncio.ensure_future(assessor.assess([hostile], policies, now=NOW))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    (result,) = await asyncio.wait_for(assessor.assess([honest], policies, now=NOW), timeout=10)
    waited = time.monotonic() - started
    flood.cancel()
    await asyncio.gather(flood, return_exceptions=True)

    assert result.verdict.value == "allow", [(v, r.facts.lineage) for r in result.results for v in r.violations]
    assert waited < 4 * SLOW, f"the honest review waited {waited:.2f}s behind the flood"
