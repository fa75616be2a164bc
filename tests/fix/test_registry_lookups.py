"""The registry facts ``fix`` asks for, against the real registry: bounded tag lists, index digests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.images import layer
from support.tag_pages import PagingFront

from controller.errors import LookupFailed
from controller.fix.registry import RegistryLookups
from controller.reference import parse
from controller.registry.client import RegistryClient


@pytest.fixture
def paging(registry: Any) -> Iterator[PagingFront]:
    """The real registry behind a front that pages tag lists, as distribution 3 and the big
    registries do (docker-registry 2.8 answers every tag in one page)."""
    front = PagingFront(registry.url).start()
    yield front
    front.stop()


async def test_a_tag_list_past_its_bound_is_a_lookup_failure_not_a_partial_answer(
    registry: Any, unique_repo: str, paging: PagingFront, make_client: Any
) -> None:
    for tag in ("1.0", "1.1", "1.2"):
        registry.push_image(unique_repo, tag, [layer({"t": tag})])
    client = make_client(paging)
    ref = parse(f"{paging.host}/{unique_repo}:1.0")
    assert await RegistryLookups(client, page_size=2, max_tag_pages=2).tags(ref) == ["1.0", "1.1", "1.2"]
    with pytest.raises(LookupFailed, match="longer than 1 pages of 2 tags; the newest tag cannot be told"):
        await RegistryLookups(client, page_size=2, max_tag_pages=1).tags(ref)


async def test_a_multi_arch_tag_answers_with_its_index_digest_once_per_run(
    registry: Any, unique_repo: str, registry_client: RegistryClient
) -> None:
    amd = registry.push_image(unique_repo, None, [layer({"a": "amd64"})])
    arm = registry.push_image(unique_repo, None, [layer({"a": "arm64"})], arch="arm64")
    index = registry.push_index(unique_repo, "1.0", [(amd, "linux/amd64"), (arm, "linux/arm64")])
    lookups = RegistryLookups(registry_client)
    ref = parse(f"{registry.host}/{unique_repo}:1.0")
    assert await lookups.digest(ref) == index.digest
    before = registry_client.stats.total
    assert await lookups.digest(ref) == index.digest
    assert registry_client.stats.total == before
