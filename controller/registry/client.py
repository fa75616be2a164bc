"""The async OCI registry client every lookup goes through.

One aiohttp session per client (created lazily inside the running loop), one
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

Where requests may go (SPEC §9):

- only the image's registry, its configured mirrors, the bearer realm that
  registry names, and, for blob GETs only, the storage host of a 307;
  manifests and tokens follow redirects on the same host only;
- ``http://`` only for hosts configured ``insecure`` (no https → http
  downgrade on redirects);
- a host that is an IP literal or resolves to a non-public address only when
  it is configured explicitly (:mod:`controller.registry.addresses`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from controller import __version__
from controller.errors import LookupFailed
from controller.reference import Reference
from controller.registry import auth, media
from controller.registry.addresses import (
    GuardedResolver,
    PrivateAddressError,
    address_verdict,
    split_hostport,
)
from controller.registry.cache import RegistryCache, TTLMap
from controller.registry.config import DOCKER_HUB, DOCKER_HUB_API, RegistryConfig, RegistryHost
from controller.registry.media import ImageConfig, ImageIndex, ImageManifest

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_REDIRECTS = 3
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: HEAD answers that mean "ask with GET instead" (a HEAD 404 has no body to tell why).
HEAD_FALLBACK_STATUSES = frozenset({404, 405, 501})
ADDRESS_VERDICT_TTL = 10.0
USER_AGENT = f"baseguard/{__version__}"

KIND_MANIFEST = "manifest"
KIND_BLOB = "blob"
KIND_TOKEN = "token"
KIND_PING = "ping"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


# ------------------------------------------------------------------ public data


@dataclass(frozen=True)
class Fetched:
    """A manifest or index as fetched: ``digest`` is the sha256 of the exact bytes."""

    reference: Reference
    digest: str
    media_type: str
    manifest: ImageIndex | ImageManifest
    size: int


@dataclass
class RequestStats:
    """Counters the bench and the webhook metrics read. Plain ints: one loop, no locks."""

    total: int = 0
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, kind)
    by_host: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    cache_hits: int = 0  # answered from cache (content, tag, or a remembered failure)
    cache_misses: int = 0  # had to ask (or join someone asking)
    coalesced: int = 0  # joined an identical request already in flight

    def count(self, method: str, kind: str, host: str) -> None:
        self.total += 1
        self.by_kind[(method, kind)] += 1
        self.by_host[host] += 1

    def requests(self, method: str | None = None, kind: str | None = None) -> int:
        return sum(
            n
            for (m, k), n in self.by_kind.items()
            if (method is None or m == method) and (kind is None or k == kind)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_kind": {f"{m} {k}": n for (m, k), n in sorted(self.by_kind.items())},
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "coalesced": self.coalesced,
        }


# ------------------------------------------------------------------ internals


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    host: str  # host[:port] that answered
    url: URL


def _hostport(url: URL) -> str:
    host = url.host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.explicit_port}" if url.explicit_port is not None else host


def _hash(body: bytes, algorithm: str) -> str:
    if algorithm == "sha256":
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if algorithm == "sha512":
        return "sha512:" + hashlib.sha512(body).hexdigest()
    raise LookupFailed(f"unsupported digest algorithm {algorithm!r}")


def _valid_digest(value: str | None) -> bool:
    if not value or ":" not in value:
        return False
    algorithm, _, hexpart = value.partition(":")
    lengths = {"sha256": 64, "sha512": 128}
    return (
        algorithm in lengths
        and len(hexpart) == lengths[algorithm]
        and all(c in "0123456789abcdef" for c in hexpart)
    )


def _error_detail(body: bytes) -> tuple[str | None, str | None]:
    """``{"errors":[{"code","message"}]}`` → (code, message); unknown codes stay as sent."""
    import json

    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    errors = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    code, message = errors[0].get("code"), errors[0].get("message")
    return (
        str(code) if isinstance(code, str) and code else "UNKNOWN",
        str(message)[:200] if isinstance(message, str) else None,
    )


def _retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _Shared:
    """State a client shares with the views :meth:`RegistryClient.with_config` makes."""

    def __init__(self, cache: RegistryCache) -> None:
        self.cache = cache
        self.tokens = auth.TokenCache(clock=cache.clock)
        self.stats = RequestStats()
        self.session: aiohttp.ClientSession | None = None
        self.semaphores: dict[str, asyncio.Semaphore] = {}
        self.ssl_contexts: dict[str | None, Any] = {}
        self.challenges: dict[str, auth.Challenge] = {}
        self.explicit_names: set[str] = set()
        self.address_verdicts: TTLMap[str, str] = TTLMap(
            ttl=ADDRESS_VERDICT_TTL, clock=cache.clock, max_entries=10_000
        )

    def allow_name(self, host: str) -> bool:
        return host in self.explicit_names


# ------------------------------------------------------------------ the client


class RegistryClient:
    """Fetch manifests, indexes and configs; resolve tags. Shared by everything async.

    Use as ``async with RegistryClient(config) as client: ...`` or call
    :meth:`close`. :meth:`with_config` derives a view with other credentials
    (pull secrets) that shares this client's session, cache and limits.
    """

    def __init__(self, config: RegistryConfig, *, cache: RegistryCache | None = None) -> None:
        self._config = config
        self._shared = _Shared(cache if cache is not None else RegistryCache())
        self._register_names(config)

    # -- lifecycle ----------------------------------------------------------------

    def with_config(self, config: RegistryConfig) -> RegistryClient:
        """A client for ``config`` (e.g. ``config.with_credentials(pull_secrets)``) sharing state."""
        view = object.__new__(RegistryClient)
        view._config = config
        view._shared = self._shared
        view._register_names(config)
        return view

    def _register_names(self, config: RegistryConfig) -> None:
        names = self._shared.explicit_names
        for entry in config.hosts.values():
            for hostport in (entry.host, *entry.mirrors):
                names.add(split_hostport(hostport)[0])
            if entry.host == DOCKER_HUB:
                names.add(DOCKER_HUB_API)

    @property
    def config(self) -> RegistryConfig:
        return self._config

    @property
    def cache(self) -> RegistryCache:
        return self._shared.cache

    @property
    def stats(self) -> RequestStats:
        self._shared.stats.coalesced = self._shared.cache.flights.joined
        return self._shared.stats

    async def close(self) -> None:
        self._shared.cache.flights.cancel_all()
        session, self._shared.session = self._shared.session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _session(self) -> aiohttp.ClientSession:
        session = self._shared.session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._shared.allow_name),
                ttl_dns_cache=int(ADDRESS_VERDICT_TTL),
                limit=256,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._shared.session = session
        return session

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
        return await self._flight(
            self._tag_flight(ref, tag),
            lambda: self._mirrored(ref, lambda entry: self._get_manifest_by_tag(entry, ref, tag)),
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
            self._shared.stats.cache_hits += 1
            return known
        fetching = self.cache.flights.pending(self._tag_flight(ref, tag))
        if fetching is not None:  # a GET of this tag is under way: its digest answers us too
            self._shared.stats.coalesced += 1
            fetched: Fetched = await asyncio.shield(fetching)
            return fetched.digest
        return await self._flight(
            ("digest", ref.registry, ref.repository, tag, self._fp(ref)),
            lambda: self._mirrored(ref, lambda entry: self._head_digest(entry, ref, tag)),
        )

    async def fetch_config(self, ref: Reference, manifest: ImageManifest) -> ImageConfig:
        """The image config blob ``manifest.config`` names: verified, size-capped, cached."""
        desc = manifest.config
        if not _valid_digest(desc.digest):
            raise LookupFailed(f"image config of {ref.name} has a malformed digest {desc.digest!r}")
        if desc.size > media.MAX_BODY:
            raise LookupFailed(
                f"image config {desc.digest} of {ref.name} is {desc.size} bytes: "
                f"config over {_mib(media.MAX_BODY)} refused"
            )
        cached = self.cache.get_content("config", desc.digest)
        if isinstance(cached, ImageConfig):
            self._shared.stats.cache_hits += 1
            return cached
        return await self._flight(
            ("config", ref.registry, ref.repository, desc.digest, self._fp(ref)),
            lambda: self._mirrored(ref, lambda entry: self._get_config(entry, ref, desc.digest)),
        )

    async def ping(self, registry: str) -> None:
        """``GET /v2/``: reachable when it answers 200 or 401 (auth comes per repository)."""
        entry = self._config.host(registry)
        reply = await self._send_hops(
            entry, "GET", self._url(entry, "/v2/"), KIND_PING, authorization=None, accept=None,
            limit=MAX_ERROR_BODY,
        )
        if reply.status not in (200, 401):
            raise self._http_error(reply, "GET", "/v2/", f"registry {entry.host}")

    # -- caching plumbing -------------------------------------------------------------

    def _tag_key(self, ref: Reference, tag: str) -> Hashable:
        return (ref.registry, ref.repository, tag)

    def _tag_flight(self, ref: Reference, tag: str) -> Hashable:
        return ("manifest-tag", ref.registry, ref.repository, tag, self._fp(ref))

    def _fp(self, ref: Reference) -> str:
        return auth.fingerprint(self._config.host(ref.registry).credentials)

    async def _flight(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Negative cache, then single-flight: one request per key however many ask."""
        cache = self.cache
        try:
            cache.check_failure(key)
        except LookupFailed:
            self._shared.stats.cache_hits += 1
            raise
        self._shared.stats.cache_misses += 1

        async def remembered() -> T:
            try:
                return await work()
            except LookupFailed as exc:
                retry_after = exc.context.get("retry_after")
                cache.put_failure(
                    key, exc, retry_after=retry_after if isinstance(retry_after, float) else None
                )
                raise

        return await cache.single_flight(key, remembered)

    async def _mirrored(self, ref: Reference, op: Callable[[RegistryHost], Awaitable[T]]) -> T:
        """Try each configured mirror, then the registry itself; the registry's error wins."""
        entry = self._config.host(ref.registry)
        for mirror in entry.mirrors:
            try:
                return await op(self._config.host(mirror))
            except LookupFailed as exc:
                log.debug("mirror %s failed for %s: %s", mirror, ref.name, exc.message)
        return await op(entry)

    # -- manifests ----------------------------------------------------------------------

    async def _manifest_by_digest(self, ref: Reference, digest: str) -> Fetched:
        if not _valid_digest(digest):
            raise LookupFailed(f"{ref.name}@{digest}: unsupported or malformed digest")
        cached = self.cache.get_content("manifest", digest)
        if isinstance(cached, _CachedManifest):
            self._shared.stats.cache_hits += 1
            return cached.fetched(ref)
        return await self._flight(
            ("manifest", ref.registry, ref.repository, digest, self._fp(ref)),
            lambda: self._mirrored(ref, lambda entry: self._get_manifest_by_digest(entry, ref, digest)),
        )

    def _manifest_path(self, ref: Reference, tag_or_digest: str) -> str:
        return f"/v2/{ref.repository}/manifests/{tag_or_digest}"

    async def _get_manifest_by_digest(self, entry: RegistryHost, ref: Reference, digest: str) -> Fetched:
        path = self._manifest_path(ref, digest)
        what = f"{ref.name}@{digest}"
        reply = await self._call(entry, "GET", path, KIND_MANIFEST, ref.repository, what, accept=media.ACCEPT)
        if reply.status != 200:
            raise self._http_error(reply, "GET", path, what)
        actual = _hash(reply.body, digest.partition(":")[0])
        if actual != digest:
            raise LookupFailed(
                f"manifest for {what} does not match its digest (got {actual})",
                context={"registry": reply.host, "path": path, "code": "DIGEST_MISMATCH"},
            )
        return self._store_manifest(ref, digest, reply, what)

    async def _get_manifest_by_tag(self, entry: RegistryHost, ref: Reference, tag: str) -> Fetched:
        path = self._manifest_path(ref, tag)
        what = f"{ref.name}:{tag}"
        reply = await self._call(entry, "GET", path, KIND_MANIFEST, ref.repository, what, accept=media.ACCEPT)
        if reply.status != 200:
            raise self._http_error(reply, "GET", path, what)
        header = reply.headers.get("Docker-Content-Digest")
        digest = _hash(reply.body, "sha256")
        if header and _valid_digest(header):
            actual = _hash(reply.body, header.partition(":")[0])
            if actual != header:
                raise LookupFailed(
                    f"manifest for {what} does not match the registry's Docker-Content-Digest "
                    f"{header} (got {actual})",
                    context={"registry": reply.host, "path": path, "code": "DIGEST_MISMATCH"},
                )
            digest = header
        fetched = self._store_manifest(ref, digest, reply, what)
        self.cache.put_tag(self._tag_key(ref, tag), digest)
        return fetched

    def _store_manifest(self, ref: Reference, digest: str, reply: _Reply, what: str) -> Fetched:
        try:
            manifest = media.parse_manifest(reply.body, reply.headers.get("Content-Type"))
        except LookupFailed as exc:
            raise LookupFailed(
                f"manifest for {what}: {exc.message}", context={"registry": reply.host, "code": "INVALID"}
            ) from None
        cached = _CachedManifest(digest, manifest.media_type, manifest, len(reply.body))
        self.cache.put_content("manifest", digest, cached, len(reply.body))
        return cached.fetched(ref)

    async def _head_digest(self, entry: RegistryHost, ref: Reference, tag: str) -> str:
        path = self._manifest_path(ref, tag)
        what = f"{ref.name}:{tag}"
        reply = await self._call(entry, "HEAD", path, KIND_MANIFEST, ref.repository, what, accept=media.ACCEPT)
        header = reply.headers.get("Docker-Content-Digest")
        if reply.status == 200 and _valid_digest(header):
            assert header is not None
            length = reply.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > media.MAX_BODY:
                raise LookupFailed(f"{what}: manifest over {_mib(media.MAX_BODY)} refused ({length} bytes)")
            self.cache.put_tag(self._tag_key(ref, tag), header)
            return header
        if reply.status == 200 or reply.status in HEAD_FALLBACK_STATUSES:
            fetched = await self._get_manifest_by_tag(entry, ref, tag)
            return fetched.digest
        raise self._http_error(reply, "HEAD", path, what)

    # -- configs ------------------------------------------------------------------------

    async def _get_config(self, entry: RegistryHost, ref: Reference, digest: str) -> ImageConfig:
        path = f"/v2/{ref.repository}/blobs/{digest}"
        what = f"image config {digest} of {ref.name}"
        reply = await self._call(entry, "GET", path, KIND_BLOB, ref.repository, what, accept=None)
        if reply.status != 200:
            raise self._http_error(reply, "GET", path, what)
        actual = _hash(reply.body, digest.partition(":")[0])
        if actual != digest:
            raise LookupFailed(
                f"{what} does not match its digest (got {actual})",
                context={"registry": reply.host, "code": "DIGEST_MISMATCH"},
            )
        try:
            config = media.parse_config(reply.body)
        except LookupFailed as exc:
            raise LookupFailed(
                f"{what}: {exc.message}", context={"registry": reply.host, "code": "INVALID"}
            ) from None
        self.cache.put_content("config", digest, config, len(reply.body))
        return config

    # -- one logical request: auth, redirects, limits ------------------------------------

    def _url(self, entry: RegistryHost, path: str) -> URL:
        scheme = "http" if entry.insecure else "https"
        return URL(f"{scheme}://{entry.api_host}{path}", encoded=True)

    def _semaphore(self, api_host: str, entry: RegistryHost) -> asyncio.Semaphore:
        sem = self._shared.semaphores.get(api_host)
        if sem is None:
            limit = entry.max_concurrency or self._config.max_concurrency
            sem = self._shared.semaphores[api_host] = asyncio.Semaphore(limit)
        return sem

    def _timeout(self, entry: RegistryHost) -> float:
        return entry.timeout if entry.timeout is not None else self._config.timeout

    def _preemptive(self, entry: RegistryHost, repository: str) -> tuple[str | None, bool]:
        """(Authorization to send up front, whether it is a cached bearer token)."""
        creds = entry.credentials
        if creds.token:
            return f"Bearer {creds.token}", False
        challenge = self._shared.challenges.get(entry.api_host)
        if challenge is None:
            return None, False
        if challenge.scheme == "basic":
            return (auth.basic_authorization(creds), False) if creds.has_basic else (None, False)
        token = self._shared.tokens.get(auth.token_key(challenge, auth.pull_scope(repository), creds))
        return (f"Bearer {token.value}", True) if token is not None else (None, False)

    async def _call(
        self,
        entry: RegistryHost,
        method: str,
        path: str,
        kind: str,
        repository: str,
        what: str,
        *,
        accept: str | None,
    ) -> _Reply:
        """One request to a registry host with at most one authentication round.

        401 → answer the challenge (fetch a token or use basic credentials) →
        retry once. A second 401 is final: no loops.
        """
        creds = entry.credentials
        url = self._url(entry, path)
        async with self._semaphore(entry.api_host, entry):
            authorization, cached_token = self._preemptive(entry, repository)
            reply = await self._send_hops(
                entry, method, url, kind, authorization=authorization, accept=accept, limit=media.MAX_BODY
            )
            if reply.status != 401:
                return reply
            if creds.token:
                raise LookupFailed(
                    f"authentication refused by {entry.api_host} (401 with the configured token)",
                    context={"registry": entry.api_host, "status": 401, "code": "UNAUTHORIZED"},
                )
            challenge = auth.pick_challenge(reply.headers.get("WWW-Authenticate"))
            if challenge is None:
                raise self._http_error(reply, method, path, what)
            self._shared.challenges[entry.api_host] = challenge
            if challenge.scheme == "basic":
                if not creds.has_basic:
                    raise LookupFailed(
                        f"registry {entry.api_host} requires credentials (Basic) and none are "
                        f"configured for {entry.host} ({method} {path})",
                        context={"registry": entry.api_host, "status": 401, "code": "UNAUTHORIZED"},
                    )
                if authorization is not None:
                    raise LookupFailed(
                        f"authentication refused by {entry.api_host} (401 with basic credentials)",
                        context={"registry": entry.api_host, "status": 401, "code": "UNAUTHORIZED"},
                    )
                authorization = auth.basic_authorization(creds)
                reply = await self._send_hops(
                    entry, method, url, kind, authorization=authorization, accept=accept, limit=media.MAX_BODY
                )
                if reply.status == 401:
                    raise LookupFailed(
                        f"authentication refused by {entry.api_host} (401 with basic credentials)",
                        context={"registry": entry.api_host, "status": 401, "code": "UNAUTHORIZED"},
                    )
                return reply
            # Bearer. A refused cached token (expired early, signer rotated) earns one fresh
            # token; a refused fresh token is final.
            scope = auth.pull_scope(repository)
            key = auth.token_key(challenge, scope, creds)
            if cached_token:
                self._shared.tokens.discard(key)
            token = await self._token(entry, challenge, scope)
            reply = await self._send_hops(
                entry, method, url, kind, authorization=f"Bearer {token.value}", accept=accept,
                limit=media.MAX_BODY,
            )
            if reply.status == 401:
                self._shared.tokens.discard(key)
                raise self._refused(entry, reply, scope)
            return reply

    def _refused(self, entry: RegistryHost, reply: _Reply, scope: str) -> LookupFailed:
        challenge = auth.pick_challenge(reply.headers.get("WWW-Authenticate"))
        detail = f": {challenge.error} for {scope}" if challenge and challenge.error else ""
        return LookupFailed(
            f"authentication refused by {entry.api_host} (401 after token){detail}",
            context={
                "registry": entry.api_host,
                "status": 401,
                "code": "DENIED" if detail else "UNAUTHORIZED",
            },
        )

    async def _token(self, entry: RegistryHost, challenge: auth.Challenge, scope: str) -> auth.Token:
        creds = entry.credentials
        key = auth.token_key(challenge, scope, creds)
        cached = self._shared.tokens.get(key)
        if cached is not None:
            return cached

        async def fetch() -> auth.Token:
            token = await self._fetch_token(entry, challenge, scope)
            self._shared.tokens.put(key, token)
            return token

        return await self.cache.single_flight(("token", key), fetch)

    async def _fetch_token(self, entry: RegistryHost, challenge: auth.Challenge, scope: str) -> auth.Token:
        creds = entry.credentials
        scopes = tuple(dict.fromkeys(s for s in (scope, challenge.scope) if s))
        request = auth.token_request(challenge, scopes, creds)
        realm = URL(request.url)
        if realm.scheme not in ("http", "https") or not realm.host:
            raise LookupFailed(
                f"registry {entry.api_host} named an unusable token realm {request.url!r}",
                context={"registry": entry.api_host, "code": "TOKEN"},
            )
        realm_host = _hostport(realm)
        if realm.scheme == "http" and not (
            self._config.host(realm_host).insecure or (realm_host == entry.api_host and entry.insecure)
        ):
            raise LookupFailed(
                f"registry {entry.api_host} named a plain-http token realm on {realm_host}; "
                f"refused (configure {realm_host} as insecure to allow)",
                context={"registry": entry.api_host, "code": "TOKEN"},
            )
        if request.params:
            realm = realm.extend_query(list(request.params))
        reply = await self._send_hops(
            entry,
            request.method,
            realm,
            KIND_TOKEN,
            authorization=request.authorization,
            accept="application/json",
            limit=MAX_TOKEN_BODY,
            form=request.form,
        )
        if reply.status in (401, 403):
            who = "the credentials" if not creds.empty else "an anonymous token"
            raise LookupFailed(
                f"token server {realm_host} refused {who} for {entry.host} ({scope}, HTTP {reply.status})",
                context={"registry": entry.api_host, "status": reply.status, "code": "UNAUTHORIZED"},
            )
        if reply.status != 200:
            raise LookupFailed(
                f"token server {realm_host} answered HTTP {reply.status} for {entry.host}",
                context={"registry": entry.api_host, "status": reply.status, "code": "TOKEN"},
            )
        return auth.parse_token_response(reply.body, now=self.cache.clock(), where=realm_host)

    def _explicit(self, hostport: str) -> bool:
        if self._config.is_explicit(hostport):
            return True
        return hostport == DOCKER_HUB_API and self._config.is_explicit(DOCKER_HUB)

    async def _check_address(self, hostport: str) -> None:
        """Refuse hosts that are, or resolve to, non-public addresses unless configured."""
        if self._explicit(hostport):
            return
        host, port = split_hostport(hostport)
        verdict = self._shared.address_verdicts.get(host)
        if verdict is None:
            verdict = await address_verdict(host, port)
            self._shared.address_verdicts.put(host, verdict)
        if verdict:
            raise LookupFailed(
                f"registry host {hostport} {verdict}; configure it explicitly to allow",
                context={"registry": hostport, "code": "PRIVATE_ADDRESS"},
            )

    def _ssl_for(self, hostport: str) -> Any:
        ca_file = self._config.host(hostport).ca_file
        ctx = self._shared.ssl_contexts.get(ca_file)
        if ctx is None:
            import ssl

            ctx = ssl.create_default_context()
            if ca_file is not None:
                ctx.load_verify_locations(cafile=ca_file)
            self._shared.ssl_contexts[ca_file] = ctx
        return ctx

    def _insecure_ok(self, hostport: str) -> bool:
        return self._config.host(hostport).insecure

    async def _send_hops(
        self,
        entry: RegistryHost,
        method: str,
        url: URL,
        kind: str,
        *,
        authorization: str | None,
        accept: str | None,
        limit: int,
        form: Mapping[str, str] | None = None,
    ) -> _Reply:
        """Send, following at most :data:`MAX_REDIRECTS` redirects under the rules above."""
        timeout = self._timeout(entry)
        origin = url
        for hop in range(MAX_REDIRECTS + 1):
            hostport = _hostport(url)
            await self._check_address(hostport)
            reply = await self._send(
                method, url, kind, hostport, authorization=authorization, accept=accept,
                limit=limit, budget=timeout, form=form,
            )
            if reply.status not in REDIRECT_STATUSES:
                return reply
            where = f"{_hostport(origin)} {method} {origin.path}"
            if hop == MAX_REDIRECTS:
                raise LookupFailed(
                    f"too many redirects ({where})", context={"registry": hostport, "code": "REDIRECT"}
                )
            location = reply.headers.get("Location")
            if not location:
                raise LookupFailed(
                    f"redirect without a Location ({where})", context={"registry": hostport, "code": "REDIRECT"}
                )
            target = url.join(URL(location, encoded=True))  # keep signed storage URLs byte-exact
            target_host = _hostport(target)
            if target.scheme not in ("http", "https") or not target.host:
                raise LookupFailed(
                    f"redirect to an unusable URL refused ({where})", context={"registry": hostport, "code": "REDIRECT"}
                )
            if target.scheme == "http" and url.scheme == "https" and not self._insecure_ok(target_host):
                raise LookupFailed(
                    f"redirect from https to plain http://{target_host} refused ({where})",
                    context={"registry": hostport, "code": "REDIRECT"},
                )
            if (target.scheme, target_host) != (url.scheme, hostport):
                if kind != KIND_BLOB:
                    raise LookupFailed(
                        f"registry {hostport} redirected a {kind} request to another host "
                        f"({target_host}); refused ({where})",
                        context={"registry": hostport, "code": "REDIRECT"},
                    )
                authorization = None  # never forward credentials to storage
            if reply.status == 303:
                method = "GET"
            url = target
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        url: URL,
        kind: str,
        hostport: str,
        *,
        authorization: str | None,
        accept: str | None,
        limit: int,
        budget: float,
        form: Mapping[str, str] | None,
    ) -> _Reply:
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        if authorization:
            headers["Authorization"] = authorization
        where = f"{method} {url.path}"
        self._shared.stats.count(method, kind, hostport)
        started = time.monotonic()
        session = self._session()
        try:
            async with asyncio.timeout(budget):
                async with session.request(
                    method,
                    url,
                    headers=headers,
                    data=dict(form) if form is not None else None,
                    allow_redirects=False,
                    ssl=self._ssl_for(hostport) if url.scheme == "https" else True,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=budget, sock_read=budget),
                ) as resp:
                    if method == "HEAD":
                        body = b""
                    elif resp.status == 200:
                        body = await _read_capped(resp, limit, kind, hostport, where)
                    else:
                        body = await _read_prefix(resp, MAX_ERROR_BODY)
                    reply = _Reply(resp.status, resp.headers, body, hostport, url)
        except TimeoutError:
            raise LookupFailed(
                f"registry {hostport} did not answer within {budget:g}s ({where})",
                context={"registry": hostport, "code": "TIMEOUT"},
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise LookupFailed(
                f"TLS verification failed for registry {hostport}: {exc.certificate_error} ({where})",
                context={"registry": hostport, "code": "TLS"},
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise LookupFailed(
                f"TLS handshake with registry {hostport} failed: {exc.os_error} ({where})",
                context={"registry": hostport, "code": "TLS"},
            ) from None
        except aiohttp.ClientConnectorError as exc:
            refused = exc.os_error
            if isinstance(refused, PrivateAddressError):
                raise LookupFailed(
                    f"registry host {hostport} resolves to a {refused.kind} address "
                    f"({refused.address}); configure it explicitly to allow",
                    context={"registry": hostport, "code": "PRIVATE_ADDRESS"},
                ) from None
            reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
            raise LookupFailed(
                f"cannot connect to registry {hostport}: {reason} ({where})",
                context={"registry": hostport, "code": "CONNECT"},
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                ConnectionError):
            raise LookupFailed(
                f"registry {hostport} closed the connection ({where})",
                context={"registry": hostport, "code": "DISCONNECTED"},
            ) from None
        except aiohttp.ClientResponseError as exc:
            raise LookupFailed(
                f"registry {hostport} sent an invalid HTTP response: {exc.message} ({where})",
                context={"registry": hostport, "code": "PROTOCOL"},
            ) from None
        except aiohttp.ClientError as exc:
            raise LookupFailed(
                f"request to registry {hostport} failed: {type(exc).__name__} ({where})",
                context={"registry": hostport},
            ) from None
        self._shared.stats.by_status[reply.status] += 1
        log.debug(
            "%s %s%s -> %d (%.0f ms)", method, hostport, url.path, reply.status,
            (time.monotonic() - started) * 1000,
        )
        return reply

    def _scrub(self, text: str, host: str) -> str:
        """Registry-provided text with this host's secrets masked: a registry that echoes
        the credential back must not put it into a denial (seen by pod authors) or the log."""
        creds = self._config.host(host).credentials
        for secret in (creds.password, creds.token, creds.identity_token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        if creds.has_basic:
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            text = text.replace(basic, "***")
        return text

    def _http_error(self, reply: _Reply, method: str, path: str, what: str) -> LookupFailed:
        code, message = _error_detail(reply.body)
        if reply.status in (401, 403):
            message = None  # an auth refusal's text is where registries echo what they were sent
        elif message:
            message = self._scrub(message, reply.host)
        context: dict[str, Any] = {
            "registry": reply.host, "status": reply.status, "code": code, "method": method, "path": path,
        }
        if reply.status == 429:
            retry_after = _retry_after(reply.headers)
            context["retry_after"] = retry_after
            after = f", retry after {retry_after:g}s" if retry_after is not None else ""
            return LookupFailed(
                f"{what}: registry {reply.host} is rate-limiting requests (HTTP 429{after})",
                context=context,
            )
        if reply.status == 401:
            return LookupFailed(
                f"{what}: registry {reply.host} answered 401 without a usable challenge", context=context
            )
        if code is not None:
            text = f"{code}: {message}" if message else code
            return LookupFailed(f"{what}: {text} (HTTP {reply.status} from {reply.host})", context=context)
        return LookupFailed(
            f"{what}: registry {reply.host} answered HTTP {reply.status} ({method} {path})", context=context
        )


@dataclass(frozen=True)
class _CachedManifest:
    digest: str
    media_type: str
    manifest: ImageIndex | ImageManifest
    size: int

    def fetched(self, ref: Reference) -> Fetched:
        return Fetched(ref, self.digest, self.media_type, self.manifest, self.size)


async def _read_capped(
    resp: aiohttp.ClientResponse, limit: int, kind: str, hostport: str, where: str
) -> bytes:
    """Read at most ``limit`` bytes; refuse on the Content-Length, or as soon as the stream passes it."""
    what = "manifest" if kind == KIND_MANIFEST else "config" if kind == KIND_BLOB else "response"
    length = resp.content_length
    if length is not None and length > limit:
        raise LookupFailed(
            f"{what} over {_mib(limit)} refused ({hostport} {where}, Content-Length {length})",
            context={"registry": hostport, "code": "TOO_LARGE"},
        )
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            resp.close()
            raise LookupFailed(
                f"{what} over {_mib(limit)} refused ({hostport} {where})",
                context={"registry": hostport, "code": "TOO_LARGE"},
            )
    return bytes(buf)


async def _read_prefix(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(16 * 1024):
        buf += chunk
        if len(buf) >= limit:
            resp.close()
            break
    return bytes(buf[:limit])
