"""The registry facts ``fix`` asks for, through the one registry client.

A tag's digest is asked with ``HEAD`` and the full ``Accept`` list, so a
multi-arch tag answers with its index's digest: the pin then keeps every
platform, where one platform's manifest digest would pin amd64 on an arm64
node. Answers are remembered for the run, so a repository used by fifty
manifests costs one tag list and one ``HEAD`` per tag.
"""

from __future__ import annotations

from controller.errors import LookupFailed
from controller.reference import Reference
from controller.registry.client import RegistryClient

#: Pages of the tag list read per repository, and tags per page: past them, ``--update``
#: says it cannot tell the newest tag (a partial list could name an old one as newest).
MAX_TAG_PAGES = 10
TAG_PAGE_SIZE = 1000


class RegistryLookups:
    """:class:`controller.fix.plan.Lookups` over a :class:`RegistryClient`."""

    def __init__(
        self, client: RegistryClient, *, max_tag_pages: int = MAX_TAG_PAGES, page_size: int = TAG_PAGE_SIZE
    ) -> None:
        self._client = client
        self._digests: dict[str, str] = {}
        self._tags: dict[str, list[str]] = {}
        self._max_tag_pages = max_tag_pages
        self._page_size = page_size

    async def digest(self, ref: Reference) -> str:
        key = ref.without_digest().normalized
        if key not in self._digests:
            self._digests[key] = await self._client.resolve_digest(ref.without_digest())
        return self._digests[key]

    async def tags(self, ref: Reference) -> list[str]:
        if ref.name not in self._tags:
            tags, complete = await self._client.list_tags(
                ref, page_size=self._page_size, max_pages=self._max_tag_pages
            )
            if not complete:
                raise LookupFailed(
                    f"the tag list of {ref.name} is longer than {self._max_tag_pages} pages of "
                    f"{self._page_size} tags; the newest tag cannot be told"
                )
            self._tags[ref.name] = tags
        return self._tags[ref.name]
