"""The identity index: which digests the tags that policies name have, listed and resolved.

ASYNC. Policies speak in tags (``python:3.8*`` is deprecated, ``3.12*`` allowed);
the runtime pulls digests. To judge ``python@sha256:…`` or a tag that lies
(``python:3.12-slim@<digest of 3.8-slim>``), baseguard must know which tags name
a digest. For every repository a policy names literally (``bases.allowed``,
``bases.deprecated``, ``lineage.catalog``), this lists the repository's tags
(``/v2/<name>/tags/list``, paginated, bounded), keeps those matching the
policies' tag globs, and resolves each with a HEAD (then the index by digest,
cached forever, for its platform manifests: a pin may name either). The answers
go into a :class:`~controller.lineage.identity.TagHistory`, shared with the
catalog, which keeps what each tag named before.

A repository is listed when an assessment first needs it and again once its
listing is older than the TTL; a refresh is shared by every review that waits
for it. What a refresh could not resolve stays as it was: a failed listing
never erases what is known.

With a shared cache tier (:class:`SharedHistory`), what each repository's tags
named is written there after a refresh changed it, and read back before a
process first lists the repository: replicas share it, and a restarted one
knows the digests a tag named before the restart at no registry request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.errors import InvalidReference, LookupFailed
from controller.globs import GlobSet
from controller.lineage.identity import TagHistory, decode_history, encode_history
from controller.reference import Reference, parse
from controller.registry.cache import RegistryCache, SharedKey
from controller.registry.media import ImageIndex, ImageManifest

log = logging.getLogger(__name__)


class _Fetched(Protocol):
    @property
    def digest(self) -> str: ...

    @property
    def manifest(self) -> ImageIndex | ImageManifest: ...


class TagClient(Protocol):
    """The part of :class:`controller.registry.client.RegistryClient` the index uses."""

    async def list_tags(
        self, ref: Reference, *, page_size: int = ..., max_pages: int = ...
    ) -> tuple[list[str], bool]: ...

    async def resolve_digest(self, ref: Reference) -> str: ...

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> _Fetched: ...


@dataclass(frozen=True)
class IndexSettings:
    """Bounds of the identity index (documented in docs/hardening.md)."""

    ttl: float = 300.0
    """Seconds a repository's listing is trusted before it is listed again."""
    max_tags: int = 256
    """Tags resolved per repository, among those matching the policies' globs."""
    page_size: int = 1000
    """Tags asked for per page of ``tags/list``."""
    max_pages: int = 10
    """Pages of ``tags/list`` read per repository."""
    retry: float = 30.0
    """Seconds before a repository whose listing failed is tried again."""
    max_repositories: int = 4096
    """Repositories whose listing is remembered; the least recently listed is forgotten
    (and listed again when next needed), so pods pinning ever new repositories cannot
    grow the index without end."""
    max_children: int = 20_000
    """Index digests whose platform manifests are remembered (least recently read first out)."""


#: How long a repository's tag history stays in the shared tier unwritten (each change
#: writes it again): long, as what a tag named is worth keeping, but not forever.
HISTORY_TTL = 30 * 24 * 3600.0


class HistoryStore(Protocol):
    """Where the tag history of each repository outlives the process (:class:`SharedHistory`)."""

    async def load(self, repo: Reference) -> bytes | None: ...

    def save(self, repo: Reference, value: bytes) -> None: ...

    async def reject(self, repo: Reference, reason: str) -> None: ...


@dataclass(frozen=True)
class SharedHistory:
    """Each repository's tag history in the registry cache's shared tier.

    Keyed by ``("history", registry, repository, credential fingerprint)``, which the
    tier turns into an HMAC'd database key, and authenticated with an HMAC bound to
    that key, like every shared entry. The fingerprint is that of the credentials the
    index lists the repository with: another credential set (a tenant's pull secret)
    names another entry, so it can neither read this one nor overwrite it, and what
    it lists shapes its own only; a writer to the database without the HMAC key can
    neither forge an entry nor move one under another name. What is read is checked
    again (every digest a digest, within the history's bounds) or ignored whole.
    """

    cache: RegistryCache
    fingerprint: Callable[[Reference], str]
    ttl: float = HISTORY_TTL

    @classmethod
    def of(cls, client: object) -> SharedHistory | None:
        """The store of a registry client whose cache has a shared tier; else ``None``."""
        cache, fingerprint = getattr(client, "cache", None), getattr(client, "fingerprint", None)
        if isinstance(cache, RegistryCache) and cache.shared is not None and callable(fingerprint):
            return cls(cache, fingerprint)
        return None

    def _key(self, repo: Reference) -> SharedKey:
        return ("history", repo.registry, repo.repository, self.fingerprint(repo))

    async def load(self, repo: Reference) -> bytes | None:
        return await self.cache.shared_answer(self._key(repo))

    def save(self, repo: Reference, value: bytes) -> None:
        self.cache.put_answer(self._key(repo), value, self.ttl)

    async def reject(self, repo: Reference, reason: str) -> None:
        await self.cache.reject_shared(self._key(repo), reason)


