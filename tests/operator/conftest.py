"""Fixtures: the Kubernetes API double, a client for it, and the real operator running against it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.kube_api import ApiDouble

from controller.cli.commands.run import Started, serve
from controller.operator.kube import Kube, load_configuration
from controller.operator.replica import Operator
from controller.operator.settings import OperatorSettings
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig
from controller.webhook.settings import Settings

NAMESPACE = "baseguard"
SERVICE_HOST = f"baseguard.{NAMESPACE}.svc"
POLICY_API = "baseguard.io/v1alpha1"


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


def cluster_policy(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": POLICY_API,
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def ns_policy(name: str, ns: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": POLICY_API,
        "kind": "BaseImagePolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": dict(spec),
    }


NO_LATEST = {"pinning": {"disallowedTags": ["latest"]}}


def webhook_configurations() -> list[dict[str, Any]]:
    service = {"name": "baseguard", "namespace": NAMESPACE, "path": "/validate"}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "baseguard"},
            "webhooks": [
                {"name": "validate.baseguard.io", "clientConfig": {"service": service}},
                {"name": "policies.baseguard.io", "clientConfig": {"service": service}},
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "baseguard"},
            "webhooks": [
                {
                    "name": "mutate.baseguard.io",
                    "clientConfig": {"service": {**service, "path": "/mutate"}},
                }
            ],
        },
    ]


def pod(name: str, ns: str, image: str, **extra: Any) -> dict[str, Any]:
    spec = {"containers": [{"name": "app", "image": image}], **extra}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": spec,
    }


def review(
    obj: Mapping[str, Any],
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview as the apiserver sends it for ``obj``."""
    api_version = str(obj["apiVersion"])
    group, _, version = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
        "operation": operation,
        "name": meta.get("name"),
        "object": dict(obj),
        "userInfo": {"username": "tester"},
    }
    if meta.get("namespace"):
        request["namespace"] = meta["namespace"]
    if old is not None:
        request["oldObject"] = dict(old)
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


@pytest.fixture
def double(request: pytest.FixtureRequest) -> Iterator[ApiDouble]:
    """The API double with four namespaces and the ``wgpolicyk8s.io`` report CRD.

    ``indirect`` parameter: ``False`` for no report CRD, or a set of report API
    groups (``{"openreports.io"}``, ``{"openreports.io", "wgpolicyk8s.io"}``).
    """
    param = getattr(request, "param", True)
    groups = param if isinstance(param, (set, frozenset)) else ({"wgpolicyk8s.io"} if param else set())
    server = ApiDouble(
        policy_reports="wgpolicyk8s.io" in groups, open_reports="openreports.io" in groups
    ).start()
    for ns in (
        namespace("default"),
        namespace(NAMESPACE),
        namespace("team-a"),
        namespace("team-b"),
    ):
        server.apply(ns)
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(double: ApiDouble, tmp_path: Path) -> Path:
    return double.kubeconfig(tmp_path)


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[Kube]:
    client = Kube(load_configuration(kubeconfig=str(kubeconfig)))
    yield client
    client.close()


def fast_config(identity: str, **overrides: Any) -> OperatorSettings:
    """Intervals short enough for a test, long enough to be exact about what happens when."""
    base = OperatorSettings(
        namespace=NAMESPACE,
        identity=identity,
        lease_duration=2,
        renew_deadline=1.0,
        retry_period=0.1,
        tls_secret="baseguard-tls",
        manage_certificates=True,
        cert_check_interval=0.2,
        tls_poll_interval=0.1,
        status_resync_interval=60.0,
        audit_interval=0.0,
        catalog_refresh_interval=60.0,
    )
    return replace(base, **overrides)


