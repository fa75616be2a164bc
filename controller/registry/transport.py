"""How a registry request travels: session, limits, TLS, address guard, redirects, errors.

:mod:`controller.registry.client` decides *what* to ask (which manifest, which
token, what to cache); this module decides *how* a request goes out and what a
failure is called — go-containerregistry's ``remote`` vs ``transport`` split.
The client owns the authentication handshake because it needs the cache and
the challenge it learnt; everything below it is here:

- one aiohttp session (created lazily inside the running loop), its resolver
  refusing non-public addresses for names nobody configured;
- per-host concurrency limits, shared fairly between namespaces
  (:mod:`controller.registry.limits`), and per-request timeouts, read from
  :meth:`RegistryConfig.concurrency_for` / :meth:`RegistryConfig.timeout_for`;
- TLS contexts per CA file;
- where a request may go (docs/threat-model.md): only the image's registry, its configured
  mirrors, the bearer realm that registry names, and, for blob GETs only, the
  storage host of a 307; manifests and tokens follow redirects on the same
  host only; ``http://`` only for hosts configured ``insecure``;
- the error table: each aiohttp/OS failure becomes one
  :class:`~controller.errors.LookupFailed` with a ``code``;
- scrubbing: registry-provided text never carries the credentials we sent;
- ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``: honoured, and the address guard
  still applies to the *registry* host before anything is sent (a proxy would
  otherwise resolve a hostile name for us); the proxy itself is configuration
  and may be private.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from controller import __version__
from controller.caching import Clock, TTLMap
from controller.errors import LookupFailed
from controller.registry import jsonread
from controller.registry.addresses import (
    GuardedResolver,
    PrivateAddressError,
    address_verdict,
    split_hostport,
)
from controller.registry.bodies import read_capped, read_prefix
from controller.registry.config import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Credentials,
    RegistryConfig,
    RegistryHost,
)
from controller.registry.limits import (
    BodyRoom,
    FairSlots,
    HoldOffs,
    current_account,
    current_tenant,
    rate_limit_of,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
MAX_ERROR_BODY = 64 * 1024
#: Values an error body may hold to be read for its code and message (a registry's has a handful).
ERROR_BODY_VALUES = 4096
MAX_TOKEN_BODY = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ADDRESS_VERDICT_TTL = 10.0
USER_AGENT = f"baseguard/{__version__}"

KIND_MANIFEST = "manifest"
KIND_BLOB = "blob"
KIND_TOKEN = "token"
KIND_PING = "ping"


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
    rate_limited: Counter[str] = field(default_factory=Counter)  # 429 answers, by host
    held_off: Counter[str] = field(default_factory=Counter)  # not sent: the host's 429 had not reset

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


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, body already read (capped); ``host`` is the host[:port] that answered."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    host: str
    url: URL
    #: ``sha256:<hex>`` of :attr:`body`, computed as it was read (a 200 answer's body): the
    #: digest every manifest and blob is checked against, with nothing to wait for after
    #: the read, so a body read is a body judged, not one queued for a hasher.
    sha256: str | None = None


def hostport(url: URL) -> str:
    """``host[:port]`` as a registry is named in image references: ASCII, never decoded.

    yarl's ``URL.host`` decodes IDNA: ``xn--80ak6aa92e.com`` would read as a Cyrillic
    lookalike of ``apple.com``. Every message, log line and configuration lookup
    uses the ASCII form (``raw_host``), the one the image reference and the
    registry configuration spell.
    """
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.explicit_port}" if url.explicit_port is not None else host


def error_detail(body: bytes) -> tuple[str | None, str | None]:
    """``{"errors":[{"code","message"}]}`` → (code, message); unknown codes stay as sent.

    Read through :func:`controller.registry.jsonread.read`: a body that is not JSON,
    or too deep or too large to be one a registry writes, says nothing (``None, None``)
    and the answer is reported by its status.
    """
    try:
        obj = jsonread.read(body, "error body", max_values=ERROR_BODY_VALUES)
    except LookupFailed:
        return None, None
    errors = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    code, message = errors[0].get("code"), errors[0].get("message")
    return (
        str(code) if isinstance(code, str) and code else "UNKNOWN",
        str(message)[:200] if isinstance(message, str) else None,
    )


def rate_limited(reply: Reply) -> str:
    """``registry H is rate-limiting requests (HTTP 429, retry after 7s); limit …; resets at …``."""
    limit = rate_limit_of(reply.headers)
    after = f", retry after {limit.reset_after:g}s" if limit.reset_after is not None else ""
    return f"registry {reply.host} is rate-limiting requests (HTTP 429{after}); {limit.describe()}"


def _limit_context(reply: Reply) -> dict[str, Any]:
    limit = rate_limit_of(reply.headers)
    return {"retry_after": limit.reset_after, "rate_limit": limit.limit}


# ------------------------------------------------------------------ the error table

#: (exception type, code, message) in the order they are tried: subclasses first.
#: ``{host}`` and ``{where}`` are filled in; ``{detail}`` comes from the exception.
_ErrorRow = tuple[type[BaseException], str, str, Callable[[BaseException], str]]


def _os_reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is None:
        return str(exc)
    return str(os_error.strerror or os_error or type(os_error).__name__)


_ERROR_TABLE: tuple[_ErrorRow, ...] = (
    (TimeoutError, "TIMEOUT", "registry {host} did not answer within {budget}s ({where})", lambda e: ""),
    (
        aiohttp.ClientConnectorCertificateError,
        "TLS",
        "TLS verification failed for registry {host}: {detail} ({where})",
        lambda e: str(getattr(e, "certificate_error", e)),
    ),
    (
        aiohttp.ClientSSLError,
        "TLS",
        "TLS handshake with registry {host} failed: {detail} ({where})",
        lambda e: str(getattr(e, "os_error", e)),
    ),
    (
        aiohttp.ClientConnectorError,
        "CONNECT",
        "cannot connect to registry {host}: {detail} ({where})",
        _os_reason,
    ),
    (
        aiohttp.ServerDisconnectedError,
        "DISCONNECTED",
        "registry {host} closed the connection ({where})",
        lambda e: "",
    ),
    (aiohttp.ClientPayloadError, "DISCONNECTED", "registry {host} closed the connection ({where})", lambda e: ""),
    (aiohttp.ClientOSError, "DISCONNECTED", "registry {host} closed the connection ({where})", lambda e: ""),
    (ConnectionError, "DISCONNECTED", "registry {host} closed the connection ({where})", lambda e: ""),
    (
        aiohttp.ClientResponseError,
        "PROTOCOL",
        "registry {host} sent an invalid HTTP response: {detail} ({where})",
        lambda e: str(getattr(e, "message", e)),
    ),
    (
        aiohttp.ClientError,
        "",
        "request to registry {host} failed: {detail} ({where})",
        lambda e: type(e).__name__,
    ),
)

#: What :meth:`Transport.send` turns into a :class:`LookupFailed`.
HANDLED = tuple(row[0] for row in _ERROR_TABLE)


def explicit_hint(host: str) -> str:
    """How to allow a registry on a private address: the words a user can act on."""
    return (
        "configure it explicitly to allow: an entry `- host: "
        f"{host}` under `registries:` in --registry-config (in the chart: registryConfig)"
    )


def lookup_failure(exc: BaseException, *, host: str, where: str, budget: float) -> LookupFailed:
    """The :class:`LookupFailed` for a transport exception, by the table above."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(os_error, PrivateAddressError):
        return LookupFailed(
            f"registry host {host} resolves to a {os_error.kind} address "
            f"({os_error.address}); {explicit_hint(host)}",
            context={"registry": host, "code": "PRIVATE_ADDRESS"},
        )
    for kind, code, template, detail in _ERROR_TABLE:
        if isinstance(exc, kind):
            message = template.format(host=host, where=where, budget=f"{budget:g}", detail=detail(exc))
            context: dict[str, Any] = {"registry": host}
            if code:
                context["code"] = code
            return LookupFailed(message, context=context)
    raise TypeError(f"no table entry for {type(exc).__name__}")  # pragma: no cover - HANDLED guards


