"""Item 1: every object the chart renders is accepted by a real apiserver, CRDs and CEL included.

The chart tests check the renderings against offline schemas; here the apiserver
itself decides (OpenAPI validation, defaulting, CEL with its own cost estimator),
first by server-side dry-run, then for real. Third-party kinds the chart renders
(cert-manager, Prometheus Operator) are checked against their owners' published CRDs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster.cluster_support import CRDS, DATA, Baseguard, Installation, load_documents
from support.chart import VALUE_SETS, render
from support.controlplane import ControlPlane

THIRD_PARTY_CRDS = [
    DATA / "crds" / "cert-manager.io_certificates.yaml",
    DATA / "crds" / "cert-manager.io_issuers.yaml",
    DATA / "crds" / "monitoring.coreos.com_servicemonitors.yaml",
]
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}


@pytest.fixture(scope="module")
def third_party_crds(control_plane: ControlPlane) -> None:
    crds = [d for path in THIRD_PARTY_CRDS for d in load_documents(path)]
    control_plane.apply(crds, "--server-side")
    for crd in crds:
        control_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )


def test_the_crds_are_established_with_their_cel_rules_accepted(
    control_plane: ControlPlane, baseguard: Baseguard
) -> None:
    for path in CRDS:
        for crd in load_documents(path):
            live = control_plane.get_json("crd", crd["metadata"]["name"])
            conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
            assert conditions.get("Established") == "True", conditions
            assert conditions.get("NamesAccepted") == "True", conditions
            assert "NonStructuralSchema" not in conditions, conditions
            # The CEL rules went in: the apiserver estimated their cost and kept them
            # (the exception CRD has none: its schema says all it needs structurally).
            served = json.dumps(live["spec"]["versions"])
            written = json.dumps(crd["spec"]["versions"]).count("x-kubernetes-validations")
            assert served.count("x-kubernetes-validations") == written
            assert written or crd["spec"]["names"]["kind"] == "BaseImagePolicyException"
    again = control_plane.apply(
        [d for path in CRDS for d in load_documents(path)], "--dry-run=server"
    )
    assert "Warning" not in again.stderr, again.stderr


def _release_objects(value_set: str) -> tuple[str, str, list[dict[str, Any]]]:
    release = f"vs-{value_set}"[:20].rstrip("-")
    namespace = f"chart-{value_set}"
    rendered = render(VALUE_SETS[value_set], name=release, namespace=namespace)
    return release, namespace, list(rendered.objects)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_is_accepted_by_dry_run_then_apply(
    control_plane: ControlPlane, baseguard: Baseguard, third_party_crds: None, value_set: str
) -> None:
    release, namespace, objects = _release_objects(value_set)
    control_plane.namespace(namespace)
    # Webhook configurations go last and leave first: this release has no running
    # webhook, and a Fail policy pointing at it would refuse everything else.
    ordered = [o for o in objects if o["kind"] not in WEBHOOK_KINDS] + [
        o for o in objects if o["kind"] in WEBHOOK_KINDS
    ]
    dry = control_plane.apply(ordered, "-n", namespace, "--dry-run=server", check=False)
    assert dry.returncode == 0, dry.stderr
    assert "Warning" not in dry.stderr, dry.stderr
    try:
        applied = control_plane.apply(ordered, "-n", namespace, check=False)
        assert applied.returncode == 0, applied.stderr
        for obj in ordered:
            args = [obj["kind"].lower(), obj["metadata"]["name"]]
            if obj["kind"] not in {
                "ClusterRole",
                "ClusterRoleBinding",
                *WEBHOOK_KINDS,
                "ClusterBaseImagePolicy",
            }:
                args += ["-n", namespace]
            assert control_plane.kubectl("get", *args, check=False).returncode == 0, args
    finally:
        for kind in sorted(WEBHOOK_KINDS):
            control_plane.kubectl(
                "delete", kind.lower(), release, "--ignore-not-found", "--wait=false"
            )
        control_plane.kubectl(
            "delete",
            "-f",
            "-",
            "-n",
            namespace,
            "--ignore-not-found",
            "--wait=false",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
            check=False,
        )


def test_url_mode_points_the_apiserver_at_the_url(
    control_plane: ControlPlane, installation: Installation, baseguard: Baseguard
) -> None:
    base = installation.values["webhook"]["url"]
    for kind, path in (
        ("validatingwebhookconfiguration", "/validate"),
        ("mutatingwebhookconfiguration", "/mutate"),
    ):
        live = control_plane.get_json(kind, "baseguard")
        # the mutating entry the leader installs while a policy pins (register: WhenNeeded)
        template = (live["metadata"].get("annotations") or {}).get("baseguard.io/webhook-template")
        hooks = [*live.get("webhooks", []), *([json.loads(template)] if template else [])]
        assert hooks
        assert [w["clientConfig"].get("url") for w in hooks] == [
            base + ("/validate" if w["name"].startswith("policies.") else path) for w in hooks
        ]
        assert all("service" not in w["clientConfig"] for w in hooks)
