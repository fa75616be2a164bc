"""Registry credentials from a pod's ``imagePullSecrets`` and its service account's.

The kubelet pulls with these, so a private image the cluster can run is an
image baseguard can look up. Order follows the kubelet: the pod's own
``imagePullSecrets`` first, then those of its service account; for one host
the first secret that names it wins.

Each credential is handed to the registry client keyed by its host
(:meth:`~controller.registry.config.RegistryConfig.with_credentials`), so it
is only ever sent to that registry, and a pull secret never makes a host
"explicit" for the SSRF guard: a tenant's secret for ``10.0.0.5:5000`` does
not let an image name probe the cluster network.

Reads are cached (``ttl``, 60 s by default; a missing secret is remembered
too) and concurrent reads of one object share one request, so a rollout of
a hundred pods costs a couple of API calls, not two hundred.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from controller.caching import Loader
from controller.errors import InputError
from controller.operator.kube import KubeLike, is_dns1123_label, is_dns1123_subdomain, object_path
from controller.registry.config import Credentials, DockerCredentials

log = logging.getLogger("baseguard.operator.credentials")

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
FAILURE_TTL = 5.0

HostCredentials = Mapping[str, Credentials]


def secret_names(pod_spec: Mapping[str, Any]) -> list[str]:
    """The names in ``imagePullSecrets``, in order, without repeats."""
    refs = pod_spec.get("imagePullSecrets")
    names: list[str] = []
    for ref in refs if isinstance(refs, list) else ():
        name = ref.get("name") if isinstance(ref, Mapping) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def service_account_of(pod_spec: Mapping[str, Any]) -> str:
    """The pod's service account (``default`` when none is named, as the apiserver fills in)."""
    for key in ("serviceAccountName", "serviceAccount"):
        value = pod_spec.get(key)
        if isinstance(value, str) and value:
            return value
    return "default"


def credentials_from_secret(secret: Mapping[str, Any]) -> dict[str, Credentials]:
    """Host → credentials in a ``dockerconfigjson`` or legacy ``dockercfg`` Secret; ``{}`` for others.

    A secret that does not parse yields nothing (and a log line naming it,
    never its content): a broken secret must not break admission.
    """
    kind = secret.get("type")
    data = secret.get("data")
    if not isinstance(data, Mapping):
        return {}
    meta = secret.get("metadata") if isinstance(secret.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    where = f"secret {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    try:
        if kind == DOCKER_CONFIG_JSON and ".dockerconfigjson" in data:
            text = base64.b64decode(str(data[".dockerconfigjson"])).decode()
        elif kind == DOCKER_CFG and ".dockercfg" in data:
            legacy = json.loads(base64.b64decode(str(data[".dockercfg"])).decode())
            text = json.dumps({"auths": legacy})
        else:
            return {}
        parsed = DockerCredentials.parse(text, source=where)
    except (InputError, ValueError, UnicodeDecodeError) as exc:
        log.warning(
            "pull secret does not parse; ignored",
            extra={"fields": {"secret_name": where, "error": type(exc).__name__}},
        )
        return {}
    return dict(parsed.auths)


def _valid(names: Sequence[str], namespace: str, where: str) -> list[str]:
    """The names that can be object names; the others are dropped with a log line.

    A name is the user's text: ``../../team-b/secrets/regcred`` must never
    become a path (:func:`controller.operator.kube.object_path` refuses it
    too). The kubelet could not pull with such a secret either, so dropping
    it changes nothing for a pod that can run.
    """
    good = [n for n in names if is_dns1123_subdomain(n)]
    if len(good) != len(names):
        log.warning(
            "ignored pull secret or service account names that are not object names",
            extra={
                "fields": {
                    "namespace": namespace,
                    "field": where,
                    "names": [n[:80] for n in names if n not in good],
                }
            },
        )
    return good


def merge(found: Sequence[Mapping[str, Credentials]]) -> dict[str, Credentials]:
    """First secret naming a host wins (the kubelet's order)."""
    out: dict[str, Credentials] = {}
    for creds in found:
        for host, value in creds.items():
            out.setdefault(host, value)
    return out


def fingerprint(creds: HostCredentials) -> frozenset[tuple[str, Credentials]]:
    """A hashable identity of a credential set, for caches (kept in memory only)."""
    return frozenset(creds.items())


class PullSecrets:
    """Reads and caches the pull secrets of pods."""

    def __init__(
        self,
        kube: KubeLike,
        *,
        ttl: float = 60.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.ttl = ttl
        self._cache: Loader[Hashable, Any] = Loader(ttl=ttl, max_entries=max_entries, clock=clock)

    async def for_pod(
        self, namespace: str | None, pod_spec: Mapping[str, Any]
    ) -> dict[str, Credentials]:
        """Host → credentials for a pod spec in ``namespace`` (``{}`` when it has none)."""
        if not namespace or not is_dns1123_label(namespace):
            return {}
        names = _valid(secret_names(pod_spec), namespace, "imagePullSecrets")
        account = service_account_of(pod_spec)
        if _valid([account], namespace, "serviceAccountName"):
            names += [
                n
                for n in _valid(await self._account_secrets(namespace, account), namespace, account)
                if n not in names
            ]
        if not names:
            return {}
        found = await asyncio.gather(*(self._secret(namespace, name) for name in names))
        return merge(found)

    async def _account_secrets(self, namespace: str, account: str) -> list[str]:
        async def load() -> tuple[list[str], float]:
            try:
                obj = await self.kube.get(
                    object_path("serviceaccounts", account, namespace=namespace)
                )
            except Exception as exc:
                return [], (self.ttl if getattr(exc, "status", None) == 404 else FAILURE_TTL)
            return secret_names(obj), self.ttl

        names: list[str] = await self._cache.get(("sa", namespace, account), load)
        return names

    async def _secret(self, namespace: str, name: str) -> dict[str, Credentials]:
        async def load() -> tuple[dict[str, Credentials], float]:
            try:
                obj = await self.kube.get(object_path("secrets", name, namespace=namespace))
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status != 404:
                    log.warning(
                        "cannot read a pull secret",
                        extra={"fields": {"secret_name": f"{namespace}/{name}", "status": status}},
                    )
                return {}, (self.ttl if status == 404 else FAILURE_TTL)
            return credentials_from_secret(obj), self.ttl

        creds: dict[str, Credentials] = await self._cache.get(("secret", namespace, name), load)
        return creds
