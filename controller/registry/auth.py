"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens, basic credentials.

The handshake lives in :mod:`controller.registry.client` and the round trips in
:mod:`controller.registry.transport` (one set of limits, TLS and address
checks for every request); this module decides *what* to send.

Decisions worth knowing:

- Basic credentials go only to the host they are configured for.
- A bearer realm may live on another host (Docker Hub: ``auth.docker.io``). The
  host's credentials are sent to that realm *because the registry named it*,
  which is what Docker and containerd do; the realm must be https (http only
  when the realm's host is configured ``insecure``) and passes the same
  private-address check as any registry host, so a hostile registry cannot
  point us (and our credentials) at the cluster's network.
- ``Authorization`` is never forwarded on a redirect to another host (blob
  GETs answered with a 307 to storage carry signed URLs of their own).
- Tokens are cached per (realm, service, scope, credentials); the key holds a
  fingerprint of the credentials, never the secret itself. Nothing here logs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.caching import Clock, TTLMap
from controller.errors import LookupFailed
from controller.registry import jsonread
from controller.registry.config import Credentials

DEFAULT_TOKEN_TTL = 60
#: Refresh this long before the token server's expiry (capped at half the lifetime).
TOKEN_MARGIN = 10.0
#: Bytes of a token server's answer read as JSON (a bearer token is a few KiB).
MAX_TOKEN_BODY = 1024 * 1024
CLIENT_ID = "baseguard"

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN}|[^,\s]*)\s*(?:,|$)')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``Bearer realm="...",service="...",scope="..."``."""

    scheme: str  # lower case: "bearer", "basic"
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 7235 auth-params, quoted strings with commas)."""
    out: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = _SCHEME_RE.match(text, pos)
        if m is None:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(text):
            p = _PARAM_RE.match(text, pos)
            if p is None:
                break
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(scheme, params))
        while pos < len(text) and text[pos] in ", ":
            pos += 1
    return out


def pick_challenge(header: str | None) -> Challenge | None:
    """The challenge we can answer: Bearer first, then Basic."""
    if not header:
        return None
    challenges = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def basic_authorization(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def fingerprint(creds: Credentials) -> str:
    """Identifies credentials in cache keys without holding the secret."""
    if creds.empty:
        return "anonymous"
    material = "\0".join(
        x or "" for x in (creds.username, creds.password, creds.token, creds.identity_token)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True)
class TokenRequest:
    """The request for a token: GET with query (basic/anonymous) or POST form (identity token)."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    form: Mapping[str, str] | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)


def token_request(challenge: Challenge, scopes: tuple[str, ...], creds: Credentials) -> TokenRequest:
    """What to ask the realm for: distribution's token spec, or its OAuth2 refresh-token form."""
    realm = challenge.realm
    if not realm:
        raise LookupFailed("bearer challenge without a realm")
    if creds.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "client_id": CLIENT_ID,
            "scope": " ".join(scopes),
        }
        if challenge.service:
            form["service"] = challenge.service
        return TokenRequest("POST", realm, form=form)
    params: list[tuple[str, str]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    params += [("scope", s) for s in scopes]
    return TokenRequest(
        "GET",
        realm,
        params=tuple(params),
        authorization=basic_authorization(creds) if creds.has_basic else None,
    )


def parse_token_response(body: bytes, *, now: float, where: str) -> Token:
    """``{"token"|"access_token", "expires_in"}`` → :class:`Token` (expiry from ``now``)."""
    # The realm is the registry's to name, so its answer is registry JSON: bounded like the rest.
    try:
        obj = jsonread.read(body, f"the answer of token server {where}", max_bytes=MAX_TOKEN_BODY)
    except LookupFailed as exc:
        if jsonread.is_refusal(str(exc)):
            raise
        raise LookupFailed(f"token server {where} answered something that is not JSON") from None
    if not isinstance(obj, dict):
        raise LookupFailed(f"token server {where} answered something that is not a JSON object")
    value = obj.get("token") or obj.get("access_token")
    if not isinstance(value, str) or not value:
        raise LookupFailed(f"token server {where} answered without a token")
    lifetime = obj.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_TTL
    margin = min(TOKEN_MARGIN, lifetime / 2)
    return Token(value, now + float(lifetime) - margin)


class TokenCache:
    """Bearer tokens per (realm, service, scope, credential fingerprint), until they expire."""

    def __init__(self, *, clock: Clock, max_entries: int = 10_000) -> None:
        self.clock = clock
        self._tokens: TTLMap[tuple[str, str, str, str], Token] = TTLMap(
            ttl=DEFAULT_TOKEN_TTL, clock=clock, max_entries=max_entries
        )

    def get(self, key: tuple[str, str, str, str]) -> Token | None:
        return self._tokens.get(key)

    def put(self, key: tuple[str, str, str, str], token: Token) -> None:
        self._tokens.put(key, token, ttl=token.expires_at - self.clock())

    def discard(self, key: tuple[str, str, str, str]) -> None:
        self._tokens.discard(key)


def token_key(challenge: Challenge, scope: str, creds: Credentials) -> tuple[str, str, str, str]:
    return (challenge.realm or "", challenge.service or "", scope, fingerprint(creds))
