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


def audits_published(process: Baseguard) -> int:
    return sum(1 for r in process.logs() if r.get("msg") == "audit published")


def test_a_large_namespace_is_split_and_an_unchanged_audit_writes_nothing(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    """110 pods x 5 policies: 550 results, over the 500 one report holds; the real CRD takes
    every part; then audits that find the same write nothing to the apiserver at all."""
    image = f"{registry.host}/cluster/app:1.2.3"
    control_plane.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p-{i:03d}", "namespace": ns},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
            for i in range(110)
        ]
    )
    apply_ready(
        control_plane,
        *(
            policy(
                f"tags-{i}",
                {"mode": "Audit", "pinning": {"disallowedTags": [f"t{i}"]}},
                namespace=ns,
            )
            for i in range(5)
        ),
    )

    def parts() -> list[dict[str, Any]] | None:
        items = control_plane.get_json("policyreports", "-n", ns)["items"]
        results = sum(len(r.get("results") or []) for r in items)
        return items if results == 550 else None

    items = wait_for("550 results in the namespace's reports", parts, timeout=90)
    names = sorted(r["metadata"]["name"] for r in items)
    assert names == ["baseguard-audit", "baseguard-audit-2"], names
    for report in items:
        assert len(report["results"]) <= 500
        assert len(json.dumps(report)) <= 256 * 1024
        assert report["summary"]["pass"] == len(report["results"])
    by_pod: dict[str, set[str]] = {}
    for report in items:
        for r in report["results"]:
            by_pod.setdefault(r["resources"][0]["name"], set()).add(report["metadata"]["name"])
    assert len(by_pod) == 110 and all(len(where) == 1 for where in by_pod.values())

    # The leader has seen its own writes once an audit after them is published.
    settled = audits_published(baseguard)
    wait_for("an audit after that", lambda: audits_published(baseguard) > settled, timeout=30)
    mark = control_plane.audit_mark()
    seen = audits_published(baseguard)
    wait_for("two more audits", lambda: audits_published(baseguard) >= seen + 2, timeout=60)
    writes = [
        (
            e.get("verb"),
            (e.get("objectRef") or {}).get("resource"),
            (e.get("objectRef") or {}).get("name"),
        )
        for i, e in enumerate(control_plane.audit_events())
        if i >= mark
        and (e.get("objectRef") or {}).get("namespace") == ns
        and e.get("verb") in {"create", "update", "patch", "delete"}
    ]
    assert writes == [], writes
