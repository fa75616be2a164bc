"""The mutating webhook through the real apiserver: registered only while a policy pins.

With ``webhook.mutating.register: WhenNeeded`` (the chart's default) the
MutatingWebhookConfiguration holds no webhook, so a pod create costs the apiserver one
webhook call; a ``pinning.mutateToDigest`` policy makes the leader add the entry (pods
are then pinned, as ``kubectl`` shows), and deleting the policy removes it again.
"""

from __future__ import annotations

import json

from cluster.cluster_support import (
    Baseguard,
    Installation,
    apply_ready,
    decisions,
    mutating_webhooks,
    pod,
    policy,
    sample_sum,
    scrape,
)
from support.controlplane import ControlPlane, wait_for
from support.images import Pushed, layer
from support.registry import RegistryProcess

PIN = {"mode": "Enforce", "pinning": {"disallowedTags": [], "mutateToDigest": True}}
PLAIN = {"mode": "Warn", "pinning": {"disallowedTags": ["latest"]}}
MUTATE = "baseguard_admission_requests_total"


def no_mutating_webhook(plane: ControlPlane) -> None:
    """Wait until no policy of an earlier test (namespaces deleted without waiting) pins any more."""
    wait_for(
        "the mutating configuration to hold no webhook",
        lambda: mutating_webhooks(plane) == [],
        timeout=90,
        interval=0.5,
    )


def test_without_a_pinning_policy_the_apiserver_never_calls_mutate(
    control_plane: ControlPlane,
    installation: Installation,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
) -> None:
    image = registry.pusher.push_image("cluster/plain", "1.0.0", [layer({"plain": "v1"})])
    apply_ready(control_plane, policy("plain", PLAIN, namespace=ns))
    no_mutating_webhook(control_plane)
    ca = installation.ca_bundle()
    before = sample_sum(scrape(baseguard, ca), MUTATE, endpoint="mutate")
    result = control_plane.apply([pod("dry", image.tagged, namespace=ns)], "--dry-run=server")
    assert result.returncode == 0, result.stderr
    wait_for(
        "the validating decision",
        lambda: decisions(baseguard, namespace=ns, kind="Pod", endpoint="validate", name="dry"),
        timeout=15,
    )
    assert decisions(baseguard, namespace=ns, endpoint="mutate") == []
    assert sample_sum(scrape(baseguard, ca), MUTATE, endpoint="mutate") == before


def test_a_pinning_policy_registers_the_webhook_and_deleting_it_removes_it(
    control_plane: ControlPlane,
    installation: Installation,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
) -> None:
    app: Pushed = registry.pusher.push_image("cluster/pinned", "3.1.4", [layer({"pinned": "v1"})])
    apply_ready(control_plane, policy("pin", PIN, namespace=ns))
    [entry] = mutating_webhooks(control_plane)  # in place before the policy was Ready
    assert entry["name"] == "workloads.mutate.baseguard.io"
    assert entry["clientConfig"]["caBundle"] == control_plane.get_json(
        "validatingwebhookconfiguration", installation.release
    )["webhooks"][0]["clientConfig"]["caBundle"]
    assert {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]} in entry[
        "namespaceSelector"
    ]["matchExpressions"]

    # the chart applied again (kubectl's three-way merge, as Helm's upgrade does): its
    # `webhooks: []` never changed, so the entry the leader added stays
    control_plane.apply(
        [o for o in installation.objects if o["kind"] == "MutatingWebhookConfiguration"]
    )
    assert [h["name"] for h in mutating_webhooks(control_plane)] == [entry["name"]]

    control_plane.kubectl("run", "web", f"--image={app.tagged}", "-n", ns)
    shown = control_plane.kubectl(
        "get", "pod", "web", "-n", ns, "-o", "jsonpath={.spec.containers[0].image}"
    ).stdout
    assert shown == f"{app.tagged}@{app.digest}", shown
    live = control_plane.get_json("pod", "web", "-n", ns)
    checked = json.loads(live["metadata"]["annotations"]["baseguard.io/checked-digests"])
    assert checked == {"web": app.digest}

    control_plane.kubectl("delete", "baseimagepolicy", "pin", "-n", ns)
    no_mutating_webhook(control_plane)
    control_plane.kubectl("run", "after", f"--image={app.tagged}", "-n", ns)
    after = control_plane.get_json("pod", "after", "-n", ns)
    assert after["spec"]["containers"][0]["image"] == app.tagged
    assert "baseguard.io/checked-digests" not in (after["metadata"].get("annotations") or {})
