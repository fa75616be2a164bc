"""Scan evidence through the apiserver: ``kubectl`` prints the denial of a Pod whose base
carries a fixable CRITICAL, with the rebuild that fixes it. Real registry, pushed scans."""

from __future__ import annotations

import json

from cluster.cluster_support import Baseguard, apply_ready, denial, policy
from support.controlplane import ControlPlane
from support.registry import RegistryProcess
from support.scans import (
    BASE_L1,
    NEW_BASE_L2,
    TRIVY,
    cosign_attest,
    findings,
    push_app,
    push_artifact,
    trivy_report,
    vuln_statement,
)

DENIED_BY = 'admission webhook "workloads.validate.baseguard.io" denied the request'


def test_kubectl_prints_the_denial_of_a_base_with_a_fixable_critical(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    repo = f"cluster/ev-{ns[-6:]}"
    _, app = push_app(registry, repo)
    report = trivy_report(app.reference, findings(app), created="2099-01-01T00:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2099-01-01T00:00:00Z")]
    )
    rebuilt = registry.pusher.push_image(f"{repo}/python", "3.12-slim", [BASE_L1, NEW_BASE_L2])
    clean = json.dumps(trivy_report(rebuilt.reference, [], created="2099-01-01T00:00:00Z")).encode()
    push_artifact(registry.pusher, rebuilt, [(TRIVY, clean, {})])
    spec = {"mode": "Enforce", "evidence": {"denyFixable": ["CRITICAL"], "scope": "Base"}}
    apply_ready(control_plane, policy("patched-bases", spec, namespace=ns))
    result = control_plane.kubectl("run", "web", f"--image={app.reference}", "-n", ns, check=False)
    printed = denial(result)
    assert f"Error from server (Forbidden): {DENIED_BY}" in printed, printed
    for part in (
        f"{ns}/patched-bases", "fixable-vulnerabilities",
        "1 fixable CRITICAL vulnerability in its base's layers",
        "CVE-2024-5535 libssl3 3.0.11-1~deb12u2, fixed in 3.0.15-1~deb12u1",
        f"rebuild on the current {registry.host}/{repo}/python:3.12-slim",
    ):  # fmt: skip
        assert part in printed, printed
