"""One review's referrers listings, each read once however many of its rules want it.

The provenance claim source (:mod:`controller.lineage.sources`), the signature
checker (:mod:`controller.lineage.signatures`) and the evidence reader
(:mod:`controller.evidence.gather`) all want the same ``referrers/<digest>`` of
the same image; each filters the one listing by artifact type itself, so a
review asks the registry once (and, on a registry without the referrers API,
reads the ``sha256-<hex>`` fallback tag once). The read itself is
:func:`controller.registry.referrers.fetch_referrers`.

PURE of I/O (asyncio only): the memo is held by the review's
:class:`~controller.lineage.budget.ReviewBudget`, which the pure claim readers import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from controller.reference import Reference
from controller.registry.media import ImageIndex

#: What a :class:`ReferrersMemo` is keyed by: registry, repository, subject digest and the
#: fingerprint of the credential set that asks (as the client's flights are).
MemoKey = tuple[str, str, str, str]


class ReferrersMemo:
    """One review's referrers listings, each read once however many of its rules want it.

    Keyed by (registry, repository, subject digest, credential fingerprint): the
    same key the registry client's flights use, so two credential sets never
    share an answer. Isolation: a memo belongs to one review (it lives on that
    review's :class:`~controller.lineage.budget.ReviewBudget` and dies with it),
    so nothing one tenant's review read can be handed to another tenant's; a
    listing is shaped by no namespaced object, and the credential fingerprint
    keeps one namespace's pull-secret answer from another even in a review that
    spans namespaces (an audit). Nothing is remembered past the review (a
    signature attached a second later is seen by the next review). A failure is
    remembered too, for the rest of the review only: the same listing cannot be
    found missing by one rule and present by another.

    The listing is read by a task of its own (``fetch()`` scheduled), awaited through :func:`asyncio.shield`,
    so a consumer cancelled at its deadline does not cancel the read another
    consumer of the same review is waiting on.
    """

    def __init__(self) -> None:
        self._listings: dict[MemoKey, asyncio.Future[ImageIndex]] = {}

    def __len__(self) -> int:
        return len(self._listings)

    async def listing(
        self,
        ref: Reference,
        digest: str,
        fingerprint: str,
        fetch: Callable[[], Awaitable[ImageIndex]],
    ) -> ImageIndex:
        """The referrers of ``digest`` in ``ref``'s repository as asked with the credential set
        ``fingerprint``: read by ``fetch`` the first time, remembered after."""
        key = (ref.registry, ref.repository, digest, fingerprint)
        task = self._listings.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            # retrieved here too: a read whose every consumer was cancelled logs no warning
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._listings[key] = task
        return await asyncio.shield(task)