@dataclass
class _Listing:
    at: float
    patterns: frozenset[str]
    complete: bool = True
    failure: str | None = None


@dataclass
class IdentityIndex:
    """Keeps :attr:`history` filled for the repositories and tag globs the policies name."""

    client: TagClient
    history: TagHistory = field(default_factory=TagHistory)
    settings: IndexSettings = field(default_factory=IndexSettings)
    clock: Callable[[], float] = time.monotonic
    _listed: OrderedDict[str, _Listing] = field(default_factory=OrderedDict, repr=False)
    #: index digest → its platform manifests' digests (content-addressed: never changes)
    _children: OrderedDict[str, frozenset[str]] = field(default_factory=OrderedDict, repr=False)
    #: repository → the tags its last listing resolved
    _tags: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _refreshing: dict[str, asyncio.Task[None]] = field(default_factory=dict, repr=False)
    #: where the history outlives the process; by default the client's shared tier, if any
    store: HistoryStore | None = None
    #: repository → the history last read from or written to :attr:`store`
    _stored: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = SharedHistory.of(self.client)

    def fresh(self, name: str, patterns: frozenset[str]) -> bool:
        listing = self._listed.get(name)
        if listing is None or not listing.patterns >= patterns:
            return False
        ttl = self.settings.ttl if listing.failure is None else min(self.settings.ttl, self.settings.retry)
        return self.clock() - listing.at < ttl

    def failure(self, name: str) -> str | None:
        """Why the last listing of ``name`` failed, if it did (for notes and messages)."""
        listing = self._listed.get(name)
        return listing.failure if listing is not None else None

    async def ensure(self, targets: Mapping[str, frozenset[str]]) -> None:
        """Make sure each repository's tags matching its globs are indexed and fresh.

        Refreshes run concurrently, one per repository at a time (a second caller
        waits for the running one). Failures are kept per repository, never raised.
        """
        waits = []
        for name, patterns in targets.items():
            if not patterns or self.fresh(name, patterns):
                continue
            running = self._refreshing.get(name)
            if running is None:
                known = self._listed.get(name)
                wanted = patterns | (known.patterns if known is not None else frozenset())
                running = asyncio.ensure_future(self._refresh(name, wanted))
                self._refreshing[name] = running
                running.add_done_callback(functools.partial(self._done, name))
            waits.append(running)
        if waits:
            # Shared work: one review's deadline must not cancel it for the others.
            await asyncio.gather(*(asyncio.shield(w) for w in waits), return_exceptions=True)

    def _done(self, name: str, _task: asyncio.Task[None]) -> None:
        self._refreshing.pop(name, None)

    async def _refresh(self, name: str, patterns: frozenset[str]) -> None:
        started = self.clock()
        try:
            repo = parse(name)
        except InvalidReference as exc:
            self._listing(name, _Listing(started, patterns, failure=exc.message))
            return
        await self._restore(repo)
        try:
            tags, complete = await self.client.list_tags(
                repo, page_size=self.settings.page_size, max_pages=self.settings.max_pages
            )
        except LookupFailed as exc:
            log.info("identity index: listing %s failed: %s", name, exc)
            self._listing(name, _Listing(started, patterns, failure=str(exc)))
            return
        wanted, complete = _selected(tags, patterns, self.settings.max_tags, complete)
        await asyncio.gather(*(self.resolve(repo, tag) for tag in wanted), return_exceptions=True)
        self._tags[name] = tuple(wanted)
        self._listing(name, _Listing(started, patterns, complete=complete))
        await self._persist(repo)

    async def _restore(self, repo: Reference) -> None:
        """Take back what the store kept of ``repo``'s history, once per process (and
        again after the repository was forgotten)."""
        if self.store is None or repo.name in self._stored:
            return
        self._stored[repo.name] = b""
        await self._merge(repo)

    async def _merge(self, repo: Reference) -> None:
        """Add what the store keeps of ``repo``'s history to ours (an entry that is not a
        history is dropped); remember it as what the store holds."""
        store, name = self.store, repo.name
        if store is None:
            return
        blob = await store.load(repo)
        if blob is None or blob == self._stored.get(name):
            return
        snapshot = decode_history(blob)
        if snapshot is None:
            log.warning("identity index: the shared tag history of %s is malformed: ignored", name)
            await store.reject(repo, "malformed")
            return
        for tag, (current, past) in snapshot.items():
            self.history.restore(name, tag, current, past)
        self._stored[name] = blob

    async def _persist(self, repo: Reference) -> None:
        """Write ``repo``'s history to the store when it differs from what is there,
        merged first with what is there now: another replica may have written since we
        read it, or the store may not have answered when we did."""
        if self.store is None:
            return
        blob = encode_history(self.history.snapshot(repo.name))
        if blob == self._stored.get(repo.name):
            return
        await self._merge(repo)
        blob = encode_history(self.history.snapshot(repo.name))
        if blob != self._stored.get(repo.name):
            self._stored[repo.name] = blob
            self.store.save(repo, blob)

    def _listing(self, name: str, listing: _Listing) -> None:
        """Remember ``name``'s listing, forgetting the least recently listed past the bound."""
        self._listed[name] = listing
        self._listed.move_to_end(name)
        while len(self._listed) > max(self.settings.max_repositories, 1):
            gone, _ = self._listed.popitem(last=False)
            self._tags.pop(gone, None)
            self._stored.pop(gone, None)

    @property
    def repositories(self) -> tuple[str, ...]:
        """The repositories whose listing is remembered, least recently listed first."""
        return tuple(self._listed)

    async def resolve(self, repo: Reference, tag: str, *, expand: bool = False) -> frozenset[str]:
        """Resolve ``repo:tag`` now (a HEAD) and record the digests it names; them, or empty.

        The platform manifests of an index need a GET of the index, which registries
        such as Docker Hub count as a pull: they are read only with ``expand`` (a
        pinned digest the index digests did not explain), then kept by index digest.
        """
        ref = Reference(repo.registry, repo.repository, tag)
        try:
            digest = await self.client.resolve_digest(ref)
            children = self._children.get(digest)
            if children is not None:
                self._children.move_to_end(digest)
            if children is None and expand:
                fetched = await self.client.fetch_manifest(ref, digest)
                manifest = fetched.manifest
                children = frozenset(
                    d.digest for d in manifest.manifests if not d.is_attestation
                ) if isinstance(manifest, ImageIndex) else frozenset()
                self._children[digest] = children
                while len(self._children) > max(self.settings.max_children, 1):
                    self._children.popitem(last=False)
        except LookupFailed as exc:
            log.info("identity index: %s failed: %s", ref, exc)
            return frozenset()
        found = frozenset({digest} | (children or frozenset()))
        self.history.record(repo.name, tag, found)
        return found

    async def explain(self, pinned: Sequence[tuple[str, str]]) -> None:
        """Read the platform manifests of the listed tags of each repository where a pinned
        ``(name, digest)`` is not known: it may be a platform manifest's digest."""
        names = {name for name, digest in pinned if self.history.known(name, digest) is None}
        work = []
        for name in names:
            try:
                repo = parse(name)
            except InvalidReference:
                continue
            work += [self.resolve(repo, tag, expand=True) for tag in self._tags.get(name, ())]
        if work:
            await asyncio.gather(*work, return_exceptions=True)
            await self._persist_all(names)

    async def confirm(self, claims: Sequence[tuple[str, str, str]]) -> None:
        """Re-resolve the tags of ``(name, tag, digest)`` claims the history contradicts.

        A contradiction may only mean the tag moved since the last listing (a
        new release): before it is judged, the tag is asked about once more.
        """
        todo = {}
        for name, tag, digest in claims:
            known = self.history.known(name, digest)
            if known is None or known.names(tag):
                continue
            try:
                todo[(name, tag)] = parse(name)
            except InvalidReference:
                continue
        if todo:
            await asyncio.gather(
                *(self.resolve(repo, tag) for (_, tag), repo in todo.items()),
                return_exceptions=True,
            )
            await self._persist_all(name for name, _ in todo)

    async def _persist_all(self, names: Iterable[str]) -> None:
        for name in set(names):
            if name in self._stored:  # restored in this process: a write merges, never clobbers
                await self._persist(parse(name))


def _selected(
    tags: Sequence[str], patterns: frozenset[str], limit: int, complete: bool
) -> tuple[list[str], bool]:
    """The tags to resolve: for *each* glob, the newest ``limit`` tags it matches.

    One listing serves every policy that names the repository, so the bound is
    per glob, not per repository: a tenant's ``*`` (thousands of tags) cannot
    push the tags a cluster policy's ``3.8*`` names out of a shared window and
    leave a lying tag unverified for everyone. ``tags/list`` is sorted, so the
    newest names are the last ones. The answer is in listing order.
    """
    chosen: set[str] = set()
    for pattern in sorted(patterns):
        glob = GlobSet((pattern,))
        matching = [t for t in tags if glob.matches(t)]
        if len(matching) > limit:
            complete = False
            matching = matching[-limit:]
        chosen.update(matching)
    return [t for t in tags if t in chosen], complete
