"""Scan evidence under the review's budget and when the registry fails: ``lookup-failed``, never an allow.

Real registry, real assessor: the same path the webhook and ``check`` take.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from support.faulty_proxy import FaultyProxy
from support.registry import RegistryProcess
from support.scans import cosign_attest, findings, push_app, trivy_report, vuln_statement

from controller.assess import Assessor
from controller.lineage.budget import Bounds
from controller.lineage.resolve import LineageResolver
from controller.policy.compile import compile_policy
from controller.policy.model import Action, RuleCode
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.workloads import extract

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def policy(lookup: str = "Deny") -> Any:
    return compile_policy({
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "patched"},
        "spec": {"mode": "Enforce", "evidence": {"denyFixable": ["CRITICAL"]},
                 "lineage": {"onLookupFailure": lookup, "onUnknownBase": "Allow", "staleBase": "Allow"}},
    })  # fmt: skip


def pod(image: str) -> Any:
    return extract({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": image}]},
    })  # fmt: skip


def scanned(registry: RegistryProcess, repo: str) -> str:
    _, app = push_app(registry, repo)
    report = trivy_report(app.reference, findings(app), created="2026-12-06T10:00:00Z")
    cosign_attest(
        registry.pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")]
    )
    return app.reference


async def test_every_request_bound_short_of_the_evidence_is_lookup_failed_never_allowed(
    registry: RegistryProcess, unique_repo: str
) -> None:
    image = scanned(registry, unique_repo)
    judged: dict[int, list[tuple[RuleCode, Action, str]]] = {}
    for limit in range(1, 16):
        async with RegistryClient(
            RegistryConfig.of(RegistryHost(registry.host, insecure=True))
        ) as client:
            assessor = Assessor(LineageResolver(client), bounds=Bounds(max_requests=limit))
            (result,) = await assessor.assess(pod(image), (policy(),), now=NOW)
        judged[limit] = [(v.rule, v.action, v.message) for v in result.results[0].violations]
    full = min(
        n
        for n, found in judged.items()
        if RuleCode.FIXABLE_VULNERABILITIES in {r for r, _, _ in found}
    )
    assert full > 3, judged  # the lineage and the scans both cost requests
    for limit in range(1, full):
        found = judged[limit]
        assert found, f"max_requests={limit}: nothing found, an allow by omission"
        assert all(
            rule is RuleCode.LOOKUP_FAILED and action is Action.DENY for rule, action, _ in found
        ), found
        assert any("max_requests_per_review" in m for _, _, m in found), found
    assert {r for r, _, _ in judged[full]} == {RuleCode.FIXABLE_VULNERABILITIES}


async def test_a_byte_bound_reached_by_the_scans_is_lookup_failed(
    registry: RegistryProcess, unique_repo: str
) -> None:
    """Bytes fetched and parsed count too: the documents' parse is charged to the review."""
    image = scanned(registry, unique_repo)
    seen: dict[int, set[RuleCode]] = {}
    for limit in (2_000, 6_000, 10_000, 14_000, 10**8):
        async with RegistryClient(
            RegistryConfig.of(RegistryHost(registry.host, insecure=True))
        ) as client:
            assessor = Assessor(LineageResolver(client), bounds=Bounds(max_bytes=limit))
            (result,) = await assessor.assess(pod(image), (policy(),), now=NOW)
        found = result.results[0].violations
        assert found, f"max_bytes={limit}: an allow by omission"
        seen[limit] = {v.rule for v in found}
        if v_failed := [v for v in found if v.rule is RuleCode.LOOKUP_FAILED]:
            assert all(v.action is Action.DENY for v in v_failed)
            assert any("max_bytes_per_review" in v.message for v in v_failed), v_failed
    assert seen[10**8] == {RuleCode.FIXABLE_VULNERABILITIES}
    assert RuleCode.LOOKUP_FAILED in seen[2_000]


async def test_a_registry_failing_on_the_scans_is_lookup_failed_under_on_lookup_failure(
    registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    image = scanned(registry, unique_repo).replace(registry.host, proxy.host)
    proxy.fault(
        "status", r"\.att$", status=500, body=b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'
    )
    config = RegistryConfig.of(
        RegistryHost(proxy.host, insecure=True), RegistryHost(registry.host, insecure=True)
    )
    for lookup, action in (("Deny", Action.DENY), ("Warn", Action.WARN)):
        async with RegistryClient(config) as client:
            (result,) = await Assessor(LineageResolver(client)).assess(
                pod(image), (policy(lookup),), now=NOW
            )
        (violation,) = result.results[0].violations
        assert violation.rule is RuleCode.LOOKUP_FAILED and violation.action is action
        assert "scans of" in violation.message and "could not be read" in violation.message
        assert f"lineage.onLookupFailure: {lookup}" in violation.message


async def test_a_policy_without_evidence_costs_no_scan_request(
    registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    """Lazy: only a policy with ``evidence`` makes the scans looked up."""
    image = scanned(registry, unique_repo).replace(registry.host, proxy.host)
    config = RegistryConfig.of(
        RegistryHost(proxy.host, insecure=True), RegistryHost(registry.host, insecure=True)
    )
    plain = compile_policy({
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "lineage"}, "spec": {"lineage": {"onUnknownBase": "Allow"}},
    })  # fmt: skip
    async with RegistryClient(config) as client:
        await Assessor(LineageResolver(client)).assess(pod(image), (plain,), now=NOW)
    assert proxy.count(r"\.att$") == 0
    async with RegistryClient(config) as client:
        await Assessor(LineageResolver(client)).assess(pod(image), (policy(),), now=NOW)
    assert proxy.count(r"\.att$") == 1
