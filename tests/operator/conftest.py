"""Fixtures: the Kubernetes API double, a client for it, and the real operator running against it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support.kube_api import ApiDouble
from support.kube_objects import NAMESPACE, namespace
from support.replicas import Replica, StartReplica, fast_config

from controller.cli.commands.run import Started, serve
from controller.operator.kube import Kube, load_configuration
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig
from controller.webhook.settings import Settings


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


@pytest_asyncio.fixture
async def start_replica(double: ApiDouble, kubeconfig: Path) -> AsyncIterator[StartReplica]:
    """``await start_replica("pod-a", audit_interval=0.2, ...)`` → a ready :class:`Replica`."""
    replicas: list[Replica] = []

    async def start(
        identity: str = "pod-a",
        *,
        registry_config: RegistryConfig | None = None,
        registry_client: Callable[[], RegistryClient] | None = None,
        roots: Mapping[str, Any] | None = None,
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
                    roots=roots,
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
