"""Certificates at run time: every replica loads the serving pair, the leader keeps it fresh.

* :class:`ServingPair` (every replica): the webhook's TLS context. It starts
  on a throw-away self-signed pair so the port opens (and the liveness probe
  answers) at once; the real pair is read from the Secret through the API
  (:meth:`ServingPair.poll`) and loaded into the *same* ``SSLContext`` by the
  webhook's :class:`~controller.tls.serving.CertReloader`, so a rotation
  reaches every replica within ``tls_poll_interval`` seconds, with no restart
  and no dependency on the kubelet's Secret-volume refresh (up to a minute
  or more). Readiness waits for the real pair, so the apiserver is never
  routed to a replica serving the throw-away one.
* :class:`CertKeeper` (the leader, with ``--manage-certificates``): creates
  and rotates the Secret (:func:`controller.operator.rotation.plan`) and patches
  the ``caBundle`` of the webhook configurations, the ``caBundle`` first: the
  apiserver trusts a CA before any replica can serve a pair it signed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.operator import rotation
from controller.operator.kube import KubeLike
from controller.tls.serving import CertReloader, self_signed

log = logging.getLogger("baseguard.operator.certs")

WEBHOOK_KINDS = (
    ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"),
)



def secret_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    return f"{base}/{name}" if name else base


def _status(exc: BaseException) -> int | None:
    value = getattr(exc, "status", None)
    return value if isinstance(value, int) else None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by this user only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ServingPair:
    """The webhook's TLS context, fed from a Secret (or from files, when there is none)."""

    def __init__(
        self, reloader: CertReloader, *, directory: Path | None = None, ready: bool
    ) -> None:
        self.reloader = reloader
        self.directory = directory
        self.ready = ready
        self.loaded: tuple[bytes, bytes] | None = None
        self.on_ready: Callable[[], None] = lambda: None

    @classmethod
    def from_files(cls, cert: str, key: str, *, client_ca: str | None = None) -> ServingPair:
        return cls(CertReloader(cert, key, client_ca=client_ca), ready=True)

    @classmethod
    def placeholder(
        cls, hosts: Sequence[str] = ("localhost",), *, client_ca: str | None = None
    ) -> ServingPair:
        """A throw-away pair in a private directory, until the Secret is read."""
        directory = Path(tempfile.mkdtemp(prefix="baseguard-serving-"))
        pair = self_signed(list(hosts), days=1)
        for name, data in (("tls.crt", pair.cert_pem), ("tls.key", pair.key_pem)):
            _write_private(directory / name, data)
        serving = cls(
            CertReloader(directory / "tls.crt", directory / "tls.key", client_ca=client_ca),
            directory=directory,
            ready=False,
        )
        # The directory holds a private key: it goes with the pair, or at the latest when the
        # process exits, so neither a replica nor a test run leaves keys behind in /tmp.
        weakref.finalize(serving, shutil.rmtree, directory, ignore_errors=True)
        return serving

    @property
    def context(self) -> Any:
        return self.reloader.context

    def install(self, cert: bytes, key: bytes) -> bool:
        """Serve ``cert``/``key`` from now on; False when they do not load (the old pair stays)."""
        if self.directory is None:
            raise RuntimeError("this pair is read from files; nothing to install")
        if self.loaded == (cert, key):
            return True
        # the key first: a reload between the two writes then fails to load and keeps the old pair
        _write_private(self.directory / "tls.key", key)
        _write_private(self.directory / "tls.crt", cert)
        if not self.reloader.check():
            return False  # it did not load; the reloader logged why and kept the old pair
        self.loaded = (cert, key)
        if not self.ready:
            self.ready = True
            log.info(
                "serving certificate loaded",
                extra={"fields": {"expires": rotation.expires(cert).isoformat()}},
            )
            self.on_ready()
        return True

    def install_from_secret(self, secret: Mapping[str, Any]) -> bool:
        """Serve the pair in a ``kubernetes.io/tls`` Secret (ours, cert-manager's or a user's)."""
        data = secret.get("data")
        if not isinstance(data, Mapping) or rotation.TLS_CERT not in data or rotation.TLS_KEY not in data:
            return False
        try:
            cert = base64.b64decode(str(data[rotation.TLS_CERT]))
            key = base64.b64decode(str(data[rotation.TLS_KEY]))
        except ValueError:
            return False
        return self.install(cert, key)

    async def poll(self, kube: KubeLike, namespace: str, name: str, *, interval: float) -> None:
        """Read the Secret every ``interval`` seconds (sooner while none is loaded), until cancelled."""
        while True:
            try:
                secret = await kube.get(secret_path(namespace, name))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.INFO if _status(exc) == 404 else logging.WARNING
                log.log(
                    level,
                    "cannot read the serving Secret yet",
                    extra={"fields": {"secret_name": f"{namespace}/{name}", "error": str(exc)}},
                )
            else:
                if not self.install_from_secret(secret):
                    log.warning(
                        "the serving Secret holds no usable pair",
                        extra={"fields": {"secret_name": f"{namespace}/{name}"}},
                    )
            await asyncio.sleep(interval if self.ready else min(interval, 1.0))

    async def watch_files(self, interval: float) -> None:
        await self.reloader.watch(interval)


