"""Session fixtures of the control-plane suite: one apiserver, the chart applied, baseguard running.

The binaries come from ``tests/cluster/build.sh`` (a cache outside the repository).
Without them the suite is skipped with the reason on a laptop, and fails under CI.
Everything heavy is session-scoped; a test gets its own namespace (``ns``) and names
its own policies, so tests never depend on each other's objects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from cluster.cluster_support import (
    POLICY_REPORT_CRDS,
    Balancer,
    Baseguard,
    Installation,
    install,
    load_documents,
    short_name,
)
from support.controlplane import BUILD_SCRIPT, ControlPlane, binaries_dir
from support.preconditions import unavailable
from support.registry import RegistryProcess, free_port


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    where, ready = binaries_dir()
    if not ready:
        go = shutil.which("go") or (shutil.which("/usr/local/go/bin/go"))
        how = (
            f"run {BUILD_SCRIPT.relative_to(BUILD_SCRIPT.parents[2])} (Go found: {go})"
            if go
            else "install Go, then run tests/cluster/build.sh"
        )
        unavailable(f"the Kubernetes control plane is not built in {where}: {how}")
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"), where).start()
    plane.apply(
        [
            d
            for path in (
                POLICY_REPORT_CRDS,
                POLICY_REPORT_CRDS.with_name("wgpolicyk8s.io_clusterpolicyreports.yaml"),
            )
            for d in load_documents(path)
        ]
    )
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def installation(
    control_plane: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryProcess,
    tls_registry: RegistryProcess,
) -> Installation:
    """The chart (URL mode, defaults otherwise) applied; a token of its ServiceAccount minted."""
    assert tls_registry.ca_file is not None
    return install(
        control_plane,
        tmp_path_factory.mktemp("baseguard"),
        free_port(),
        registry_config={
            "registries": [
                {"host": registry.host, "insecure": True},
                {"host": tls_registry.host, "caFile": tls_registry.ca_file},
            ],
            "timeout": 3,
        },
    )


@pytest.fixture(scope="session")
def balancer(installation: Installation) -> Iterator[Balancer]:
    """What the apiserver connects to (the chart's ``webhook.url``): forwards to the replicas."""
    forwarder = Balancer(int(installation.values["webhook"]["url"].rsplit(":", 1)[1]))
    yield forwarder
    forwarder.close()


@pytest.fixture(scope="session")
def baseguard(installation: Installation, balancer: Balancer) -> Iterator[Baseguard]:
    """``baseguard run`` with the chart's arguments, behind the URL the apiserver calls."""
    process = installation.process("replica-a", free_port(), "--audit-interval=2s").start()
    balancer.backends = [process.port]
    try:
        installation.wait_until_served(process)
        yield process
    finally:
        process.stop()


@pytest.fixture
def ns(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (deleted afterwards, without waiting)."""
    name = control_plane.namespace(short_name(request.node.nodeid, "ns"))
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
