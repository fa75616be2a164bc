"""Item 6: leader election between two ``baseguard run`` processes on the chart's Lease.

Both replicas are the chart's ServiceAccount, each with a token of its own; the
apiserver's audit log names the token (``credential-id``) of every write, so "only
the leader writes status" is read from what the apiserver recorded.
"""

from __future__ import annotations

import os
import signal

from cluster.cluster_support import (
    Balancer,
    Baseguard,
    Installation,
    apply_ready,
    policy,
    written_by,
)
from support.controlplane import ControlPlane, wait_for
from support.registry import free_port

LEASE = "baseguard-leader"


def holder(plane: ControlPlane, namespace: str) -> str:
    lease = plane.get_json("lease", LEASE, "-n", namespace)
    return str(lease["spec"].get("holderIdentity") or "")


def test_the_other_replica_takes_over_and_only_the_leader_writes_status(
    control_plane: ControlPlane,
    installation: Installation,
    baseguard: Baseguard,
    balancer: Balancer,
) -> None:
    ns = installation.namespace
    wait_for(
        "replica-a to hold the Lease",
        lambda: holder(control_plane, ns) == baseguard.identity,
        timeout=30,
    )
    lease = control_plane.get_json("lease", LEASE, "-n", ns)["spec"]
    duration = int(lease["leaseDurationSeconds"])
    second = installation.process("replica-b", free_port()).start()
    try:
        installation.wait_until_served(second)
        balancer.backends = [baseguard.port, second.port]  # the Service: both replicas serve
        mark = control_plane.audit_mark()
        apply_ready(control_plane, policy("leader-check-1", {"mode": "Audit", "pinning": {}}))
        writers = set(
            written_by(
                control_plane, resource="clusterbaseimagepolicies", subresource="status", since=mark
            )
        )
        assert writers == {baseguard.jti}, (writers, baseguard.jti, second.jti)

        # The leader dies without a word (no Lease release): the other waits the Lease out.
        assert baseguard.popen is not None
        os.killpg(baseguard.popen.pid, signal.SIGKILL)
        baseguard.popen.wait(10)
        wait_for(
            "replica-b to take the Lease",
            lambda: holder(control_plane, ns) == second.identity,
            timeout=duration * 2 + 10,
        )
        mark = control_plane.audit_mark()
        apply_ready(control_plane, policy("leader-check-2", {"mode": "Audit", "pinning": {}}))
        writers = set(
            written_by(
                control_plane, resource="clusterbaseimagepolicies", subresource="status", since=mark
            )
        )
        assert writers == {second.jti}, (writers, second.jti)
    finally:
        control_plane.kubectl(
            "delete",
            "clusterbaseimagepolicy",
            "leader-check-1",
            "leader-check-2",
            "--ignore-not-found",
        )
        baseguard.start()
        balancer.backends = [baseguard.port]
        second.stop()  # a clean stop releases the Lease: replica-a takes it at once
        installation.wait_until_served(baseguard)
        wait_for(
            "replica-a to lead again",
            lambda: holder(control_plane, ns) == baseguard.identity,
            timeout=duration * 2 + 10,
        )
