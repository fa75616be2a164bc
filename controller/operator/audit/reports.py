"""PolicyReports of the audit, without I/O.

One report per namespace, one cluster-wide report for cluster-scoped objects
(none of today's kinds are), each result naming policy, rule, result,
message and resource; written as OpenReports (``openreports.io/v1alpha1``
``Report``/``ClusterReport``) and/or ``wgpolicyk8s.io/v1alpha2``
(``PolicyReport``/``ClusterPolicyReport``), whichever the cluster serves.

Bounded, because report volume is what takes an apiserver down at scale
(one object per resource, as some engines write, is hundreds of thousands
of objects in a big cluster; one unbounded object per namespace runs into
etcd's 1.5 MiB limit). A namespace's results are split into parts
(``baseguard-audit``, ``baseguard-audit-2``, ...) of at most
:data:`MAX_REPORT_RESULTS` results and :data:`MAX_REPORT_BYTES` bytes each,
one object's results never split between parts; past :data:`MAX_REPORT_PARTS`
parts, passes are dropped first, then the rest (the summary of the first part
names how many, in :data:`DROPPED_ANNOTATION`).

Each part carries :data:`DIGEST_ANNOTATION`, a hash of what it says without
its timestamps, so the writer can tell an unchanged report from a changed
one by a listing, and write only what changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
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
#: Results in one report object at most (Policy Reporter and kubectl stay quick on it).
MAX_REPORT_RESULTS = 500
#: Bytes of one report object's JSON at most: well under etcd's 1.5 MiB object limit,
#: and a watch event of every report reader stays small.
MAX_REPORT_BYTES = 256 * 1024
#: Parts of one namespace's report at most (``MAX_REPORT_PARTS * MAX_REPORT_BYTES`` per namespace).
MAX_REPORT_PARTS = 20
#: A hash of a part's content without timestamps (the writer skips an unchanged part).
DIGEST_ANNOTATION = "baseguard.io/report-digest"
#: Results left out of a namespace's report past :data:`MAX_REPORT_PARTS` (on its first part).
DROPPED_ANNOTATION = "baseguard.io/results-dropped"


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


def part_name(index: int) -> str:
    """``baseguard-audit`` for the first part, ``baseguard-audit-2`` ... for the others."""
    return REPORT_NAME if index == 0 else f"{REPORT_NAME}-{index + 1}"


def is_part_name(name: object) -> bool:
    """True for the names :func:`part_name` gives (and no other: a user's report is left alone)."""
    if name == REPORT_NAME:
        return True
    if not isinstance(name, str) or not name.startswith(REPORT_NAME + "-"):
        return False
    tail = name[len(REPORT_NAME) + 1 :]
    return tail.isdigit() and not tail.startswith("0") and int(tail) >= 2


def _object_key(result: Mapping[str, Any]) -> tuple[str, ...]:
    res = (result.get("resources") or [{}])[0]
    return (
        str(res.get("namespace", "")),
        str(res.get("kind", "")),
        str(res.get("name", "")),
        str(res.get("uid", "")),
    )


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True, default=str))


def content_digest(body: Mapping[str, Any]) -> str:
    """A hash of a report's kind, summary and results, without the results' timestamps."""
    results = [{k: v for k, v in r.items() if k != "timestamp"} for r in body.get("results") or []]
    text = json.dumps(
        [body.get("apiVersion"), body.get("kind"), body.get("summary"), results,
         (body.get("metadata") or {}).get("annotations", {}).get(DROPPED_ANNOTATION)],
        separators=(",", ":"), sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _groups(results: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Results by object, objects in a stable order, each object's problems first."""
    by_object: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in results:
        by_object.setdefault(_object_key(r), []).append(r)
    return [
        sorted(
            by_object[k],
            key=lambda r: (
                _ORDER.get(str(r.get("result")), 9),
                str(r.get("policy")),
                str(r.get("rule")),
            ),
        )
        for k in sorted(by_object)
    ]


def _pack(
    groups: Sequence[Sequence[Mapping[str, Any]]], overhead: int
) -> list[list[Mapping[str, Any]]]:
    """Objects' results into parts within the bounds, in order, an object's results kept together.

    An object whose results alone pass a bound (thousands of containers) is cut
    at the bound, problems first.
    """
    parts: list[list[Mapping[str, Any]]] = []
    current: list[Mapping[str, Any]] = []
    size = overhead
    for group in groups:
        sizes = [_size(r) + 1 for r in group]
        total = sum(sizes)
        if current and (
            len(current) + len(group) > MAX_REPORT_RESULTS or size + total > MAX_REPORT_BYTES
        ):
            parts.append(current)
            current, size = [], overhead
        for r, n in zip(group, sizes, strict=True):
            if len(current) >= MAX_REPORT_RESULTS or size + n > MAX_REPORT_BYTES:
                break
            current.append(r)
            size += n
    if current:
        parts.append(current)
    return parts


def report_bodies(
    namespace: str | None, results: Sequence[Mapping[str, Any]], *, api: ReportApi = WGPOLICY
) -> list[dict[str, Any]]:
    """The report objects of one namespace (``None``: the cluster-wide one), split within the bounds.

    Each part is a complete ``PolicyReport`` (``Report`` for OpenReports) whose
    summary counts its own results, so readers that add reports up (Policy
    Reporter, ``kubectl get policyreport``) get the namespace's totals.
    Past :data:`MAX_REPORT_PARTS`, passes are dropped first, then whole
    objects from the end; the first part says how many results are missing.
    """
    overhead = _size(_body(namespace, [], api=api, index=0)) + 200
    groups = _groups(results)
    parts = _pack(groups, overhead)
    if len(parts) > MAX_REPORT_PARTS:
        problems = [[r for r in g if r.get("result") != "pass"] for g in groups]
        kept = [g for g in problems if g]
        parts = _pack(kept, overhead)[:MAX_REPORT_PARTS]
    shown = sum(len(p) for p in parts)
    dropped = len(results) - shown
    bodies = [_body(namespace, part, api=api, index=i) for i, part in enumerate(parts)]
    if dropped and bodies:
        bodies[0]["metadata"].setdefault("annotations", {})[DROPPED_ANNOTATION] = str(dropped)
    for body in bodies:
        body["metadata"].setdefault("annotations", {})[DIGEST_ANNOTATION] = content_digest(body)
    return bodies


def _body(
    namespace: str | None, results: Sequence[Mapping[str, Any]], *, api: ReportApi, index: int
) -> dict[str, Any]:
    summary = {k: 0 for k in ("pass", "fail", "warn", "error", "skip")}
    for r in results:
        summary[str(r["result"])] += 1
    meta: dict[str, Any] = {"name": part_name(index), "labels": dict(MANAGED_BY)}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": api.api_version,
        "kind": api.kind if namespace is not None else api.cluster_kind,
        "metadata": meta,
        "summary": summary,
        "results": list(results),
    }


def report_path(
    namespace: str | None, name: str | None = None, *, api: ReportApi = WGPOLICY
) -> str:
    return api.path(namespace, name)
