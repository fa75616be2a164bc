"""TLS for the webhook: TLS 1.2+, certificate files reloaded without a restart.

The apiserver only talks HTTPS to webhooks. In a cluster the serving pair comes
from a Secret volume that the operator (or cert-manager) rotates; the kubelet
swaps the files in place, and :class:`CertReloader` serves the new pair to new
connections: no listener restart, no dropped requests.

A reload never touches a context a handshake may be using. Loading a new pair
into the live ``SSLContext`` from a worker thread while handshakes ran on the
event loop failed about 0.4 handshakes per reload, and continuous reloads
crashed the process. Instead, each reload builds a whole new context, and the
listener's context (:attr:`CertReloader.context`, which never changes) hands
every new connection the current one from its ``sni_callback``, which OpenSSL
calls for every ClientHello, with or without a server name. Swapping the
reference is atomic; a handshake in progress keeps the context it started with.

Mutual TLS (optional): with a client CA, the webhook asks every client for a
certificate and verifies any it gets against that CA. The request is optional at
the TLS level, so the kubelet's HTTPS probes (which have no client certificate)
still reach ``/healthz``; the review routes refuse a client without an allowed
certificate (:func:`controller.webhook.app.make_app`, ``client_names``).

:func:`self_signed` makes a throw-away CA and serving certificate for local
use (``baseguard serve`` without ``--tls-cert``) and for tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("baseguard.tls")


def server_context(
    cert: str | Path, key: str | Path, *, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """A server context for TLS 1.2 and 1.3 only, loaded with ``cert``/``key``.

    With ``client_ca``: client certificates are asked for and, when sent,
    verified against it (``CERT_OPTIONAL``; the routes decide who must have one).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class CertReloader:
    """Serves the current contents of two PEM files (and a client CA file, for mutual TLS).

    :meth:`check` compares the files' bytes with what was last loaded (mtimes
    are unreliable across the kubelet's symlink swap and coarse filesystems),
    and when they differ builds a new context from exactly those bytes. A set
    that fails to load (a half-written rotation, a key that does not match) is
    logged and the previous context kept; the next check tries again.

    :attr:`context` is what the listener is given; it stays the same object
    for the reloader's life and selects :attr:`current` for each handshake.
    """

    def __init__(
        self, cert: str | Path, key: str | Path, *, client_ca: str | Path | None = None
    ) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.client_ca = Path(client_ca) if client_ca is not None else None
        self._loaded = self._read()
        self.current = self._build(self._loaded)
        self.context = self._build(self._loaded)
        self.context.sni_callback = self._select
        self.reloads = 0

    def _read(self) -> tuple[bytes, ...]:
        files = (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())
        return tuple(path.read_bytes() for path in files)

    def _select(self, connection: ssl.SSLObject, server_name: str | None, _: object) -> None:
        """OpenSSL's servername callback: this connection uses the current context."""
        current = self.current
        if connection.context is not current:
            connection.context = current

    def check(self) -> bool:
        """Reload if the files changed; True when a new context now serves new connections."""
        try:
            files = self._read()
        except OSError as exc:
            log.warning(
                "cannot read the TLS files; keeping the loaded pair",
                extra={"fields": {"error": str(exc)}},
            )
            return False
        if files == self._loaded:
            return False
        try:
            fresh = self._build(files)
        except (ssl.SSLError, OSError) as exc:
            log.warning(
                "the TLS files changed but do not load; keeping the previous pair",
                extra={"fields": {"cert": str(self.cert), "error": str(exc)}},
            )
            return False
        self.current = fresh  # one reference swap: new handshakes get it, running ones keep theirs
        self._loaded = files
        self.reloads += 1
        log.info("serving certificate reloaded", extra={"fields": {"cert": str(self.cert)}})
        return True

    def _build(self, files: tuple[bytes, ...]) -> ssl.SSLContext:
        """A new context from exactly these bytes (never from the files, which may move on).

        ``load_cert_chain`` reads files, so the bytes read once are written to a
        private directory and loaded from there: a rotation landing in between
        cannot slip in untested, and a certificate that does not match its key
        fails here, on a context nobody serves yet.
        """
        with tempfile.TemporaryDirectory(prefix="baseguard-tls-") as directory:
            cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
            cert.write_bytes(files[0])
            key.touch(mode=0o600)
            key.write_bytes(files[1])
            client_ca = None
            if len(files) > 2:
                client_ca = Path(directory) / "client-ca.crt"
                client_ca.write_bytes(files[2])
            return server_context(cert, key, client_ca=client_ca)

    async def watch(self, interval: float) -> None:
        """Check every ``interval`` seconds until cancelled (file reads off the event loop)."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.check)


class Pair(NamedTuple):
    """PEM texts of a throw-away CA and a serving certificate signed by it: ``ca, cert, key = pair``."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: str | Path) -> tuple[Path, Path, Path]:
        """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` (mode 0600); returns their paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = out / "ca.crt", out / "tls.crt", out / "tls.key"
        for path, data in zip(paths, (self.ca_pem, self.cert_pem, self.key_pem), strict=True):
            path.touch(mode=0o600, exist_ok=True)
            path.write_bytes(data)
        return paths


def self_signed(
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    days: int = 30,
    now: dt.datetime | None = None,
) -> Pair:
    """A CA and a serving certificate for ``hosts`` (DNS names or IP addresses), EC P-256.

    For local use and tests only: the CA key is not kept, so nothing else can
    ever be signed by it.
    """
    from controller.tls.issuing import issue_ca, issue_serving

    start = now or dt.datetime.now(dt.UTC)
    validity = dt.timedelta(days=days)
    ca_pem, ca_key = issue_ca(now=start, validity=validity, name="baseguard local CA")
    cert_pem, key_pem = issue_serving(
        ca_cert=ca_pem, ca_key=ca_key, hosts=list(hosts), now=start, validity=validity
    )
    return Pair(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)
