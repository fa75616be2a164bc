"""What a refused body costs after it is refused: nothing, and while it is read: a share.

A tenant can name images on a registry it runs, each tag a distinct index over
the bounds baseguard parses. Before, every refusal was remembered (the negative
cache, the flight's task) as the exception itself, and an exception holds the
frames it was raised through, and they the body: 256 refused 4 MiB indexes held a
gigabyte, and the replica was OOM-killed. Now a refused body is garbage as soon
as its lookup has failed, and bodies being read share a process-wide room in
bytes between tenants (:class:`controller.registry.limits.BodyRoom`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc

import pytest
from support.images import layer
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry.client import RegistryClient

INDEX = "application/vnd.oci.image.index.v1+json"
ENTRIES = 6_000  # ~1 MB, over the 16,384 values a manifest may hold
TAGS = 12


def flood_index(registry: RegistryProcess, repository: str, tag: str) -> int:
    """Push an index of :data:`ENTRIES` entries (distinct per tag) under ``tag``; its size."""
    child = registry.push_image(repository, None, [layer({"memory": "x"})])
    entry = child.descriptor(platform={"os": "linux", "architecture": "amd64"})
    manifests = [{**entry, "platform": {"os": "linux", "architecture": "amd64", "variant": f"v{i}"}}
                 for i in range(ENTRIES)]
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "annotations": {"tag": tag}, "manifests": manifests}
    ).encode()
    registry.push_manifest(repository, tag, body, INDEX)
    return len(body)


async def test_refused_indexes_are_not_kept_in_memory(
    registry: RegistryProcess, registry_client: RegistryClient
) -> None:
    sizes = [flood_index(registry, "memory/flood", f"t{i}") for i in range(TAGS)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        failures = []
        for i in range(TAGS):
            with pytest.raises(LookupFailed) as caught:
                await registry_client.fetch_manifest(parse(f"{registry.host}/memory/flood:t{i}"))
            failures.append(caught.value)
        # What the user sees: each is refused unparsed, naming the bound.
        assert all("JSON values" in f.message and "refused unparsed" in f.message for f in failures)
        # And asked again, the negative cache answers with the same message, no request.
        with pytest.raises(LookupFailed, match="refused unparsed"):
            await registry_client.fetch_manifest(parse(f"{registry.host}/memory/flood:t0"))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The failures, their messages and the cache entries are a few KiB each; one body alone
    # is ~1 MB, so holding any of the twelve shows.
    assert kept < min(sizes) // 2, f"{kept} bytes kept after {TAGS} refused indexes of {min(sizes)} bytes"


async def test_bodies_being_read_share_a_room_between_tenants() -> None:
    from controller.registry.limits import BodyRoom

    room = BodyRoom(capacity=8 << 20)
    assert room.per_tenant == 6 << 20  # three quarters: a flood leaves a quarter to the others
    held: list[str] = []

    async def read(tenant: str, size: int, done: asyncio.Event) -> None:
        async with room.slot(tenant, size):
            held.append(tenant)
            await done.wait()

    done = asyncio.Event()
    flood = [asyncio.create_task(read("hostile", 2 << 20, done)) for _ in range(8)]
    await asyncio.sleep(0)
    assert held == ["hostile"] * 3 and room.held == 6 << 20  # its share, no more
    honest = asyncio.create_task(read("honest", 64 << 10, done))
    await asyncio.sleep(0)
    assert held[-1] == "honest"  # a manifest of another tenant is read at once
    # A body larger than a tenant's share is read alone, not refused for ever.
    big = asyncio.create_task(read("big", 100 << 20, done))
    await asyncio.sleep(0)
    assert "big" not in held
    done.set()
    await asyncio.wait_for(asyncio.gather(*flood, honest, big), 5)
    assert held.count("hostile") == 8 and "big" in held and room.held == 0
