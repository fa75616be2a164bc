"""The async OCI registry client every lookup goes through.

One transport (session, limits) per client and its views, one
:class:`RegistryCache`, per-host concurrency limits and per-request timeouts.
Every answer is checked before anyone reads it: bodies are size-capped while
they stream, manifests and configs are hashed against their digest, and the
full ``Accept`` list always goes out (a registry asked without it may 404 or
convert a manifest and change its digest).

Every failure is a :class:`~controller.errors.LookupFailed` whose message says
what happened and where (host, method, path), and whose ``context`` carries
``registry``, ``status`` (when there was an HTTP answer) and ``code`` for
callers that branch on them: the registry's own error code
(``MANIFEST_UNKNOWN``, ``DENIED``, ``TOOMANYREQUESTS``, ...) or ours:
``TIMEOUT``, ``CONNECT``, ``DISCONNECTED``, ``DNS``, ``TLS``, ``PROTOCOL``,
``PRIVATE_ADDRESS``, ``TOO_LARGE``, ``REDIRECT``, ``DIGEST_MISMATCH``,
``INVALID``, ``UNAUTHORIZED``, ``TOKEN``. A remembered failure also has
``cached: True``. No message, log line or context value ever holds a
credential or token.

Caching is shared by every credential set: verified content and tag → digest
answers fetched with one pod's pull secret serve the next pod too (what they
reveal is lineage metadata, not layers, and the kubelet still needs its own
credentials to pull). Failures and tokens are kept per credential set, so an
anonymous 401 never blocks a lookup that has credentials.

How requests travel (session, limits, TLS, the address guard, redirects, the
error table, scrubbing) is :mod:`controller.registry.transport`; the 401 →
challenge → retry round is :mod:`controller.registry.handshake`; this module
keeps the operations and their caching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import TypeVar

from yarl import URL

from controller import digests
from controller.caching import TTLMap
from controller.errors import LookupFailed
from controller.reference import Reference
from controller.registry import auth, jsonread, media, referrers
from controller.registry.bodies import mib
from controller.registry.cache import RegistryCache
from controller.registry.config import RegistryConfig, RegistryHost
from controller.registry.handshake import Handshake
from controller.registry.helpers import ProgramCredentials
from controller.registry.limits import current_account
from controller.registry.media import ImageConfig, ImageIndex, ImageManifest
from controller.registry.programs import ProcessLimitReached
from controller.registry.transport import (
    KIND_BLOB,
    KIND_MANIFEST,
    KIND_PING,
    MAX_ERROR_BODY,
    Reply,
    RequestStats,
    Transport,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Values one page of a tag list may hold: room for a page of 10,000 tags (we ask for 1,000).
TAG_PAGE_VALUES = 16_384
#: Bodies this large or larger are hashed in a worker thread: hashlib lets go of the
#: interpreter lock while it hashes, so the event loop keeps answering (a 4 MiB body is
#: 10-20 ms of sha256). At most :data:`HASH_WORKERS` at once per client.
OFF_LOOP_HASH_BYTES = 256 * 1024
HASH_WORKERS = 2
#: HEAD answers that mean "ask with GET instead" (a HEAD 404 has no body to tell why).
HEAD_FALLBACK_STATUSES = frozenset({404, 405, 501})

__all__ = ["Fetched", "RegistryClient", "RequestStats"]


# ------------------------------------------------------------------ public data


@dataclass(frozen=True)
class Fetched:
    """A manifest or index as fetched: ``digest`` is the sha256 of the exact bytes."""

    reference: Reference
    digest: str
    media_type: str
    manifest: ImageIndex | ImageManifest
    size: int


# ------------------------------------------------------------------ internals


def _next_page(link: str, base: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, if it is ``base`` with a query."""
    for part in link.split(","):
        target, _, params = part.partition(";")
        if "rel=next" not in params.replace(" ", "").replace('"', ""):
            continue
        url = URL(target.strip().strip("<>"))
        if url.path == base and not url.is_absolute():
            return str(url)
    return None


def hash_body(body: bytes, algorithm: str) -> str:
    """The digest of ``body`` with ``algorithm``; an unsupported one is a :class:`LookupFailed`."""
    try:
        return digests.compute(body, algorithm)
    except ValueError as exc:
        raise LookupFailed(str(exc)) from None




