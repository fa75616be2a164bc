"""PolicyReports of the audit, without I/O.

One report per namespace, one cluster-wide report for cluster-scoped objects
(none of today's kinds are), each result naming policy, rule, result,
message and resource; written as OpenReports (``openreports.io/v1alpha1``
``Report``/``ClusterReport``) and/or ``wgpolicyk8s.io/v1alpha2``
(``PolicyReport``/``ClusterPolicyReport``), whichever the cluster serves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.operator.audit.plan import (
    MANAGED_BY,
    SOURCE,
    Finding,
    ObjectRef,
    Pair,
    breaks,
    findings,
)
from controller.policy.model import Action, RuleCode

REPORT_NAME = "baseguard-audit"
MAX_REPORT_RESULTS = 1000


@dataclass(frozen=True)
class ReportApi:
    """One PolicyReport API: where its namespaced and cluster-wide kinds live.

    Kyverno 1.15+ and Policy Reporter read OpenReports (``openreports.io``),
    the successor of ``wgpolicyk8s.io``; older readers know only the latter.
    The audit writes to whichever of the two is installed, both if both,
    with the same content: only ``apiVersion`` and ``kind`` differ.
    """

    group: str
    version: str
    kind: str
    plural: str
    cluster_kind: str
    cluster_plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def every_namespace(self) -> str:
        """The namespaced kind's collection across all namespaces (to find stale reports)."""
        return f"/apis/{self.group}/{self.version}/{self.plural}"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}"
        path = (
            f"{base}/namespaces/{namespace}/{self.plural}"
            if namespace
            else f"{base}/{self.cluster_plural}"
        )
        return f"{path}/{name}" if name else path


WGPOLICY = ReportApi(
    "wgpolicyk8s.io",
    "v1alpha2",
    "PolicyReport",
    "policyreports",
    "ClusterPolicyReport",
    "clusterpolicyreports",
)
OPENREPORTS = ReportApi(
    "openreports.io", "v1alpha1", "Report", "reports", "ClusterReport", "clusterreports"
)
#: Every API the audit can write, in the order it writes them.
REPORT_APIS = (OPENREPORTS, WGPOLICY)

_RESULT = {Action.DENY: "fail", Action.AUDIT: "fail", Action.WARN: "warn"}
_SEVERITY = {Action.DENY: "high", Action.AUDIT: "medium", Action.WARN: "low"}
_ORDER = {"error": 0, "fail": 1, "warn": 2, "skip": 3, "pass": 4}


def _timestamp(now: dt.datetime) -> dict[str, int]:
    return {"seconds": int(now.timestamp()), "nanos": 0}


def report_results(
    pairs: Sequence[Pair], *, now: dt.datetime
) -> dict[str | None, list[dict[str, Any]]]:
    """Report results by namespace (``None``: cluster-scoped objects).

    One result per (object, policy, rule) that found something — ``fail``
    (Enforce and Audit mode), ``warn``, ``error`` (``lookup-failed``: the
    check could not be made), ``skip`` (waived by an exception) — and one
    ``pass`` per (object, policy) that applied and found nothing.
    """
    stamp = _timestamp(now)
    out: dict[str | None, list[dict[str, Any]]] = {}
    for audited, result in pairs:
        grouped: dict[tuple[str, RuleCode], list[Finding]] = {}
        applied: dict[str, None] = {}
        for image in result.results:
            applied.update(dict.fromkeys(image.policies))
        for f in findings([(audited, result)]):
            grouped.setdefault((f.violation.policy, f.violation.rule), []).append(f)
        entries = out.setdefault(audited.ref.namespace, [])
        for (policy, rule), found in grouped.items():
            entries.append(_result(audited.ref, policy, rule, found, stamp))
        flagged = {policy for policy, _ in grouped}
        for policy in applied:
            if policy not in flagged:
                entries.append(
                    {
                        "policy": policy,
                        "rule": "all-rules",
                        "result": "pass",
                        "message": "every rule of the policy passes",
                        "resources": [audited.ref.as_dict()],
                        "scored": True,
                        "source": SOURCE,
                        "category": "Base images",
                        "timestamp": stamp,
                    }
                )
    return out


def _result(
    ref: ObjectRef, policy: str, rule: RuleCode, found: list[Finding], stamp: dict[str, int]
) -> dict[str, Any]:
    breaking = [f for f in found if breaks(f)]
    if not breaking:
        result, severity = "skip", None
    elif rule is RuleCode.LOOKUP_FAILED:
        result, severity = "error", None
    else:
        worst = max(breaking, key=lambda f: f.violation.action.severity)
        result, severity = _RESULT[worst.violation.action], _SEVERITY[worst.violation.action]
    shown = breaking or found
    messages = list(
        dict.fromkeys(f"{f.image.container or f.image.image}: {f.violation.message}" for f in shown)
    )
    message = "; ".join(messages)
    entry: dict[str, Any] = {
        "policy": policy,
        "rule": rule.value,
        "result": result,
        "message": message if len(message) <= 2000 else message[:1997] + "...",
        "resources": [ref.as_dict()],
        "scored": True,
        "source": SOURCE,
        "category": "Base images",
        "timestamp": stamp,
        "properties": {
            "containers": ",".join(dict.fromkeys(f.image.container or "" for f in shown)),
            "images": ",".join(dict.fromkeys(f.image.image for f in shown)),
            "action": max((f.violation.action for f in shown), key=lambda a: a.severity).value,
        },
    }
    if severity:
        entry["severity"] = severity
    if not breaking and found[0].violation.waived:
        entry["properties"]["waived"] = found[0].violation.waived
        if found[0].violation.waived_by:  # which exception: a team's object, or the policy's entry
            entry["properties"]["exception"] = found[0].violation.waived_by
    return entry


def report_body(
    namespace: str | None, results: Sequence[Mapping[str, Any]], *, api: ReportApi = WGPOLICY
) -> dict[str, Any]:
    """A ``PolicyReport`` (or, for ``namespace=None``, a ``ClusterPolicyReport``) with a summary;
    ``api`` picks the API (``Report``/``ClusterReport`` for OpenReports), nothing else changes.

    Kept under :data:`MAX_REPORT_RESULTS` entries (an object must stay well
    under etcd's size limit): problems first, passes dropped first.
    """
    ordered = sorted(results, key=lambda r: _ORDER.get(str(r.get("result")), 9))[
        :MAX_REPORT_RESULTS
    ]
    summary = {k: 0 for k in ("pass", "fail", "warn", "error", "skip")}
    for r in results:
        summary[str(r["result"])] += 1
    meta: dict[str, Any] = {"name": REPORT_NAME, "labels": dict(MANAGED_BY)}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": api.api_version,
        "kind": api.kind if namespace is not None else api.cluster_kind,
        "metadata": meta,
        "summary": summary,
        "results": list(ordered),
    }


def report_path(
    namespace: str | None, name: str | None = None, *, api: ReportApi = WGPOLICY
) -> str:
    return api.path(namespace, name)
