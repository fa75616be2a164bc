"""The webhook, over real HTTPS, denies an image whose base has a fixable CRITICAL, and says
where the fix is; in Warn mode the warning keeps the fix whole. Real registry, pushed scans."""

from __future__ import annotations

import json
import uuid

import pytest
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
from support.webhook import StartWebhook, fixture, set_images

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.registry.client import RegistryClient


def _policy(mode: str) -> dict[str, object]:
    return {
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "patched-bases", "uid": "u-evidence", "generation": 1},
        "spec": {"mode": mode, "evidence": {"maxScanAge": "7d", "denyFixable": ["CRITICAL"], "scope": "Base"}},
    }  # fmt: skip


@pytest.mark.parametrize("mode", ["Enforce", "Warn"])
async def test_a_base_with_a_fixable_critical_is_denied_with_the_rebuild_that_fixes_it(
    start_webhook: StartWebhook, registry: RegistryProcess,
    registry_client: RegistryClient, mode: str,
) -> None:  # fmt: skip
    unique_repo = f"ev{uuid.uuid4().hex[:6]}"  # short: the warning must hold the fix whole
    _, app = push_app(registry, unique_repo)
    report = trivy_report(app.reference, findings(app), created="2099-01-01T00:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2099-01-01T00:00:00Z")]
    )
    rebuilt = registry.pusher.push_image(
        f"{unique_repo}/python", "3.12-slim", [BASE_L1, NEW_BASE_L2]
    )
    push_artifact(
        registry.pusher,
        rebuilt,
        [
            (
                TRIVY,
                json.dumps(
                    trivy_report(rebuilt.reference, [], created="2099-01-01T00:00:00Z")
                ).encode(),
                {},
            )
        ],
    )
    hook = await start_webhook(
        assessor=Assessor(LineageResolver(registry_client)), docs=[_policy(mode)]
    )
    response = await hook.response(
        set_images(
            fixture("deployment-create.json"), {"app": app.reference, "proxy": app.reference}
        )
    )
    base = f"{registry.host}/{unique_repo}/python:3.12-slim"
    if mode == "Enforce":
        assert response["allowed"] is False and response["status"]["code"] == 403
        said = response["status"]["message"]
        assert "fixable-vulnerabilities" in said and "patched-bases" in said, said
        assert "1 fixable CRITICAL vulnerability in its base's layers" in said, said
        assert "(CVE-2024-5535 libssl3 3.0.11-1~deb12u2, fixed in 3.0.15-1~deb12u1)" in said, said
        assert f"rebuild on the current {base}" in said, said
    else:
        assert response["allowed"] is True
        warnings = response["warnings"]
        assert warnings and all(len(w.encode()) <= 120 for w in warnings), warnings
        assert any(
            w.startswith("fixable-vulnerabilities") and w.endswith(f"rebuild on the current {base}")
            for w in warnings
        ), warnings


async def test_a_newer_unsigned_clean_scan_is_not_evidence_when_authorities_are_named(
    start_webhook: StartWebhook, registry: RegistryProcess, registry_client: RegistryClient
) -> None:
    """``evidence.authorities``: the signed scan with the CRITICAL is judged, not the newer
    clean one nobody signed (the key is made here; the envelope per the DSSE spec)."""
    from support import signing

    key = signing.new_key()
    _, app = push_app(registry, f"ev{uuid.uuid4().hex[:6]}")
    dirty = trivy_report(app.reference, findings(app), created="2099-01-01T00:00:00Z")
    clean = trivy_report(app.reference, [], created="2099-01-02T00:00:00Z")
    cosign_attest(
        registry.pusher,
        app,
        [
            vuln_statement(app, dirty, finished="2099-01-01T00:00:00Z"),
            vuln_statement(app, clean, finished="2099-01-02T00:00:00Z"),
        ],
        keys=[key, None],
    )
    policy = _policy("Enforce")
    spec: dict[str, object] = policy["spec"]  # type: ignore[assignment]
    spec["trust"] = {
        "images": ["registry.invalid/nothing"],
        "authorities": [{"name": "scanner", "keys": [{"publicKey": signing.public_pem(key)}]}],
    }
    spec["evidence"] = {"denyFixable": ["CRITICAL"], "authorities": ["scanner"]}
    hook = await start_webhook(assessor=Assessor(LineageResolver(registry_client)), docs=[policy])
    response = await hook.response(
        set_images(
            fixture("deployment-create.json"), {"app": app.reference, "proxy": app.reference}
        )
    )
    assert response["allowed"] is False and response["status"]["code"] == 403, response
    said = response["status"]["message"]
    assert "fixable-vulnerabilities" in said and "CVE-2024-5535 libssl3" in said, said
