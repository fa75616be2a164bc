"""The review's referrers memo: one read per key, shared by concurrent and later askers,
never cancelled by one asker's deadline, and never shared across credential sets."""

from __future__ import annotations

import asyncio

import pytest

from controller.errors import LookupFailed
from controller.lineage.budget import ReviewBudget
from controller.reference import Reference
from controller.registry import media
from controller.registry.media import ImageIndex

REF = Reference("registry.test", "team/app", None, None)
DIGEST = "sha256:" + "a" * 64
LISTING = ImageIndex(media.OCI_INDEX, ())


async def test_one_read_for_concurrent_and_later_askers_and_one_per_credential_set() -> None:
    memo = ReviewBudget().referrers
    reads: list[str] = []

    async def fetch() -> ImageIndex:
        reads.append("read")
        await asyncio.sleep(0.01)
        return LISTING

    together = await asyncio.gather(*(memo.listing(REF, DIGEST, "anonymous", fetch) for _ in range(3)))
    later = await memo.listing(REF, DIGEST, "anonymous", fetch)
    assert all(found is LISTING for found in [*together, later])
    assert reads == ["read"]
    await memo.listing(REF, DIGEST, "pull-secret-of-shop", fetch)  # another credential set
    assert reads == ["read", "read"]


async def test_an_asker_cancelled_at_its_deadline_leaves_the_read_to_the_others() -> None:
    memo = ReviewBudget().referrers
    started = asyncio.Event()

    async def fetch() -> ImageIndex:
        started.set()
        await asyncio.sleep(0.05)
        return LISTING

    first = asyncio.ensure_future(memo.listing(REF, DIGEST, "", fetch))
    await started.wait()
    second = asyncio.ensure_future(memo.listing(REF, DIGEST, "", fetch))
    first.cancel()
    assert await second is LISTING
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failure_is_the_reviews_answer_and_no_other_reviews() -> None:
    calls = 0

    async def failing() -> ImageIndex:
        nonlocal calls
        calls += 1
        raise LookupFailed("referrers of registry.test/team/app: 500")

    memo = ReviewBudget().referrers
    for _ in range(2):
        with pytest.raises(LookupFailed):
            await memo.listing(REF, DIGEST, "", failing)
    assert calls == 1  # the same review does not ask again
    with pytest.raises(LookupFailed):
        await ReviewBudget().referrers.listing(REF, DIGEST, "", failing)
    assert calls == 2  # the next review does