class Replica:
    """One ``baseguard run`` (webhook + operator) against the double, on its own event loop in a thread.

    A thread per replica is what separate pods would give: kopf treats every
    task created on its loop after it starts as its own (and cancels it when it
    stops), so two replicas, or a test's fixtures, must not share its loop.
    """

    def __init__(
        self, run: Callable[[asyncio.Event, Callable[[Started], None]], Awaitable[int]]
    ) -> None:
        self._run = run
        self._started = threading.Event()
        self.started_info: Started | None = None
        self.result: int | BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_flag: asyncio.Event | None = None
        self.sessions: list[aiohttp.ClientSession] = []
        self.thread = threading.Thread(target=self._main, name="replica", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        async def main() -> int:
            self.loop = asyncio.get_running_loop()
            self.stop_flag = asyncio.Event()
            return await self._run(self.stop_flag, self._on_started)

        try:
            self.result = asyncio.run(main())
        except BaseException as exc:  # surfaced by the test through .result
            self.result = exc
        finally:
            self._started.set()

    def _on_started(self, info: Started) -> None:
        self.started_info = info
        self._started.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    @property
    def started(self) -> Started:
        assert self.started_info is not None, f"the replica did not start: {self.result!r}"
        return self.started_info

    @property
    def operator(self) -> Operator:
        return self.started.operator

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.started.port}"

    def session(self, ca_pem: bytes) -> aiohttp.ClientSession:
        """A client that trusts only ``ca_pem`` (it checks the Service's DNS name, like the apiserver)."""
        context = ssl.create_default_context(cadata=ca_pem.decode())
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, force_close=True)
        )
        self.sessions.append(session)
        return session

    async def stop(self) -> int | BaseException | None:
        for session in self.sessions:
            await session.close()
        self.sessions.clear()
        if self.loop is not None and self.stop_flag is not None and not self.done:
            self.loop.call_soon_threadsafe(self.stop_flag.set)
        await asyncio.to_thread(self.thread.join, 15)
        assert self.done, "the replica did not stop"
        return self.result


def secret_ca(double: ApiDouble) -> bytes:
    secret = double.get("v1", "Secret", "baseguard-tls", NAMESPACE)
    assert secret is not None, "the leader made no serving Secret"
    return base64.b64decode(secret["data"]["ca.crt"])


async def call(
    replica: Replica, double: ApiDouble, path: str, body: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST (or GET without a body) to the replica's webhook over verified TLS."""
    session = replica.session(secret_ca(double))
    url = replica.url + path
    if body is None:
        async with session.get(url, server_hostname=SERVICE_HOST) as resp:
            return resp.status, await resp.json()
    async with session.post(url, json=body, server_hostname=SERVICE_HOST) as resp:
        return resp.status, await resp.json()


async def admit(
    replica: Replica, double: ApiDouble, obj: Mapping[str, Any], **kwargs: Any
) -> dict[str, Any]:
    status, answer = await call(replica, double, "/validate", review(obj, **kwargs))
    assert status == 200, answer
    response: dict[str, Any] = answer["response"]
    return response


StartReplica = Callable[..., Awaitable[Replica]]


@pytest_asyncio.fixture
async def start_replica(double: ApiDouble, kubeconfig: Path) -> AsyncIterator[StartReplica]:
    """``await start_replica("pod-a", audit_interval=0.2, ...)`` → a ready :class:`Replica`."""
    replicas: list[Replica] = []

    async def start(
        identity: str = "pod-a",
        *,
        registry_config: RegistryConfig | None = None,
        registry_client: Callable[[], RegistryClient] | None = None,
        wait_ready: bool = True,
        **overrides: Any,
    ) -> Replica:
        config = fast_config(identity, **overrides)

        async def run(stop: asyncio.Event, started: Callable[[Started], None]) -> int:
            kube = Kube(load_configuration(kubeconfig=str(kubeconfig)))
            try:
                return await serve(
                    Settings(host="127.0.0.1", port=0, shutdown_timeout=1.0),
                    config,
                    kube=kube,
                    registry_config=registry_config,
                    registry_client=registry_client() if registry_client else None,
                    stop_flag=stop,
                    started=started,
                )
            finally:
                kube.close()

        replica = Replica(run)
        replicas.append(replica)
        await asyncio.to_thread(replica._started.wait, 10)
        _ = replica.started  # raises with the reason when it did not start
        if wait_ready:
            await double.wait_for(replica.operator.loaded.is_set, what=f"{identity} to be ready")
        return replica

    yield start
    for replica in replicas:
        with contextlib.suppress(Exception):
            await replica.stop()