# ------------------------------------------------------------------ the transport


class Transport:
    """Session, limits, TLS and address guard shared by a client and all its views.

    Methods that depend on who is asking (credentials to scrub, hosts
    configured explicitly) take the caller's :class:`RegistryConfig`.
    """

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock
        self.stats = RequestStats()
        self.session: aiohttp.ClientSession | None = None
        self.slots: dict[str, FairSlots] = {}
        #: Bytes of bodies being read, process-wide (see :class:`BodyRoom`).
        self.body_room = BodyRoom()
        self.holdoffs = HoldOffs(clock=clock)
        self.proxies: dict[str, str] | None = None  # scheme → proxy URL, from the environment
        #: Credentials that helper programs handed out, per API host: scrubbed like configured ones.
        self.program_secrets: dict[str, list[Credentials]] = {}
        self.ssl_contexts: dict[str | None, ssl.SSLContext] = {}
        self.explicit_names: set[str] = set()
        self.address_verdicts: TTLMap[str, str] = TTLMap(
            ttl=ADDRESS_VERDICT_TTL, clock=clock, max_entries=10_000
        )

    # -- lifecycle ------------------------------------------------------------------

    def register(self, config: RegistryConfig) -> None:
        """Names ``config`` configures may resolve to private addresses at connect time."""
        for entry in config.hosts.values():
            for hp in (entry.host, *entry.mirrors):
                self.explicit_names.add(split_hostport(hp)[0])
            if entry.host == DOCKER_HUB:
                self.explicit_names.add(DOCKER_HUB_API)

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    def _proxy_for(self, url: URL) -> str | None:
        """``HTTP(S)_PROXY`` for ``url`` unless ``NO_PROXY`` covers its host (read when the
        session starts). aiohttp's ``trust_env`` would also read ``~/.netrc`` and send what it
        finds; this reads the proxy variables only."""
        if self.proxies is None:
            self.proxies = urllib.request.getproxies_environment()
            for scheme, value in self.proxies.items():
                host = URL(value).raw_host if scheme != "no" else None
                if host:  # the proxy is configuration: it may live on a private address
                    self.explicit_names.add(host)
        chosen = self.proxies.get(url.scheme)
        if not chosen or proxy_bypassed(url, self.proxies):
            return None
        return chosen

    def _session(self) -> aiohttp.ClientSession:
        session = self.session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.explicit_names.__contains__),
                ttl_dns_cache=int(ADDRESS_VERDICT_TTL),
                limit=256,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
            self.session = session
        return session

    # -- limits ---------------------------------------------------------------------

    def slot(self, config: RegistryConfig, entry: RegistryHost) -> AbstractAsyncContextManager[None]:
        """One of ``entry``'s API host's request slots (shared by every view), held inside.

        Slots are shared fairly between tenants (namespaces): :mod:`controller.registry.limits`.
        """
        slots = self.slots.get(entry.api_host)
        if slots is None:
            slots = self.slots[entry.api_host] = FairSlots(config.concurrency_for(entry.host))
        return slots.slot(current_tenant())

    # -- where requests may go ------------------------------------------------------

    @staticmethod
    def _explicit(config: RegistryConfig, hp: str) -> bool:
        if config.is_explicit(hp):
            return True
        return hp == DOCKER_HUB_API and config.is_explicit(DOCKER_HUB)

    async def check_address(self, config: RegistryConfig, hp: str) -> None:
        """Refuse hosts that are, or resolve to, non-public addresses unless configured."""
        if self._explicit(config, hp):
            return
        host, port = split_hostport(hp)
        verdict = self.address_verdicts.get(host)
        if verdict is None:
            verdict = await address_verdict(host, port)
            self.address_verdicts.put(host, verdict)
        if verdict:
            raise LookupFailed(
                f"registry host {hp} {verdict}; {explicit_hint(hp)}",
                context={"registry": hp, "code": "PRIVATE_ADDRESS"},
            )

    def _ssl_for(self, config: RegistryConfig, hp: str) -> ssl.SSLContext:
        ca_file = config.host(hp).ca_file
        ctx = self.ssl_contexts.get(ca_file)
        if ctx is None:
            ctx = ssl.create_default_context()
            if ca_file is not None:
                ctx.load_verify_locations(cafile=ca_file)
            self.ssl_contexts[ca_file] = ctx
        return ctx

    async def send_hops(
        self,
        config: RegistryConfig,
        entry: RegistryHost,
        method: str,
        url: URL,
        kind: str,
        *,
        authorization: str | None,
        accept: str | None,
        limit: int,
        max_values: int | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send, following at most :data:`MAX_REDIRECTS` redirects under the rules above."""
        timeout = config.timeout_for(entry.host)
        origin = url
        for hop in range(MAX_REDIRECTS + 1):
            hp = hostport(url)
            await self.check_address(config, hp)
            reply = await self.send(
                config, method, url, kind, hp, authorization=authorization, accept=accept,
                limit=limit, max_values=max_values, budget=timeout, form=form,
            )
            if reply.status not in REDIRECT_STATUSES:
                return reply
            where = f"{hostport(origin)} {method} {origin.path}"

            def refuse(text: str, host: str = hp) -> LookupFailed:
                return LookupFailed(text, context={"registry": host, "code": "REDIRECT"})

            if hop == MAX_REDIRECTS:
                raise refuse(f"too many redirects ({where})")
            location = reply.headers.get("Location")
            if not location:
                raise refuse(f"redirect without a Location ({where})")
            target = url.join(URL(location, encoded=True))  # keep signed storage URLs byte-exact
            target_host = hostport(target)
            if target.scheme not in ("http", "https") or not target.host:
                raise refuse(f"redirect to an unusable URL refused ({where})")
            if target.scheme == "http" and url.scheme == "https" and not config.host(target_host).insecure:
                raise refuse(f"redirect from https to plain http://{target_host} refused ({where})")
            if (target.scheme, target_host) != (url.scheme, hp):
                if kind != KIND_BLOB:
                    raise refuse(
                        f"registry {hp} redirected a {kind} request to another host "
                        f"({target_host}); refused ({where})"
                    )
                authorization = None  # never forward credentials to storage
            if reply.status == 303:
                method = "GET"
            url = target
        raise AssertionError("unreachable")

    async def send(
        self,
        config: RegistryConfig,
        method: str,
        url: URL,
        kind: str,
        hp: str,
        *,
        authorization: str | None,
        accept: str | None,
        limit: int,
        budget: float,
        form: Mapping[str, str] | None,
        max_values: int | None = None,
    ) -> Reply:
        """One HTTP exchange, no redirects followed; every failure is a :class:`LookupFailed`.

        ``max_values``: the JSON values the body may hold (see :func:`~controller.registry.bodies.read_capped`).
        """
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        if authorization:
            headers["Authorization"] = authorization
        where = f"{method} {url.path}"
        try:
            self.holdoffs.check(hp)  # a registry that rate-limited us is not asked before its reset
        except LookupFailed:
            self.stats.held_off[hp] += 1
            raise
        account = current_account()
        if account is not None:  # past the review's bytes, nothing more is asked for it
            account.check_bytes()
        self.stats.count(method, kind, hp)
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
                    ssl=self._ssl_for(config, hp) if url.scheme == "https" else True,
                    proxy=self._proxy_for(url),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=budget, sock_read=budget),
                ) as resp:
                    sha256 = None
                    if method == "HEAD":
                        body = b""
                    elif resp.status == 200:
                        body, sha256 = await self._read_in_room(resp, limit, kind, hp, where, max_values)
                    else:
                        body = await read_prefix(resp, MAX_ERROR_BODY)
                    reply = Reply(resp.status, resp.headers, body, hp, url, sha256)
        except HANDLED as exc:
            raise lookup_failure(exc, host=hp, where=where, budget=budget) from None
        if account is not None:
            account.charge_fetched(len(body))
        self.stats.by_status[reply.status] += 1
        if reply.status == 429:
            self.stats.rate_limited[hp] += 1
            said = rate_limit_of(reply.headers)
            self.holdoffs.hold(hp, said.hold, rate_limited(reply), said.limit)
        log.debug(
            "%s %s%s -> %d (%.0f ms)", method, hp, url.path, reply.status,
            (time.monotonic() - started) * 1000,
        )
        return reply

    async def _read_in_room(
        self, resp: aiohttp.ClientResponse, limit: int, kind: str, hp: str, where: str,
        max_values: int | None,
    ) -> tuple[bytes, str]:
        """:func:`~controller.registry.bodies.read_capped`, holding room for the body in :attr:`body_room` while it is read.

        The room taken is the body's ``Content-Length`` when the registry sends one
        (and it is under ``limit``), else ``limit``: what the read may hold at most.
        """
        length = resp.content_length
        if length is not None and length > limit:
            return await read_capped(resp, limit, _what(kind), hp, where, None)  # refused on the header
        async with self.body_room.slot(current_tenant(), length if length is not None else limit):
            return await read_capped(resp, limit, _what(kind), hp, where, max_values)

    # -- what a failed answer is called -----------------------------------------------

    def remember_secrets(self, host: str, creds: Credentials) -> None:
        known = self.program_secrets.setdefault(host, [])
        if creds not in known:
            known.append(creds)
            del known[:-4]  # rotated credentials: the last few are enough to scrub

    def scrub(self, config: RegistryConfig, text: str, host: str) -> str:
        """Registry-provided text with this host's secrets masked: a registry that echoes
        the credential back must not put it into a denial (seen by pod authors) or the log."""
        for creds in (config.host(host).credentials, *self.program_secrets.get(host, ())):
            for secret in (creds.password, creds.token, creds.identity_token):
                if secret and len(secret) >= 4:
                    text = text.replace(secret, "***")
            if creds.has_basic:
                basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
                text = text.replace(basic, "***")
        return text

    def http_error(self, config: RegistryConfig, reply: Reply, method: str, path: str, what: str) -> LookupFailed:
        code, message = error_detail(reply.body)
        if reply.status in (401, 403):
            message = None  # an auth refusal's text is where registries echo what they were sent
        elif message:
            message = self.scrub(config, message, reply.host)
        context: dict[str, Any] = {
            "registry": reply.host, "status": reply.status, "code": code, "method": method, "path": path,
        }
        if reply.status == 429:
            return LookupFailed(f"{what}: {rate_limited(reply)}", context={**context, **_limit_context(reply)})
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


def proxy_bypassed(url: URL, proxies: Mapping[str, str]) -> bool:
    """``NO_PROXY`` (``no`` in ``proxies``) covers ``url``'s host: names, suffixes, ``*``."""
    host = url.raw_host or ""  # NO_PROXY names hosts in ASCII, as references do
    port = url.explicit_port
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - untyped in typeshed
    return bool(bypass(f"{host}:{port}" if port else host, dict(proxies)))


def _what(kind: str) -> str:
    """What a body of ``kind`` is called in a refusal."""
    return "manifest" if kind == KIND_MANIFEST else "config" if kind == KIND_BLOB else "response"