class _Shared:
    """State a client shares with the views :meth:`RegistryClient.with_config` makes."""

    def __init__(self, cache: RegistryCache, config: RegistryConfig) -> None:
        self.cache = cache
        self.hashers = asyncio.Semaphore(HASH_WORKERS)
        self.transport = Transport(clock=cache.clock)
        self.handshake = Handshake(self.transport, cache)
        self.tokens = self.handshake.tokens
        self.challenges = self.handshake.challenges
        # Hosts that answered the referrers API with a bare 404: the fallback tag is read instead.
        self.no_referrers_api: TTLMap[str, bool] = TTLMap(
            ttl=referrers.NO_REFERRERS_API_TTL, clock=cache.clock, max_entries=10_000
        )
        docker = config.docker_config
        self.programs = ProgramCredentials(
            store=docker.store if docker is not None else None,
            helpers=docker.helpers if docker is not None else None,
            providers=config.credential_providers,
            clock=cache.clock,
        )


# ------------------------------------------------------------------ the client


class RegistryClient:
    """Fetch manifests, indexes and configs; resolve tags. Shared by everything async.

    Use as ``async with RegistryClient(config) as client: ...`` or call
    :meth:`close`. :meth:`with_config` derives a view with other credentials
    (pull secrets) that shares this client's session, cache and limits.
    """

    def __init__(self, config: RegistryConfig, *, cache: RegistryCache | None = None) -> None:
        self._config = config
        self._shared = _Shared(cache if cache is not None else RegistryCache(), config)
        self._transport = self._shared.transport
        self._transport.register(config)

    # -- lifecycle ----------------------------------------------------------------

    def with_config(self, config: RegistryConfig) -> RegistryClient:
        """A client for ``config`` (e.g. ``config.with_credentials(pull_secrets)``) sharing state."""
        view = object.__new__(RegistryClient)
        view._config = config
        view._shared = self._shared
        view._transport = self._shared.transport
        view._transport.register(config)
        return view

    @property
    def config(self) -> RegistryConfig:
        return self._config

    @property
    def cache(self) -> RegistryCache:
        return self._shared.cache

    @property
    def stats(self) -> RequestStats:
        stats = self._transport.stats
        stats.coalesced = self._shared.cache.flights.joined
        return stats

    async def close(self) -> None:
        self._shared.cache.flights.cancel_all()
        await self._shared.cache.settle()  # the shared tier's writes: each within its timeout
        await self._transport.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public operations ----------------------------------------------------------

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> Fetched:
        """The manifest or index ``ref`` names: by digest (``digest`` or ``ref.digest``), else by tag.

        By digest, sha256(body) must equal the digest; by tag, it must equal the
        registry's ``Docker-Content-Digest`` when one is sent. Both land in the
        cache (digest → content forever, tag → digest for the tag TTL).
        """
        wanted = digest or ref.digest
        if wanted is not None:
            return await self._manifest_by_digest(ref, wanted)
        tag = ref.effective_tag or "latest"
        key = self._tag_key(ref, tag)
        known = self.cache.get_tag(key)
        if known is not None:
            return await self._manifest_by_digest(ref, known)
        if self.cache.stale_tag(key) is not None:
            # Seen before, TTL over: a HEAD revalidates it, and the content is most
            # likely cached by digest. Registries such as Docker Hub count manifest
            # GETs, not HEADs, against pull limits.
            return await self._manifest_by_digest(ref, await self.resolve_digest(ref))
        return await self.flight(
            self._tag_flight(ref, tag),
            lambda: self.mirrored(ref, lambda entry: self._get_manifest_by_tag(entry, ref, tag)),
            shared=lambda: self._shared_tagged(ref, tag),
        )

    async def resolve_digest(self, ref: Reference) -> str:
        """Tag → digest: HEAD with the full Accept list; GET when HEAD is refused or says nothing.

        A reference that already carries a digest is pinned and costs nothing.
        """
        if ref.digest is not None:
            return ref.digest
        tag = ref.effective_tag or "latest"
        known = self.cache.get_tag(self._tag_key(ref, tag))
        if known is not None:
            self._transport.stats.cache_hits += 1
            return known
        flight = self._tag_flight(ref, tag)
        fetching = self.cache.flights.pending(flight)
        if fetching is not None:  # a GET of this tag is under way: its digest answers us too
            self._transport.stats.coalesced += 1
            fetched: Fetched = await self.cache.flights.wait(flight, fetching)
            return fetched.digest
        return await self.flight(
            ("digest", ref.registry, ref.repository, tag, self.fingerprint(ref)),
            lambda: self.mirrored(ref, lambda entry: self._head_digest(entry, ref, tag)),
            shared=lambda: self.cache.shared_tag(self._tag_key(ref, tag), self.fingerprint(ref)),
        )

    async def fetch_config(self, ref: Reference, manifest: ImageManifest) -> ImageConfig:
        """The image config blob ``manifest.config`` names: verified, size-capped, cached."""
        desc = manifest.config
        if not digests.is_digest(desc.digest):
            raise LookupFailed(f"image config of {ref.name} has a malformed digest {desc.digest!r}")
        if desc.size > media.MAX_BODY:
            raise LookupFailed(
                f"image config {desc.digest} of {ref.name} is {desc.size} bytes: "
                f"config over {mib(media.MAX_BODY)} refused"
            )
        cached = self.cache.get_content("config", desc.digest)
        if isinstance(cached, ImageConfig):
            self._transport.stats.cache_hits += 1
            return cached
        return await self.flight(
            ("config", ref.registry, ref.repository, desc.digest, self.fingerprint(ref)),
            lambda: self.mirrored(ref, lambda entry: self._get_config(entry, ref, desc.digest)),
            shared=lambda: self._shared_config(desc.digest),
        )

    async def fetch_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes:
        """A small blob (an in-toto statement): see :func:`controller.registry.referrers.fetch_blob`."""
        return await referrers.fetch_blob(self, ref, digest, limit=limit)

    async def fetch_referrers(self, ref: Reference, digest: str) -> ImageIndex:
        """OCI 1.1 referrers of ``digest``: see :func:`controller.registry.referrers.fetch_referrers`."""
        return await referrers.fetch_referrers(self, ref, digest)

    async def ping(self, registry: str) -> None:
        """``GET /v2/``: reachable when it answers 200 or 401 (auth comes per repository)."""
        entry = self._config.host(registry)
        reply = await self._transport.send_hops(
            self._config, entry, "GET", self._url(entry, "/v2/"), KIND_PING, authorization=None, accept=None,
            limit=MAX_ERROR_BODY,
        )
        if reply.status not in (200, 401):
            raise self._transport.http_error(self._config, reply, "GET", "/v2/", f"registry {entry.host}")

    # -- the request path (public for controller.registry.referrers) --------------------

    @property
    def no_referrers_api(self) -> TTLMap[str, bool]:
        """Hosts found without the referrers API (shared by every view of this client)."""
        return self._shared.no_referrers_api

    async def digest_of(self, reply: Reply, algorithm: str) -> str:
        """The digest of ``reply``'s body: its sha256 as the transport read it, or
        :func:`hash_body` for another algorithm, in a bounded worker thread for a large
        body (see :data:`OFF_LOOP_HASH_BYTES`): hashing 4 MiB must not hold the event loop."""
        if algorithm == "sha256" and reply.sha256 is not None:
            return reply.sha256
        body = reply.body
        if len(body) < OFF_LOOP_HASH_BYTES:
            return hash_body(body, algorithm)
        async with self._shared.hashers:
            return await asyncio.to_thread(hash_body, body, algorithm)

    def count_cache_hit(self) -> None:
        """Count an answer served from the cache in :attr:`stats`."""
        self._transport.stats.cache_hits += 1

    def http_error(self, reply: Reply, method: str, path: str, what: str) -> LookupFailed:
        """The :class:`LookupFailed` for a non-success answer (the transport's error table)."""
        return self._transport.http_error(self._config, reply, method, path, what)

    def _tag_key(self, ref: Reference, tag: str) -> Hashable:
        return (ref.registry, ref.repository, tag)

    def _tag_flight(self, ref: Reference, tag: str) -> Hashable:
        return ("manifest-tag", ref.registry, ref.repository, tag, self.fingerprint(ref))

    def fingerprint(self, ref: Reference) -> str:
        """Which credential set asks for ``ref``: part of every flight and failure key."""
        return auth.fingerprint(self._config.host(ref.registry).credentials)

    async def flight(
        self,
        key: Hashable,
        work: Callable[[], Awaitable[T]],
        *,
        shared: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """Negative cache, then single-flight: one request per key however many ask.

        ``shared`` reads the answer from the cache's shared tier, when it has one
        (:class:`~controller.registry.cache.SharedTier`): then one request per key
        across every process sharing it.

        Public, with :meth:`mirrored`, :meth:`call`, :meth:`fingerprint`,
        :meth:`http_error` and :meth:`count_cache_hit`, for the operation modules
        beside this one (:mod:`controller.registry.referrers`): the one request path
        every registry read takes.
        """
        cache = self.cache
        try:
            cache.check_failure(key)
        except LookupFailed:
            self._transport.stats.cache_hits += 1
            raise
        self._transport.stats.cache_misses += 1

        async def remembered() -> T:
            try:
                return await work()
            except ProcessLimitReached:
                raise  # one review's own limit: never the answer for the next review
            except LookupFailed as exc:
                if exc.context.get("per_review") is None:  # a review's own bound is not the registry's
                    retry_after = exc.context.get("retry_after")
                    cache.put_failure(
                        key, exc, retry_after=retry_after if isinstance(retry_after, float) else None
                    )
                # The failure leaves the flight without the frames it was raised through:
                # they hold the body that was refused (4 MiB for a flooded index), and the
                # flight's task keeps its exception until every waiter has taken it.
                exc.__context__ = None  # (``from None`` hides the context, it does not drop it)
                raise exc.with_traceback(None) from None

        try:
            return await cache.single_flight(key, remembered, shared=shared)
        except LookupFailed as exc:
            # The flight we joined ran on another review's account and stopped at its bound:
            # that is not our answer. Ask again, on ours.
            spent = exc.context.get("per_review")
            if spent is None or spent == id(current_account()):
                raise
            return await cache.single_flight(key, remembered, shared=shared)

    async def mirrored(self, ref: Reference, op: Callable[[RegistryHost], Awaitable[T]]) -> T:
        """Try each configured mirror, then the registry itself; the registry's error wins."""
        entry = self._config.host(ref.registry)
        for mirror in entry.mirrors:
            try:
                return await op(await self._with_program_credentials(mirror, ref))
            except LookupFailed as exc:
                log.debug("mirror %s failed for %s: %s", mirror, ref.name, exc.message)
        return await op(await self._with_program_credentials(ref.registry, ref))

    async def _with_program_credentials(self, host: str, ref: Reference) -> RegistryHost:
        """``host``'s settings, with a credential helper's or kubelet plugin's credentials
        when nothing before them in the order had any (pull secrets, configured, ``auths``)."""
        entry = self._config.host(host)
        programs = self._shared.programs
        if not entry.credentials.empty or programs.empty:
            return entry
        image = f"{host}/{ref.repository}" + (f":{ref.tag}" if ref.tag else "")
        creds = await programs.for_image(host, image)
        if creds.empty:
            return entry
        self._transport.remember_secrets(entry.api_host, creds)
        return replace(
            entry,
            username=creds.username,
            password=creds.password,
            token=creds.token,
            identity_token=creds.identity_token,
        )

    # -- manifests ----------------------------------------------------------------------

    async def _manifest_by_digest(self, ref: Reference, digest: str) -> Fetched:
        if not digests.is_digest(digest):
            raise LookupFailed(f"{ref.name}@{digest}: unsupported or malformed digest")
        cached = self.cache.get_content("manifest", digest)
        if isinstance(cached, _CachedManifest):
            self._transport.stats.cache_hits += 1
            return cached.fetched(ref)
        return await self.flight(
            ("manifest", ref.registry, ref.repository, digest, self.fingerprint(ref)),
            lambda: self.mirrored(ref, lambda entry: self._get_manifest_by_digest(entry, ref, digest)),
            shared=lambda: self._shared_manifest(ref, digest),
        )

    def _manifest_path(self, ref: Reference, tag_or_digest: str) -> str:
        return f"/v2/{ref.repository}/manifests/{tag_or_digest}"

    async def _manifest_reply(self, entry: RegistryHost, ref: Reference, path: str, what: str) -> Reply:
        """GET a manifest, its values counted as it is read; a refusal names the manifest."""
        try:
            return await self.call(
                entry, "GET", path, KIND_MANIFEST, ref.repository, what, accept=media.ACCEPT,
                max_values=media.MAX_MANIFEST_VALUES,
            )
        except LookupFailed as exc:
            if not jsonread.is_refusal(exc.message):
                raise
            raise LookupFailed(
                f"manifest for {what}: {exc.message}", context={**exc.context, "registry": entry.api_host}
            ) from None

    async def _get_manifest_by_digest(self, entry: RegistryHost, ref: Reference, digest: str) -> Fetched:
        path = self._manifest_path(ref, digest)
        what = f"{ref.name}@{digest}"
        reply = await self._manifest_reply(entry, ref, path, what)
        if reply.status != 200:
            raise self._transport.http_error(self._config, reply, "GET", path, what)
        actual = await self.digest_of(reply, digest.partition(":")[0])
        if actual != digest:
            raise LookupFailed(
                f"manifest for {what} does not match its digest (got {actual})",
                context={"registry": reply.host, "path": path, "code": "DIGEST_MISMATCH"},
            )
        return self._store_manifest(ref, digest, reply, what)

    async def _get_manifest_by_tag(self, entry: RegistryHost, ref: Reference, tag: str) -> Fetched:
        path = self._manifest_path(ref, tag)
        what = f"{ref.name}:{tag}"
        reply = await self._manifest_reply(entry, ref, path, what)
        if reply.status != 200:
            raise self._transport.http_error(self._config, reply, "GET", path, what)
        header = reply.headers.get("Docker-Content-Digest")
        digest = await self.digest_of(reply, "sha256")
        if header and digests.is_digest(header):
            algorithm = header.partition(":")[0]
            actual = digest if algorithm == "sha256" else await self.digest_of(reply, algorithm)
            if actual != header:
                raise LookupFailed(
                    f"manifest for {what} does not match the registry's Docker-Content-Digest "
                    f"{header} (got {actual})",
                    context={"registry": reply.host, "path": path, "code": "DIGEST_MISMATCH"},
                )
            digest = header
        fetched = self._store_manifest(ref, digest, reply, what)
        self.cache.put_tag(self._tag_key(ref, tag), digest, scope=self.fingerprint(ref))
        return fetched

    def _store_manifest(self, ref: Reference, digest: str, reply: Reply, what: str) -> Fetched:
        try:
            manifest = media.parse_manifest(reply.body, reply.headers.get("Content-Type"))
        except LookupFailed as exc:
            raise LookupFailed(
                f"manifest for {what}: {exc.message}",
                context={"code": "INVALID", **exc.context, "registry": reply.host},
            ) from None
        cached = _CachedManifest(digest, manifest.media_type, manifest, len(reply.body))
        self.cache.put_content(
            "manifest", digest, cached, len(reply.body), body=reply.body, media_type=manifest.media_type
        )
        return cached.fetched(ref)

    # -- answers from the shared tier (bodies hashed again by the cache) ------------------

    async def _from_shared(self, kind: str, digest: str, parse: Callable[[bytes, str], T]) -> T | None:
        """The shared tier's verified body for ``digest``, parsed; an unparsable one is rejected."""
        found = await self.cache.shared_body(kind, digest)
        if found is None:
            return None
        try:
            return parse(*found)
        except LookupFailed as exc:
            if exc.context.get("per_review") is not None:
                raise  # the review's own bound, not the entry's fault
            await self.cache.reject_shared(("content", kind, digest), "malformed")
            return None

    async def _shared_manifest(self, ref: Reference, digest: str) -> Fetched | None:
        def parse(body: bytes, media_type: str) -> _CachedManifest:
            manifest = media.parse_manifest(body, media_type or None)
            return _CachedManifest(digest, manifest.media_type, manifest, len(body))

        cached = await self._from_shared("manifest", digest, parse)
        if cached is None:
            return None
        self.cache.put_content("manifest", digest, cached, cached.size)
        return cached.fetched(ref)

    async def _shared_tagged(self, ref: Reference, tag: str) -> Fetched | None:
        digest = await self.cache.shared_tag(self._tag_key(ref, tag), self.fingerprint(ref))
        return None if digest is None else await self._shared_manifest(ref, digest)

    async def _shared_config(self, digest: str) -> ImageConfig | None:
        found = await self._from_shared("config", digest, lambda body, _: (media.parse_config(body), len(body)))
        if found is None:
            return None
        config, size = found
        self.cache.put_content("config", digest, config, size)
        return config

    async def _head_digest(self, entry: RegistryHost, ref: Reference, tag: str) -> str:
        path = self._manifest_path(ref, tag)
        what = f"{ref.name}:{tag}"
        reply = await self.call(entry, "HEAD", path, KIND_MANIFEST, ref.repository, what, accept=media.ACCEPT)
        header = reply.headers.get("Docker-Content-Digest")
        if reply.status == 200 and digests.is_digest(header):
            assert header is not None
            length = reply.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > media.MAX_BODY:
                raise LookupFailed(f"{what}: manifest over {mib(media.MAX_BODY)} refused ({length} bytes)")
            self.cache.put_tag(self._tag_key(ref, tag), header, scope=self.fingerprint(ref))
            return header
        if reply.status == 200 or reply.status in HEAD_FALLBACK_STATUSES:
            fetched = await self._get_manifest_by_tag(entry, ref, tag)
            return fetched.digest
        raise self._transport.http_error(self._config, reply, "HEAD", path, what)

    # -- tags ---------------------------------------------------------------------------

    async def list_tags(
        self, ref: Reference, *, page_size: int = 1000, max_pages: int = 10
    ) -> tuple[list[str], bool]:
        """The tags of ``ref``'s repository and whether that is all of them.

        ``GET /v2/<name>/tags/list?n=…`` and its ``Link: <…>; rel="next"`` pages (only
        those on this repository's list), at most ``max_pages``: a repository may hold
        tens of thousands of tags; past the bound, the tags read so far and ``False``.
        """
        entry = self._config.host(ref.registry)
        base = f"/v2/{ref.repository}/tags/list"
        path = f"{base}?n={page_size}"
        tags: list[str] = []
        for _ in range(max(1, max_pages)):
            what = f"the tags of {ref.name}"
            reply = await self.call(entry, "GET", path, KIND_MANIFEST, ref.repository, what, accept="application/json")
            if reply.status != 200:
                raise self._transport.http_error(self._config, reply, "GET", path, what)
            try:
                page = jsonread.read(reply.body, "the registry's tag list", max_values=TAG_PAGE_VALUES)
            except LookupFailed as exc:
                raise LookupFailed(
                    f"{what}: {exc.message}", context={**exc.context, "registry": reply.host}
                ) from None
            if not isinstance(page, dict):
                raise LookupFailed(f"{what}: the registry's tag list is not a JSON object")
            listed = page.get("tags") or []
            if not isinstance(listed, list):
                listed = []
            tags.extend(t for t in listed if isinstance(t, str))
            link = reply.headers.get("Link", "")
            following = _next_page(link, base)
            if following is None:  # the end, or a next page elsewhere (not followed: incomplete)
                return tags, "next" not in link
            path = following
        return tags, False

    # -- configs ------------------------------------------------------------------------

    async def _get_config(self, entry: RegistryHost, ref: Reference, digest: str) -> ImageConfig:
        path = f"/v2/{ref.repository}/blobs/{digest}"
        what = f"image config {digest} of {ref.name}"
        reply = await self.call(entry, "GET", path, KIND_BLOB, ref.repository, what, accept=None)
        if reply.status != 200:
            raise self._transport.http_error(self._config, reply, "GET", path, what)
        actual = await self.digest_of(reply, digest.partition(":")[0])
        if actual != digest:
            raise LookupFailed(
                f"{what} does not match its digest (got {actual})",
                context={"registry": reply.host, "code": "DIGEST_MISMATCH"},
            )
        try:
            config = media.parse_config(reply.body)
        except LookupFailed as exc:
            raise LookupFailed(
                f"{what}: {exc.message}", context={"code": "INVALID", **exc.context, "registry": reply.host}
            ) from None
        self.cache.put_content("config", digest, config, len(reply.body), body=reply.body)
        return config

    # -- one logical request: auth, redirects, limits ------------------------------------

    def _url(self, entry: RegistryHost, path: str) -> URL:
        scheme = "http" if entry.insecure else "https"
        return URL(f"{scheme}://{entry.api_host}{path}", encoded=True)

    async def call(
        self,
        entry: RegistryHost,
        method: str,
        path: str,
        kind: str,
        repository: str,
        what: str,
        *,
        accept: str | None,
        max_values: int | None = None,
    ) -> Reply:
        """One request with at most one authentication round (:mod:`controller.registry.handshake`).

        ``max_values``: the JSON values the body may hold, counted as it is read.
        """
        return await self._shared.handshake.call(
            self._config, entry, method, self._url(entry, path), path, kind, repository, what,
            accept=accept, max_values=max_values,
        )


@dataclass(frozen=True)
class _CachedManifest:
    digest: str
    media_type: str
    manifest: ImageIndex | ImageManifest
    size: int

    def fetched(self, ref: Reference) -> Fetched:
        return Fetched(ref, self.digest, self.media_type, self.manifest, self.size)
