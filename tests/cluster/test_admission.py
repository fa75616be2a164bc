"""Item 3: admission through the apiserver, as ``kubectl`` users see it.

``baseguard run`` is a local process with the chart's arguments and a token of the
chart's ServiceAccount; the apiserver calls it at the chart's ``webhook.url``. Each
test has its own namespace and its own namespaced policies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster.cluster_support import (
    Baseguard,
    apply_ready,
    decisions,
    denial,
    pod,
    policy,
)
from cluster.recorder import Recorder
from support.controlplane import ControlPlane, wait_for
from support.images import Pushed, layer
from support.registry import RegistryProcess

DENIED_BY = 'admission webhook "workloads.validate.baseguard.io" denied the request'
NO_LATEST = {"mode": "Enforce", "pinning": {"disallowedTags": ["latest"]}}
VERSIONS = {"mode": "Warn", "pinning": {"require": "Version", "disallowedTags": []}}


@pytest.fixture(scope="module")
def app(registry: RegistryProcess) -> Pushed:
    """A real image in the plain registry, tagged with a full version."""
    return registry.pusher.push_image("cluster/app", "1.2.3", [layer({"app/main": "v1"})])


def test_a_denied_pod_shows_the_webhook_message_in_kubectl(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    image = f"{registry.host}/cluster/app:latest"
    result = control_plane.kubectl("run", "web", f"--image={image}", "-n", ns, check=False)
    printed = denial(result)
    assert f"Error from server (Forbidden): {DENIED_BY}" in printed
    for part in ("web", image, f"{ns}/no-latest", "disallowed-tag"):
        assert part in printed, printed
    assert control_plane.kubectl("get", "pod", "web", "-n", ns, check=False).returncode != 0


def test_a_warning_is_printed_by_kubectl_and_the_pod_is_created(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("versions", VERSIONS, namespace=ns))
    image = f"{registry.host}/cluster/app:1.2"
    result = control_plane.kubectl("run", "web", f"--image={image}", "-n", ns)
    assert "Warning:" in result.stderr, result.stderr
    # the container names the image; the warning says what is wrong with it and the fix
    assert 'Warning: unpinned, container "web": uses the tag "1.2"' in result.stderr, result.stderr
    assert "; pin a full version tag or a digest" in result.stderr, result.stderr
    assert control_plane.get_json("pod", "web", "-n", ns)["spec"]["containers"][0]["image"] == image


WARN_LATEST = {"mode": "Warn", "pinning": {"disallowedTags": ["latest"]}}


def test_a_warning_keeps_its_fix_whole_whatever_the_container_name(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    """kubectl printed ``…which the policy disallows; pin a...`` once a container name had
    8 characters: the fix was cut. Through the apiserver, every warning keeps its fix."""
    apply_ready(control_plane, policy("warn-latest", WARN_LATEST, namespace=ns))
    image = f"{registry.host}/cluster/app:latest"
    names = ["w", "warn-latest", "warn-latest-" + "x" * 20, "c" * 62 + "z"]
    spec = pod("warn", image, namespace=ns)
    spec["spec"]["containers"] = [{"name": name, "image": image} for name in names]
    result = control_plane.apply([spec])
    printed = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(printed) == len(names), result.stderr
    for line in printed:
        warning = line.removeprefix("Warning: ")
        assert len(warning) <= 120, line
        assert warning.startswith('disallowed-tag, container "'), line
        assert warning.endswith("; pin a version tag or a digest") or warning.endswith(
            f"; pin a version tag or a digest, e.g. {registry.host}/cluster/app@sha256:<digest>"
        ), line
    assert (
        'Warning: disallowed-tag, container "warn-latest": uses the tag "latest", which the '
        "policy...; pin a version tag or a digest"
    ) in printed, result.stderr
    assert control_plane.get_json("pod", "warn", "-n", ns)["metadata"]["name"] == "warn"


def test_server_side_dry_run_is_judged_and_creates_nothing(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    bad = pod("dry", f"{registry.host}/cluster/app:latest", namespace=ns)
    printed = denial(control_plane.apply([bad], "--dry-run=server", check=False))
    assert DENIED_BY in printed
    good = pod("dry", f"{registry.host}/cluster/app:1.2.3", namespace=ns)
    assert "(server dry run)" in control_plane.apply([good], "--dry-run=server").stdout
    assert control_plane.kubectl("get", "pod", "dry", "-n", ns, check=False).returncode != 0
    seen = wait_for(
        "the dry-run decisions in the log",
        lambda: (
            (found := decisions(baseguard, namespace=ns, kind="Pod", endpoint="validate"))
            and len(found) >= 2
            and found
        ),
        timeout=15,
    )
    assert all(d["dry_run"] is True for d in seen), seen


def test_a_deployment_its_replicaset_and_pods_are_judged_the_same(
    control_plane: ControlPlane,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
    app: Pushed,
) -> None:
    apply_ready(control_plane, policy("versions", VERSIONS, namespace=ns))
    image = f"{registry.host}/cluster/app:1.2"  # warned, admitted
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }
    result = control_plane.apply([deployment])
    assert "Warning:" in result.stderr
    pods = wait_for(
        "the controller-manager to create 2 Pods",
        lambda: (
            (items := control_plane.get_json("pods", "-n", ns, "-l", "app=api")["items"])
            and len(items) == 2
            and items
        ),
        timeout=60,
    )
    replicaset = control_plane.get_json("replicasets", "-n", ns, "-l", "app=api")["items"][0]
    assert replicaset["metadata"]["ownerReferences"][0]["name"] == "api"
    for p in pods:
        assert p["metadata"]["generateName"] == replicaset["metadata"]["name"] + "-"
        assert p["metadata"]["ownerReferences"][0]["uid"] == replicaset["metadata"]["uid"]

    def verdicts() -> dict[str, list[str]] | None:
        found: dict[str, list[str]] = {}
        for d in decisions(baseguard, namespace=ns, endpoint="validate", operation="CREATE"):
            if d["kind"] != "BaseImagePolicy":
                found.setdefault(d["kind"], []).append(d["verdict"])
        return found if len(found.get("Pod", [])) == 2 and "ReplicaSet" in found else None

    seen = wait_for(
        "decisions for the Deployment, its ReplicaSet and both Pods", verdicts, timeout=30
    )
    assert seen == {"Deployment": ["warn"], "ReplicaSet": ["warn"], "Pod": ["warn", "warn"]}
    # The Pods the controller made carry generated names in the review, and were judged
    # with the same rule as the Deployment.
    pod_names = {
        d["name"] for d in decisions(baseguard, namespace=ns, kind="Pod", endpoint="validate")
    }
    assert all(name.startswith(replicaset["metadata"]["name"] + "-") for name in pod_names), (
        pod_names
    )


def test_an_image_update_is_judged(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    control_plane.kubectl("run", "web", f"--image={registry.host}/cluster/app:1.2.3", "-n", ns)
    printed = denial(
        control_plane.kubectl(
            "set",
            "image",
            "pod/web",
            f"web={registry.host}/cluster/app:latest",
            "-n",
            ns,
            check=False,
        )
    )
    assert DENIED_BY in printed and "disallowed-tag" in printed
    live = control_plane.get_json("pod", "web", "-n", ns)
    assert live["spec"]["containers"][0]["image"].endswith(":1.2.3")


def test_kubectl_debug_ephemeral_container_is_judged(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    control_plane.kubectl("run", "web", f"--image={registry.host}/cluster/app:1.2.3", "-n", ns)
    printed = denial(
        control_plane.kubectl(
            "debug",
            "web",
            "-n",
            ns,
            f"--image={registry.host}/cluster/debug:latest",
            "--container=dbg",
            check=False,
        )
    )
    assert DENIED_BY in printed and "dbg" in printed, printed
    review = wait_for(
        "the ephemeralcontainers decision in the log",
        lambda: decisions(baseguard, namespace=ns, kind="Pod", sub_resource="ephemeralcontainers"),
        timeout=15,
    )
    assert review[-1]["verdict"] == "deny", review
    allowed = control_plane.kubectl(
        "debug", "web", "-n", ns, f"--image={registry.host}/cluster/debug:1.0.0", "--container=dbg2"
    )
    assert allowed.returncode == 0
    live = control_plane.get_json("pod", "web", "-n", ns)
    assert [c["name"] for c in live["spec"]["ephemeralContainers"]] == ["dbg2"]


def test_a_cronjob_is_judged(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    printed = denial(
        control_plane.kubectl(
            "create",
            "cronjob",
            "nightly",
            "-n",
            ns,
            f"--image={registry.host}/cluster/job:latest",
            "--schedule=0 3 * * *",
            check=False,
        )
    )
    assert DENIED_BY in printed and "nightly" in printed
    logged = wait_for(
        "the CronJob decision in the log",
        lambda: decisions(baseguard, namespace=ns, kind="CronJob", endpoint="validate"),
        timeout=15,
    )
    assert logged[-1]["verdict"] == "deny", logged


def test_mutation_pins_digests_and_records_them(
    control_plane: ControlPlane,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
    app: Pushed,
) -> None:
    apply_ready(
        control_plane,
        policy(
            "pin",
            {"mode": "Enforce", "pinning": {"disallowedTags": [], "mutateToDigest": True}},
            namespace=ns,
        ),
    )
    control_plane.kubectl("run", "web", f"--image={app.tagged}", "-n", ns)
    live = control_plane.get_json("pod", "web", "-n", ns)
    assert live["spec"]["containers"][0]["image"] == f"{app.tagged}@{app.digest}"
    checked = json.loads(live["metadata"]["annotations"]["baseguard.io/checked-digests"])
    assert checked == {"web": app.digest}, checked


def test_a_sidecar_injected_after_baseguard_is_pinned_on_reinvocation(
    control_plane: ControlPlane,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
    app: Pushed,
) -> None:
    """A later mutating webhook adds a container; ``reinvocationPolicy: IfNeeded`` brings baseguard back."""
    sidecar = registry.pusher.push_image("cluster/sidecar", "2.0.0", [layer({"sidecar": "v2"})])

    def inject(review: dict[str, Any]) -> list[dict[str, Any]] | None:
        containers = review["request"]["object"]["spec"]["containers"]
        if any(c["name"] == "sidecar" for c in containers):
            return None
        return [
            {
                "op": "add",
                "path": "/spec/containers/-",
                "value": {"name": "sidecar", "image": sidecar.tagged},
            }
        ]

    injector = Recorder(mutate=inject)
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": f"zz-inject-{ns}"},  # after "baseguard": called later
        "webhooks": [
            {
                "name": "sidecar.inject.baseguard.test",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "clientConfig": injector.configuration("unused", ns)["webhooks"][0]["clientConfig"],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }
    apply_ready(
        control_plane,
        policy(
            "pin",
            {"mode": "Enforce", "pinning": {"disallowedTags": [], "mutateToDigest": True}},
            namespace=ns,
        ),
    )
    control_plane.apply([configuration])
    try:
        wait_for(
            "the injector to be called",
            lambda: (
                control_plane.apply(
                    [pod("probe", app.tagged, namespace=ns)], "--dry-run=server"
                ).returncode
                == 0
                and bool(injector.snapshot())
            ),
            timeout=30,
            interval=0.5,
        )
        control_plane.kubectl("run", "web", f"--image={app.tagged}", "-n", ns)
        live = control_plane.get_json("pod", "web", "-n", ns)
        images = {c["name"]: c["image"] for c in live["spec"]["containers"]}
        assert images == {
            "web": f"{app.tagged}@{app.digest}",
            "sidecar": f"{sidecar.tagged}@{sidecar.digest}",
        }
        checked = json.loads(live["metadata"]["annotations"]["baseguard.io/checked-digests"])
        assert checked == {"web": app.digest, "sidecar": sidecar.digest}
        reinvoked = wait_for(
            "baseguard's first call and its reinvocation in the log",
            lambda: (
                found := decisions(baseguard, namespace=ns, kind="Pod", endpoint="mutate", name="web")
            )
            and len(found) >= 2
            and found,
            timeout=15,
        )
        assert len(reinvoked) >= 2, reinvoked
    finally:
        control_plane.kubectl(
            "delete", "mutatingwebhookconfiguration", f"zz-inject-{ns}", "--ignore-not-found"
        )
        injector.close()