@dataclass
class CertKeeper:
    """The leader's certificate work: the Secret, and the ``caBundle`` of the webhook configurations."""

    kube: KubeLike
    namespace: str
    secret: str
    hosts: Sequence[str]
    configurations: Sequence[str]
    lifetimes: rotation.Lifetimes
    clock: Callable[[], dt.datetime]
    serving: ServingPair | None = None  # this replica's pair: updated at once after a write
    _warned: bool = False

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "certificate check failed; retrying", extra={"fields": {"error": str(exc)}}
                )
                await asyncio.sleep(min(interval, 10.0))
                continue
            await asyncio.sleep(interval)

    async def reconcile(self) -> bool:
        """One check; repeats at once while a CA change is in its first step. True if anything was written."""
        wrote = False
        for _ in range(3):
            step = await self._once()
            wrote = wrote or step
            if not step:
                break
        return wrote

    async def _once(self) -> bool:
        now = self.clock()
        path = secret_path(self.namespace, self.secret)
        try:
            existing: dict[str, Any] | None = await self.kube.get(path)
        except Exception as exc:
            if _status(exc) != 404:
                raise
            existing = None
        current = rotation.Bundle.from_secret_data(existing.get("data")) if existing else None
        if existing is not None and current is None:
            log.warning(
                "the serving Secret is not one baseguard can sign for; replacing it",
                extra={"fields": {"secret_name": f"{self.namespace}/{self.secret}"}},
            )
        configs = await self._configurations()
        # A configuration with no webhook (the mutating one while no policy pins, see
        # controller.operator.mutation) trusts nothing and calls nothing: it cannot hold
        # a CA change back. Its entry, once added, carries the validating one's caBundle.
        calling = [c for _, c in configs if c.get("webhooks")]
        trusted = (
            bool(calling)
            and current is not None
            and all(rotation.trusts(c, current.ca_cert) for c in calling)
        )
        wanted = rotation.plan(
            current, hosts=self.hosts, now=now, lifetimes=self.lifetimes, trusted=trusted
        )
        wrote = False
        # Trust before serve: the caBundle takes the CA before the Secret holds a pair it signed.
        # Every replica (this one too, through ServingPair.poll) serves what the Secret holds as
        # soon as it reads it; written first, a replica could be ready with a certificate the
        # apiserver does not trust yet.
        bundle = rotation.trust_bundle(wanted, now)
        for path_, config in configs:
            ops = rotation.ca_bundle_patch(config, bundle)
            if ops:
                await self.kube.patch(path_, ops, content_type="application/json-patch+json")
                log.info("caBundle patched", extra={"fields": {"configuration": path_}})
                wrote = True
        if wanted != current:
            await self._write_secret(existing, wanted)
            wrote = True
            log.info(
                "serving certificate written",
                extra={
                    "fields": {
                        "secret_name": f"{self.namespace}/{self.secret}",
                        "expires": rotation.expires(wanted.cert).isoformat(),
                        "ca_changed": current is None or current.ca_cert != wanted.ca_cert,
                    }
                },
            )
        if self.serving is not None and self.serving.directory is not None:
            self.serving.install(wanted.cert, wanted.key)
        return wrote

    async def _configurations(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for name in self.configurations:
            for api_version, plural in WEBHOOK_KINDS:
                path = f"/apis/{api_version}/{plural}/{name}"
                try:
                    found.append((path, await self.kube.get(path)))
                except Exception as exc:
                    if _status(exc) != 404:
                        raise
        if not found and not self._warned:
            self._warned = True
            log.warning(
                "no webhook configuration found to patch",
                extra={"fields": {"names": list(self.configurations)}},
            )
        return found

    async def _write_secret(self, existing: Mapping[str, Any] | None, bundle: rotation.Bundle) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": rotation.SECRET_TYPE,
            "metadata": {
                "name": self.secret,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "baseguard"},
            },
            "data": bundle.secret_data(),
        }
        if existing is None:
            await self.kube.create(secret_path(self.namespace), body)
            return
        meta = existing.get("metadata") or {}
        body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        for key in ("labels", "annotations"):
            if isinstance(meta.get(key), Mapping):
                body["metadata"][key] = {**meta[key], **body["metadata"].get(key, {})}
        if existing.get("type") not in (None, rotation.SECRET_TYPE):
            body["type"] = existing["type"]  # the type of a Secret cannot change
        await self.kube.replace(secret_path(self.namespace, self.secret), body)
