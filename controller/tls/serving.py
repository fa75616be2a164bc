"""TLS for the webhook: TLS 1.2+, certificate files reloaded without a restart.

The apiserver only talks HTTPS to webhooks. In a cluster the serving pair comes
from a Secret volume that the operator (or cert-manager) rotates; the kubelet
swaps the files in place, and :class:`CertReloader` loads the new pair into the
*same* ``SSLContext``. OpenSSL copies the certificate into each connection when
the handshake starts, so new connections get the new pair and open ones keep
theirs: no listener restart, no dropped requests.

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


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for TLS 1.2 and 1.3 only, loaded with ``cert``/``key``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class CertReloader:
    """Keeps an ``SSLContext`` loaded with the current contents of two files.

    :meth:`check` compares the files' bytes with what was last loaded (mtimes
    are unreliable across the kubelet's symlink swap and coarse filesystems),
    and reloads when they differ. A pair that fails to load — a half-written
    rotation, a key that does not match — is logged and the previous pair
    kept; the next check tries again.
    """

    def __init__(self, cert: str | Path, key: str | Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self._loaded = self._read()
        self.context = server_context(self.cert, self.key)
        self.reloads = 0

    def _read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()

    def check(self) -> bool:
        """Reload if the files changed; True when a new pair is now in use."""
        try:
            current = self._read()
        except OSError as exc:
            log.warning(
                "cannot read the TLS files; keeping the loaded pair",
                extra={"fields": {"error": str(exc)}},
            )
            return False
        if current == self._loaded:
            return False
        try:
            self._load(current)
        except (ssl.SSLError, OSError) as exc:
            log.warning(
                "the TLS files changed but do not load; keeping the previous pair",
                extra={"fields": {"cert": str(self.cert), "error": str(exc)}},
            )
            return False
        self._loaded = current
        self.reloads += 1
        log.info("serving certificate reloaded", extra={"fields": {"cert": str(self.cert)}})
        return True

    def _load(self, pair: tuple[bytes, bytes]) -> None:
        """Load exactly ``pair`` into the live context, after a trial in a scratch one.

        ``load_cert_chain`` is not atomic: with a new certificate and an old
        key it installs the certificate, then fails on the key, and leaves the
        context unable to complete any handshake. So the bytes read once are
        written to a private directory, tried on a scratch context, and only
        then loaded into the live one (from the same files, so a rotation
        landing in between cannot slip in untested).
        """
        with tempfile.TemporaryDirectory(prefix="baseguard-tls-") as directory:
            cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
            cert.write_bytes(pair[0])
            key.touch(mode=0o600)
            key.write_bytes(pair[1])
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            self.context.load_cert_chain(cert, key)

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
