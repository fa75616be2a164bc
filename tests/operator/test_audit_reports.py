"""The audit's report writes against the API double: split parts, nothing written when nothing
changed, exact clean-up (never a report baseguard did not write)."""

from __future__ import annotations

import datetime as dt

from support.kube_api import ApiDouble
from support.kube_objects import NO_LATEST, cluster_policy, pod

from controller.assess import Assessor
from controller.operator.audit.runner import Assessors, Auditor, Throttle
from controller.operator.kube import Kube
from controller.operator.policies import PolicyBook
from controller.policy.compile import compile_policy
from controller.policy.store import PolicyStore

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
API = "wgpolicyk8s.io/v1alpha2"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def report(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": API,
        "kind": "PolicyReport",
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "results": [],
    }


def report_writes(double: ApiDouble, since: int) -> list[tuple[str, str]]:
    return [
        (r.method, r.path)
        for r in double.recorded()[since:]
        if r.method in WRITES and "policyreports" in r.path
    ]


async def test_parts_are_written_once_and_tidied_exactly(double: ApiDouble, kube: Kube) -> None:
    ours = {"app.kubernetes.io/managed-by": "baseguard"}
    double.apply(report("baseguard-audit-x", ours))  # our label, not a part name
    double.apply(report("team-report", {}))
    for i in range(600):
        double.apply(pod(f"p-{i:03d}", "team-a", "nginx:1.27.0"))
    policies = [compile_policy(cluster_policy("no-latest", NO_LATEST))]
    auditor = Auditor(
        kube=kube,
        assessors=Assessors(lambda _: Assessor(None), None),
        clock=lambda: NOW,
        writes=Throttle(0),
    )
    book = PolicyBook(PolicyStore())

    await auditor.publish(await auditor.run(policies), book)
    parts = sorted(r["metadata"]["name"] for r in double.objects(API, "PolicyReport", "team-a"))
    assert parts == ["baseguard-audit", "baseguard-audit-2", "baseguard-audit-x", "team-report"]
    first = double.get(API, "PolicyReport", "baseguard-audit", "team-a")
    second = double.get(API, "PolicyReport", "baseguard-audit-2", "team-a")
    assert first is not None and second is not None
    assert len(first["results"]) + len(second["results"]) == 600
    assert auditor.last_writes.written == 2

    mark = len(double.recorded())
    await auditor.publish(await auditor.run(policies), book)  # nothing changed
    assert report_writes(double, mark) == []
    assert (auditor.last_writes.written, auditor.last_writes.unchanged) == (0, 2)

    for i in range(100, 600):
        double.delete("v1", "Pod", f"p-{i:03d}", "team-a")
    mark = len(double.recorded())
    await auditor.publish(await auditor.run(policies), book)
    assert sorted(report_writes(double, mark)) == [
        (
            "DELETE",
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports/baseguard-audit-2",
        ),
        ("PUT", "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports/baseguard-audit"),
    ]
    left = sorted(r["metadata"]["name"] for r in double.objects(API, "PolicyReport", "team-a"))
    assert left == ["baseguard-audit", "baseguard-audit-x", "team-report"]
