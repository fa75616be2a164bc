"""A thin layer over the official ``kubernetes`` client, kept off the event loop.

The client is synchronous (urllib3); every call here runs in a worker thread
(``asyncio.to_thread``) so the webhook sharing the loop never waits on the
API server. Requests go through the client's generic ``param_serialize`` /
``call_api``: raw REST paths in, plain JSON dicts out (the shapes the
apiserver sends, which :mod:`controller.workloads` reads), no generated
models in between.

Connection settings are loaded once, into a private ``Configuration``
(never the library's global default): in-cluster from the service account,
or from a kubeconfig. :meth:`Kube.connection_info` hands the same settings
to kopf, so the watcher and these calls always talk to the same server as
the same user.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from controller.errors import InputError

if TYPE_CHECKING:
    import kopf
    from kubernetes.client import ApiClient, Configuration

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
DEFAULT_TIMEOUT = 15.0
PAGE = 500


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class InvalidName(InputError):
    """A name that cannot be a Kubernetes object's name, refused before it reaches a URL."""


def is_dns1123_label(name: object) -> bool:
    """A namespace's name: at most 63 of ``a-z0-9-``, starting and ending alphanumeric."""
    return isinstance(name, str) and len(name) <= 63 and bool(_DNS1123_LABEL.match(name))


def is_dns1123_subdomain(name: object) -> bool:
    """A Secret's or ServiceAccount's name: labels joined by dots, at most 253 characters."""
    return isinstance(name, str) and len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def object_path(
    resource: str, name: str | None = None, *, namespace: str | None = None, api: str = "/api/v1"
) -> str:
    """The REST path of a collection or an object, built only from names that are names.

    A name taken from a user's object (a pod's ``imagePullSecrets``) went into
    the path as it was, so ``../../team-b/secrets/regcred`` read another
    namespace's Secret. Each name must pass the apiserver's own grammar
    (namespace: DNS-1123 label; object: DNS-1123 subdomain), or
    :class:`InvalidName` is raised; the segments are then percent-quoted as
    well, so no character of a name can ever act as a separator.
    """
    parts = [api.rstrip("/")]
    if namespace is not None:
        if not is_dns1123_label(namespace):
            raise InvalidName(f"namespace {namespace[:80]!r} is not a DNS-1123 label")
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(resource)
    if name is not None:
        if not is_dns1123_subdomain(name):
            raise InvalidName(f"{resource} name {name[:80]!r} is not a DNS-1123 subdomain")
        parts.append(quote(name, safe=""))
    return "/".join(parts)


class KubeError(Exception):
    """A non-2xx answer from the API server (``status`` 0: it could not be reached)."""

    def __init__(
        self, status: int, reason: str, message: str, *, method: str = "", path: str = ""
    ) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class KubeLike(Protocol):
    """The calls the operator's parts make: :class:`Kube` in production, fakes in unit tests.

    One Protocol for every part (the elector, the certificate keeper, the
    audit, the pull secrets); each uses a subset, and a fake implements only
    what the part under test calls.
    """

    async def get(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]: ...

    async def list(
        self, path: str, *, params: Mapping[str, str] | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch(self, path: str, body: Any, *, content_type: str = ...) -> dict[str, Any]: ...

    async def delete(self, path: str) -> dict[str, Any]: ...


def in_cluster() -> bool:
    return os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token"))


def load_configuration(
    *, kubeconfig: str | None = None, context: str | None = None
) -> Configuration:
    """In-cluster settings when running in a pod (and no kubeconfig is named), else the kubeconfig.

    The kubeconfig is ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``.
    """
    from kubernetes.client import Configuration
    from kubernetes.config import ConfigException
    from kubernetes.config.incluster_config import InClusterConfigLoader
    from kubernetes.config.kube_config import load_kube_config

    configuration = Configuration()
    try:
        if kubeconfig is None and context is None and in_cluster():
            loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=os.path.join(SERVICE_ACCOUNT_DIR, "token"),
                cert_filename=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            )
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        else:
            load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise InputError(
            f"cannot load the Kubernetes connection settings ({where}): {exc}"
        ) from None
    return configuration


def own_namespace(default: str = "default") -> str:
    """The pod's namespace (service account mount, else ``$POD_NAMESPACE``), else ``default``."""
    try:
        with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as f:
            text = f.read().strip()
            if text:
                return text
    except OSError:
        pass
    return os.environ.get("POD_NAMESPACE") or default


class Kube:
    """REST calls on one ``ApiClient``; every method is a coroutine and runs the call in a thread."""

    def __init__(self, configuration: Configuration, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        from kubernetes.client import ApiClient

        self.configuration = configuration
        self.timeout = timeout
        self._api: ApiClient = ApiClient(configuration)

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        return cls(load_configuration(kubeconfig=kubeconfig, context=context))

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    # ---- the calls

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def list(
        self, path: str, *, params: Mapping[str, str] | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a collection, page by page; items get ``kind`` when the list left it out."""
        items: list[dict[str, Any]] = []
        query = {"limit": str(PAGE), **(params or {})}
        while True:
            page = await self.request("GET", path, params=query)
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    if kind and "kind" not in item:
                        item["kind"] = kind
                    items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {**query, "continue": token}

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def patch(
        self,
        path: str,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        content_type: str = MERGE,
    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self.request("DELETE", path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, method, path, params, body, content_type)

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            _, url, headers, payload, _ = self._api.param_serialize(
                method,
                path,
                query_params=list((params or {}).items()) or None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=self.timeout
            )
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise KubeError(
                exc.status or 0,
                str(exc.reason or ""),
                str(exc.body or ""),
                method=method,
                path=path,
            ) from None
        except (HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", str(exc), method=method, path=path) from None
        data: bytes = response.data or b""
        status = int(response.status)
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {}
        if not 200 <= status < 300:
            message = decoded.get("message") if isinstance(decoded, dict) else None
            raise KubeError(
                status,
                str(decoded.get("reason") if isinstance(decoded, dict) else response.reason),
                str(message or data[:200].decode(errors="replace")),
                method=method,
                path=path,
            )
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    # ---- kopf

    def connection_info(self) -> kopf.ConnectionInfo:
        """The same server, CA, client certificate and token, for kopf's own client."""
        import kopf

        config = self.configuration
        token = config.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token and token.lower().startswith("bearer "):
            token = token[len("bearer ") :]
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
            username=config.username or None,
            password=config.password or None,
            token=token or None,
        )
