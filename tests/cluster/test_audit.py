"""Items 7 and 9: the background audit and the CLI against the apiserver; auditAnnotations in its audit log.

A Deployment created before any policy can only be found by the background audit:
it must appear in the namespace's PolicyReport (the real wgpolicyk8s.io CRD checks
what baseguard writes), as a PolicyViolation Event and in the policy's
``status.audit``; ``baseguard audit`` (and ``--uses``) finds it from outside with a
kubeconfig holding the chart's ServiceAccount token.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from cluster.cluster_support import Baseguard, Installation, apply_ready, pod, policy
from support.controlplane import ControlPlane, wait_for
from support.images import Pushed, layer
from support.registry import RegistryProcess

from controller.registry import media
from controller.webhook.messages import audit_key


@pytest.fixture(scope="module")
def legacy(registry: RegistryProcess) -> tuple[Pushed, Pushed]:
    """A base and an app built on it (annotated), the app under the moving tag ``latest``."""
    os_layer = layer({"etc/os-release": "ID=audit-base"})
    base = registry.pusher.push_image(
        "cluster/audit-base", "1.0.0", [os_layer], annotations={media.BASE_NAME: "scratch"}
    )
    app = registry.pusher.push_image(
        "cluster/audit-app", "latest", [os_layer, layer({"app": "legacy"})],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )  # fmt: skip
    return base, app


def deployment(name: str, namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def cli(installation: Installation, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "audit", f"--kubeconfig={installation.kubeconfig}",
         f"--registry-config={installation.registry_config}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_workloads_created_before_the_policy_are_reported(
    control_plane: ControlPlane,
    installation: Installation,
    baseguard: Baseguard,
    ns: str,
    legacy: tuple[Pushed, Pushed],
) -> None:
    base, app = legacy
    control_plane.apply([deployment("legacy", ns, app.tagged)])  # no policy yet: admitted
    apply_ready(
        control_plane,
        policy(
            "no-latest",
            {"mode": "Enforce", "pinning": {"disallowedTags": ["latest"]}},
            namespace=ns,
        ),
    )

    def failing() -> list[dict[str, Any]] | None:
        found = control_plane.kubectl(
            "get", "policyreport", "baseguard-audit", "-n", ns, "-o", "json", check=False
        )
        if found.returncode != 0:
            return None
        results = [
            r for r in json.loads(found.stdout).get("results", []) if r.get("result") == "fail"
        ]
        return (
            results
            if any(res.get("name") == "legacy" for r in results for res in r.get("resources", []))
            else None
        )

    results = wait_for("a fail result for legacy in the PolicyReport", failing, timeout=60)
    assert any(
        r.get("policy") == f"{ns}/no-latest" or r.get("policy") == "no-latest" for r in results
    ), results
    assert any(r.get("rule") == "disallowed-tag" for r in results), results

    def event() -> list[dict[str, Any]] | None:
        items = control_plane.get_json(
            "events",
            "-n",
            ns,
            "--field-selector",
            "reason=PolicyViolation,involvedObject.name=legacy",
        )["items"]
        return items or None

    [first, *_] = wait_for("a PolicyViolation Event on the Deployment", event, timeout=60)
    assert first["involvedObject"]["kind"] == "Deployment" and first["type"] == "Warning"
    assert "disallowed-tag" in first["message"]

    def audited() -> bool:
        status = control_plane.get_json("baseimagepolicy", "no-latest", "-n", ns).get("status", {})
        return int((status.get("audit") or {}).get("violations", 0)) >= 1

    wait_for("status.audit.violations", audited, timeout=60)

    audit = cli(installation, "--namespace", ns)
    assert audit.returncode == 1, audit.stderr
    assert "legacy" in audit.stdout and "disallowed-tag" in audit.stdout, audit.stdout

    uses = cli(
        installation,
        "--namespace",
        ns,
        "--uses",
        f"{base.host}/cluster/audit-base:*",
        "--format",
        "json",
    )
    assert uses.returncode in (0, 1), uses.stderr
    assert '"legacy"' in uses.stdout, uses.stdout
    nobody = cli(
        installation,
        "--namespace",
        ns,
        "--uses",
        "docker.io/library/python:3.8*",
        "--format",
        "json",
    )
    assert '"legacy"' not in nobody.stdout, nobody.stdout


def test_audit_mode_annotations_reach_the_apiservers_audit_log(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(
        control_plane,
        policy(
            "hub-only",
            {
                "mode": "Audit",
                "registries": {"allowed": ["docker.io/*"]},
                "pinning": {"disallowedTags": []},
            },
            namespace=ns,
        ),
    )
    image = f"{registry.host}/cluster/app:1.2.3"
    result = control_plane.apply([pod("audited", image, namespace=ns)])
    assert "Warning" not in result.stderr  # Audit mode: nothing shown to the user
    key = f"workloads.validate.baseguard.io/{audit_key(f'{ns}/hub-only')}"

    def annotations() -> dict[str, str] | None:
        for event in control_plane.audit_events():
            ref = event.get("objectRef") or {}
            if (ref.get("namespace"), ref.get("name"), ref.get("resource"), event.get("verb")) == (
                ns,
                "audited",
                "pods",
                "create",
            ):
                found = event.get("annotations") or {}
                if key in found:
                    return dict(found)
        return None

    found = wait_for(f"{key} in the apiserver's audit log", annotations, timeout=15)
    assert "registry-not-allowed" in found[key] and image in found[key], found[key]
