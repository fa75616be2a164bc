"""What ``serve`` and ``run`` are told about the shared tier, checked before anything starts.

A bad setting is a clear error at start-up (exit 2): a URL that is not
``redis://`` or ``rediss://``, a password written into the URL (it would be in
the pod spec, ``ps`` and every log line that names the URL: it belongs in a
file from a Secret), a key file that cannot be read or is shorter than 32 bytes.
A database that does not answer is *not* an error: the replica starts, says so in
the log, and works without the tier until it answers.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import InputError
from controller.sharedcache import entries
from controller.sharedcache.tier import (
    DEFAULT_LOCK_TTL,
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT,
    RedisTier,
)

log = logging.getLogger("baseguard.sharedcache")

EXTRA = "pip install 'baseguard[shared-cache]'"
#: Connections one replica keeps to the database at most.
MAX_CONNECTIONS = 64


@dataclass(frozen=True, kw_only=True)
class SharedCacheConfig:
    url: str
    key_file: str | None
    password_file: str | None = None
    ca_file: str | None = None
    prefix: str = "baseguard:"
    timeout: float = DEFAULT_TIMEOUT
    wait: float = DEFAULT_WAIT
    poll: float = DEFAULT_POLL
    lock_ttl: float = DEFAULT_LOCK_TTL


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the shared cache's {what} {path}: {exc.strerror or exc}") from None


def where(url: str) -> str:
    """``url`` without user info: what log lines name."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check(config: SharedCacheConfig) -> tuple[entries.Keys, str | None]:
    """The derived keys and the password, or an :class:`InputError` naming what is wrong."""
    parts = urllib.parse.urlsplit(config.url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InputError(
            f"--shared-cache {where(config.url)!r}: expected redis://HOST[:PORT][/DB] or rediss://…"
        )
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise InputError(f"--shared-cache {where(config.url)!r}: the port is not a number") from None
    if parts.password is not None:
        raise InputError(
            "--shared-cache: the URL carries a password; put it in a file (a Secret) and pass "
            "--shared-cache-password-file instead"
        )
    if config.timeout <= 0 or config.wait < 0 or config.poll <= 0 or config.lock_ttl <= 0:
        raise InputError("--shared-cache-timeout and --shared-cache-wait must be positive")
    if config.key_file is None:
        raise InputError(
            "--shared-cache needs --shared-cache-key-file: every entry is signed, and one "
            "nobody can check is never used"
        )
    secret = _read(config.key_file, "key file").strip()
    try:
        keys = entries.Keys.derive(secret)
    except ValueError as exc:
        raise InputError(f"--shared-cache-key-file {config.key_file}: {exc}") from None
    password = None
    if config.password_file is not None:
        password = _read(config.password_file, "password file").decode(errors="replace").strip()
    return keys, password


def open_tier(config: SharedCacheConfig) -> RedisTier:
    """A tier for ``config`` (no connection yet: the first call makes one)."""
    keys, password = check(config)
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.connection import Connection, SSLConnection
    except ModuleNotFoundError:
        raise InputError(f"--shared-cache needs the redis client: {EXTRA}") from None
    parts = urllib.parse.urlsplit(config.url)
    options: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 6379,
        "db": int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() else 0,
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": password,
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        # One try per call: the breaker, not the client, decides when to ask again.
        "retry": None,
        "retry_on_error": [],
        "client_name": "baseguard",
    }
    connection_class: type[Connection] = Connection
    if parts.scheme == "rediss":
        connection_class = SSLConnection
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        if config.ca_file is not None:
            options["ssl_ca_certs"] = config.ca_file
    # Waiting for a free connection is bounded by each call's own timeout.
    pool = BlockingConnectionPool(
        max_connections=MAX_CONNECTIONS, timeout=config.timeout, connection_class=connection_class,
        **options,
    )
    redis = Redis(connection_pool=pool)
    return RedisTier(
        redis,
        keys,
        prefix=config.prefix,
        timeout=config.timeout,
        wait=config.wait,
        poll=config.poll,
        lock_ttl=config.lock_ttl,
        where=where(config.url),
    )


async def start(config: SharedCacheConfig) -> RedisTier:
    """:func:`open_tier`, then one ping, logged either way (a database that does not
    answer yet is not a reason not to start)."""
    tier = open_tier(config)
    answers = await tier.ping()
    log.info(
        "shared cache" if answers else "shared cache does not answer yet: lookups go on without it",
        extra={"fields": {"where": tier.where, "answers": answers, "timeout": config.timeout}},
    )
    return tier
