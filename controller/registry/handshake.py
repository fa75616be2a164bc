"""The authentication handshake: one registry request with at most one authentication round.

401 → answer the challenge (a bearer token from the realm the registry names, or
basic credentials) → retry once; a second 401 is final, so a registry cannot
keep us in a loop. What to send is decided in :mod:`controller.registry.auth`;
how it travels is :mod:`controller.registry.transport`. The challenge each
host answered with and the tokens fetched are kept here, shared by a client and
its views (tokens are keyed by a fingerprint of the credentials).
"""

from __future__ import annotations

from yarl import URL

from controller.errors import LookupFailed
from controller.registry import auth, media
from controller.registry.cache import RegistryCache
from controller.registry.config import RegistryConfig, RegistryHost
from controller.registry.transport import KIND_TOKEN, MAX_TOKEN_BODY, Reply, Transport, hostport


class Handshake:
    """Challenges learnt per host and tokens per (realm, scope, credentials)."""

    def __init__(self, transport: Transport, cache: RegistryCache) -> None:
        self.transport = transport
        self.cache = cache
        self.tokens = auth.TokenCache(clock=cache.clock)
        self.challenges: dict[str, auth.Challenge] = {}

    def _preemptive(self, entry: RegistryHost, repository: str) -> tuple[str | None, bool]:
        """(Authorization to send up front, whether it is a cached bearer token)."""
        creds = entry.credentials
        if creds.token:
            return f"Bearer {creds.token}", False
        challenge = self.challenges.get(entry.api_host)
        if challenge is None:
            return None, False
        if challenge.scheme == "basic":
            return (auth.basic_authorization(creds), False) if creds.has_basic else (None, False)
        token = self.tokens.get(auth.token_key(challenge, auth.pull_scope(repository), creds))
        return (f"Bearer {token.value}", True) if token is not None else (None, False)

    async def call(
        self,
        config: RegistryConfig,
        entry: RegistryHost,
        method: str,
        url: URL,
        path: str,
        kind: str,
        repository: str,
        what: str,
        *,
        accept: str | None,
        max_values: int | None = None,
    ) -> Reply:
        """One request to a registry host with at most one authentication round.

        401 → answer the challenge (fetch a token or use basic credentials) →
        retry once. A second 401 is final: no loops.
        """
        creds = entry.credentials
        async with self.transport.slot(config, entry):
            authorization, cached_token = self._preemptive(entry, repository)
            reply = await self.transport.send_hops(
                config, entry, method, url, kind, authorization=authorization, accept=accept, limit=media.MAX_BODY,
                max_values=max_values,
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
                raise self.transport.http_error(config, reply, method, path, what)
            self.challenges[entry.api_host] = challenge
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
                reply = await self.transport.send_hops(
                    config, entry, method, url, kind, authorization=authorization, accept=accept, limit=media.MAX_BODY,
                max_values=max_values,
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
                self.tokens.discard(key)
            token = await self._token(config, entry, challenge, scope)
            reply = await self.transport.send_hops(
                config, entry, method, url, kind, authorization=f"Bearer {token.value}", accept=accept,
                limit=media.MAX_BODY, max_values=max_values,
            )
            if reply.status == 401:
                self.tokens.discard(key)
                raise self._refused(entry, reply, scope)
            return reply

    def _refused(self, entry: RegistryHost, reply: Reply, scope: str) -> LookupFailed:
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

    async def _token(self, config: RegistryConfig, entry: RegistryHost, challenge: auth.Challenge, scope: str) -> auth.Token:
        creds = entry.credentials
        key = auth.token_key(challenge, scope, creds)
        cached = self.tokens.get(key)
        if cached is not None:
            return cached

        async def fetch() -> auth.Token:
            token = await self._fetch_token(config, entry, challenge, scope)
            self.tokens.put(key, token)
            return token

        return await self.cache.single_flight(("token", key), fetch)

    async def _fetch_token(
        self, config: RegistryConfig, entry: RegistryHost, challenge: auth.Challenge, scope: str) -> auth.Token:
        creds = entry.credentials
        scopes = tuple(dict.fromkeys(s for s in (scope, challenge.scope) if s))
        request = auth.token_request(challenge, scopes, creds)
        realm = URL(request.url)
        if realm.scheme not in ("http", "https") or not realm.host:
            raise LookupFailed(
                f"registry {entry.api_host} named an unusable token realm {request.url!r}",
                context={"registry": entry.api_host, "code": "TOKEN"},
            )
        realm_host = hostport(realm)
        if realm.scheme == "http" and not (
            config.host(realm_host).insecure or (realm_host == entry.api_host and entry.insecure)
        ):
            raise LookupFailed(
                f"registry {entry.api_host} named a plain-http token realm on {realm_host}; "
                f"refused (configure {realm_host} as insecure to allow)",
                context={"registry": entry.api_host, "code": "TOKEN"},
            )
        if request.params:
            realm = realm.extend_query(list(request.params))
        reply = await self.transport.send_hops(
            config,
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
