"""``vapBackstop``: the leader keeps generated ValidatingAdmissionPolicies in step with the policies.

Against the real kube-apiserver: with the chart's ``vapBackstop: true`` (its RBAC rule
and its arguments), a policy applied makes its ValidatingAdmissionPolicy and binding
appear, labelled as this installation's; with baseguard stopped (the webhook fails open,
``failurePolicy: Ignore``) the apiserver itself still refuses a ``latest`` pod; the policy
deleted, both objects go, while a same-labelled object baseguard did not write stays.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster.cluster_support import Baseguard, Installation, chart_args, pod, short_name
from support.chart import render
from support.controlplane import ControlPlane, wait_for
from support.registry import RegistryProcess

API = "admissionregistration.k8s.io"


def backstop_policy(name: str, namespace: str) -> dict[str, Any]:
    """A cluster policy judged only in the test's namespace (other tests' pods never meet it)."""
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": ["latest"]},
            "match": {"namespaces": [namespace]},
        },
    }


def held(plane: ControlPlane, resource: str, name: str) -> dict[str, Any] | None:
    found = plane.kubectl("get", f"{resource}.{API}", name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


@pytest.fixture
def backstop(
    control_plane: ControlPlane, installation: Installation, baseguard: Baseguard
) -> Iterator[Baseguard]:
    """The session's replica replaced by one started with the chart's ``vapBackstop`` arguments
    and RBAC (the rendered chart's rule, bound to the same ServiceAccount); restored after."""
    rendered = render({**installation.values, "vapBackstop": True})
    rules = [
        r
        for o in rendered.objects
        if o["kind"] == "ClusterRole"
        for r in o["rules"]
        if "validatingadmissionpolicies" in r.get("resources", [])
    ]
    assert rules, "the chart grants nothing on validatingadmissionpolicies with vapBackstop"
    extra_role = short_name("backstop-role", "baseguard-backstop")
    control_plane.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": extra_role},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": extra_role},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": extra_role,
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": installation.account,
                        "namespace": installation.namespace,
                    }
                ],
            },
        ]
    )
    flags = [a for a in chart_args(rendered.objects, installation.namespace) if "--vap-" in a]
    assert "--vap-backstop" in flags
    baseguard.stop()
    replica = installation.process(
        "backstop", baseguard.port, *flags, "--vap-check-interval=1s", "--audit-interval=0"
    ).start()
    try:
        installation.wait_until_served(replica)
        yield replica
    finally:
        replica.stop()
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", extra_role, check=False)
        baseguard.start()
        installation.wait_until_served(baseguard)


def refused_by_vap(plane: ControlPlane, obj: dict[str, Any]) -> str | None:
    done = plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    return (
        done.stderr if done.returncode != 0 and "ValidatingAdmissionPolicy" in done.stderr else None
    )


def test_the_backstop_follows_the_policy_and_judges_while_baseguard_is_down(
    control_plane: ControlPlane,
    installation: Installation,
    backstop: Baseguard,
    ns: str,
    registry: RegistryProcess,
) -> None:
    name = short_name(ns, "bs")
    vap_name = f"baseguard.cluster.{name}"
    foreign = {
        "apiVersion": f"{API}/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": f"baseguard.cluster.{name}-gitops",
            "labels": {"app.kubernetes.io/managed-by": "baseguard"},
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ]
            },
            "validations": [{"expression": "true"}],
        },
    }
    control_plane.apply([foreign])  # like `baseguard export vap` output applied by GitOps
    control_plane.apply([backstop_policy(name, ns)])
    created = wait_for(
        "the generated ValidatingAdmissionPolicy",
        lambda: held(control_plane, "validatingadmissionpolicies", vap_name),
        timeout=30,
    )
    binding = wait_for(
        "its binding",
        lambda: held(control_plane, "validatingadmissionpolicybindings", vap_name),
        timeout=30,
    )
    owner = created["metadata"]["labels"]["baseguard.io/backstop"]
    assert owner == installation.release  # the release's fullname: this installation's
    assert binding["spec"] == {"policyName": vap_name, "validationActions": ["Deny"]}
    uid = control_plane.get_json("clusterbaseimagepolicy", name)["metadata"]["uid"]
    assert created["metadata"]["ownerReferences"][0]["uid"] == uid

    backstop.stop()  # the webhook fails open now; only the apiserver judges
    latest = pod("latest", f"{registry.host}/cluster/app:latest", namespace=ns)
    message = wait_for(
        "the apiserver to refuse a latest pod by itself",
        lambda: refused_by_vap(control_plane, latest),
        timeout=30,
        interval=0.5,
    )
    assert vap_name in message and "disallowed-tag" in message, message
    pinned = pod("pinned", f"{registry.host}/cluster/app:1.2.3", namespace=ns)
    admitted = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pinned), check=False
    )
    assert admitted.returncode == 0, admitted.stderr

    backstop.start()
    installation.wait_until_served(backstop)
    control_plane.kubectl("delete", "clusterbaseimagepolicy", name)
    wait_for(
        "the generated objects to go",
        lambda: (
            held(control_plane, "validatingadmissionpolicies", vap_name) is None
            and held(control_plane, "validatingadmissionpolicybindings", vap_name) is None
        ),
        timeout=30,
    )
    time.sleep(2)  # a few more checks of the backstop
    assert held(control_plane, "validatingadmissionpolicies", foreign["metadata"]["name"])
    control_plane.kubectl(
        "delete", f"validatingadmissionpolicies.{API}", foreign["metadata"]["name"], check=False
    )
