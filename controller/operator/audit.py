"""The background audit, without I/O: what to audit, and what to say about it.

:mod:`controller.operator.auditor` lists the objects and writes the results;
everything it decides is here, so it is tested without a cluster:

* **what**: every pod controller, and every Pod not owned by one. An object
  controlled by another audited object (a ReplicaSet of a Deployment, a Job
  of a CronJob, a Pod of either) is left out: its owner carries the same
  template, and judging both would count one problem several times. An
  object controlled by something baseguard does not audit (an Argo Rollout's
  ReplicaSet, an operator's Pod) is audited itself, or nobody would be;
* **status**: per policy, how many audited objects it applied to and how many
  of those break it (``status.audit.objects`` / ``violations``);
* **Events** on the offending objects, one per (object, policy, rule,
  container, message), named after its hash, so a finding that persists
  across audits updates one Event's ``count`` instead of piling up new ones;
* **PolicyReports** (``wgpolicyk8s.io/v1alpha2``): one per namespace, one
  ``ClusterPolicyReport`` for cluster-scoped objects (none of today's kinds
  are), each result naming policy, rule, result, message and resource;
* **who uses a base** (``baseguard audit --uses``): every object whose image
  lineage, at any level, matches a reference glob.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.assess import WorkloadResult
from controller.globs import GlobSet
from controller.lineage.model import Level
from controller.operator.status import AuditCounts, rfc3339
from controller.policy.model import Action, CompiledPolicy, RuleCode
from controller.policy.store import policy_key
from controller.reference import Reference
from controller.workloads import Workload, extract, pod_spec

MANAGED_BY = {"app.kubernetes.io/managed-by": "baseguard"}
SOURCE = "baseguard"
REPORT_NAME = "baseguard-audit"
REPORT_API_VERSION = "wgpolicyk8s.io/v1alpha2"
EVENT_REASON = "PolicyViolation"
EVENT_MESSAGE_MAX = 1024
MAX_REPORT_RESULTS = 1000


@dataclass(frozen=True)
class WorkloadResource:
    """A listable kind the audit reads."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}"


AUDITED: tuple[WorkloadResource, ...] = (
    WorkloadResource("apps", "v1", "deployments", "Deployment"),
    WorkloadResource("apps", "v1", "statefulsets", "StatefulSet"),
    WorkloadResource("apps", "v1", "daemonsets", "DaemonSet"),
    WorkloadResource("batch", "v1", "cronjobs", "CronJob"),
    WorkloadResource("batch", "v1", "jobs", "Job"),
    WorkloadResource("apps", "v1", "replicasets", "ReplicaSet"),
    WorkloadResource("", "v1", "replicationcontrollers", "ReplicationController"),
    WorkloadResource("", "v1", "pods", "Pod"),
)
_AUDITED_OWNERS = frozenset((r.api_version, r.kind) for r in AUDITED)


@dataclass(frozen=True)
class ObjectRef:
    """Enough to name an object in an Event or a report (``corev1.ObjectReference``)."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    uid: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out

    @property
    def title(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class Audited:
    """One object the audit judges: its reference, its workload, its pod spec (for pull secrets)."""

    ref: ObjectRef
    workload: Workload
    pod_spec: Mapping[str, Any] = field(default_factory=dict)


def controlled_by_audited(obj: Mapping[str, Any]) -> bool:
    """True when the object's controller is itself an audited kind (so it is judged there)."""
    meta = obj.get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    if not isinstance(owners, list):
        return False
    return any(
        isinstance(o, Mapping)
        and o.get("controller") is True
        and (o.get("apiVersion"), o.get("kind")) in _AUDITED_OWNERS
        for o in owners
    )


def audited_objects(
    resource: WorkloadResource, items: Iterable[Mapping[str, Any]]
) -> list[Audited]:
    """The objects of one listing the audit judges (see the module docstring)."""
    out: list[Audited] = []
    for item in items:
        if controlled_by_audited(item):
            continue
        obj = dict(item)
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        for workload in extract(obj, source="cluster"):
            ref = ObjectRef(
                api_version=resource.api_version,
                kind=resource.kind,
                namespace=workload.namespace,
                name=workload.name or "",
                uid=str(meta.get("uid") or ""),
            )
            out.append(Audited(ref, workload, pod_spec(obj, resource.kind)))
    return out


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """One violation of one policy by one image of one audited object."""

    ref: ObjectRef
    container: str | None
    image: str
    policy: str  # the policy's display key: ``name`` or ``namespace/name``
    rule: RuleCode
    action: Action
    message: str
    waived: str | None = None


Pair = tuple[Audited, WorkloadResult]


def findings(pairs: Sequence[Pair]) -> list[Finding]:
    out = []
    for audited, result in pairs:
        for image in result.results:
            for v in image.violations:
                out.append(
                    Finding(
                        ref=audited.ref,
                        container=image.facts.container,
                        image=image.facts.image,
                        policy=v.policy,
                        rule=v.rule,
                        action=v.action,
                        message=v.message,
                        waived=v.waived,
                    )
                )
    return out


def _breaks(f: Finding) -> bool:
    return f.waived is None and f.action is not Action.ALLOW


def policy_counts(
    pairs: Sequence[Pair], policies: Sequence[CompiledPolicy]
) -> dict[str, AuditCounts]:
    """Store key → figures for ``status.audit``; every policy gets an entry, even at zero."""
    by_display = {p.key: policy_key(p.kind, p.namespace, p.name) for p in policies}
    objects: dict[str, set[ObjectRef]] = {k: set() for k in by_display.values()}
    broken: dict[str, set[ObjectRef]] = {k: set() for k in by_display.values()}
    for audited, result in pairs:
        for image in result.results:
            for display in image.policies:
                key = by_display.get(display)
                if key is not None:
                    objects[key].add(audited.ref)
    for f in findings(pairs):
        key = by_display.get(f.policy)
        if key is not None and _breaks(f):
            broken[key].add(f.ref)
    return {k: AuditCounts(objects=len(objects[k]), violations=len(broken[k])) for k in objects}


# --------------------------------------------------------------------------- Events


def event_key(f: Finding) -> str:
    """Identity of a finding for de-duplication: same object, policy, rule, container and message."""
    text = "\x00".join(
        (f.ref.uid or f.ref.title, f.policy, f.rule.value, f.container or "", f.image, f.message)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def event_name(f: Finding) -> str:
    """``<object>.<hash>``: a valid name, stable for the same finding."""
    return f"{f.ref.name[:200]}.{event_key(f)}"


def event_message(f: Finding) -> str:
    who = f"container {f.container}" if f.container else "image"
    text = f"{f.policy} {f.rule.value} ({f.action.value}): {who} {f.image}: {f.message}"
    return text if len(text) <= EVENT_MESSAGE_MAX else text[: EVENT_MESSAGE_MAX - 3] + "..."


def event_body(
    f: Finding, *, now: dt.datetime, first: dt.datetime, count: int, instance: str
) -> dict[str, Any]:
    """A ``v1`` Event on the offending object (``kubectl describe`` shows it)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(f),
            "namespace": f.ref.namespace or "default",
            "labels": dict(MANAGED_BY),
        },
        "involvedObject": f.ref.as_dict(),
        "reason": EVENT_REASON,
        "message": event_message(f),
        "type": "Warning",
        "source": {"component": SOURCE},
        "reportingComponent": "baseguard.io/audit",
        "reportingInstance": instance,
        "action": "Audit",
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(now),
        "count": count,
    }


def event_findings(pairs: Sequence[Pair]) -> list[Finding]:
    """The findings worth an Event: not waived, not allowed, one per :func:`event_key`."""
    seen: dict[str, Finding] = {}
    for f in findings(pairs):
        if _breaks(f):
            seen.setdefault(event_key(f), f)
    return list(seen.values())


@dataclass
class EventLedger:
    """Which findings were posted when: an Event is repeated at most every ``interval``.

    Between audits a finding that persists costs no API call; after
    ``interval`` its Event's ``count`` and ``lastTimestamp`` move, so it does
    not expire from the cluster (Events live an hour by default) while the
    problem is still there.
    """

    interval: dt.timedelta
    _posted: dict[str, tuple[dt.datetime, dt.datetime, int]] = field(default_factory=dict)

    def due(self, key: str, now: dt.datetime) -> bool:
        last = self._posted.get(key)
        return last is None or now - last[1] >= self.interval

    def next_count(self, key: str, now: dt.datetime) -> tuple[dt.datetime, int]:
        """(firstTimestamp, count) for the next post of ``key``."""
        last = self._posted.get(key)
        return (now, 1) if last is None else (last[0], last[2] + 1)

    def posted(self, key: str, *, first: dt.datetime, now: dt.datetime, count: int) -> None:
        self._posted[key] = (first, now, count)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget findings that are gone, so a problem that comes back is told at once."""
        live = set(keys)
        for key in list(self._posted):
            if key not in live:
                del self._posted[key]


# --------------------------------------------------------------------------- PolicyReports

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
            grouped.setdefault((f.policy, f.rule), []).append(f)
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
    breaking = [f for f in found if _breaks(f)]
    if not breaking:
        result, severity = "skip", None
    elif rule is RuleCode.LOOKUP_FAILED:
        result, severity = "error", None
    else:
        worst = max(breaking, key=lambda f: f.action.severity)
        result, severity = _RESULT[worst.action], _SEVERITY[worst.action]
    shown = breaking or found
    messages = list(dict.fromkeys(f"{f.container or f.image}: {f.message}" for f in shown))
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
            "containers": ",".join(dict.fromkeys(f.container or "" for f in shown)),
            "images": ",".join(dict.fromkeys(f.image for f in shown)),
            "action": max((f.action for f in shown), key=lambda a: a.severity).value,
        },
    }
    if severity:
        entry["severity"] = severity
    if not breaking and found[0].waived:
        entry["properties"]["waived"] = found[0].waived
    return entry


def report_body(namespace: str | None, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A ``PolicyReport`` (or, for ``namespace=None``, a ``ClusterPolicyReport``) with a summary.

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
        "apiVersion": REPORT_API_VERSION,
        "kind": "PolicyReport" if namespace is not None else "ClusterPolicyReport",
        "metadata": meta,
        "summary": summary,
        "results": list(ordered),
    }


def report_path(namespace: str | None, name: str | None = None) -> str:
    base = "/apis/wgpolicyk8s.io/v1alpha2"
    path = (
        f"{base}/namespaces/{namespace}/policyreports"
        if namespace
        else f"{base}/clusterpolicyreports"
    )
    return f"{path}/{name}" if name else path


# --------------------------------------------------------------------------- who uses a base


_DOCKER_HUB = "docker.io"


class UsesPattern:
    """A reference glob for ``--uses``: ``debian:buster``, ``python:3.8*``, ``ghcr.io/acme/base``.

    Normalized like an image name (``debian`` is ``docker.io/library/debian``);
    without a tag it matches every tag, with ``@sha256:…`` only that digest.
    """

    def __init__(self, text: str) -> None:
        pattern = text.strip()
        if not pattern:
            raise ValueError("--uses needs a reference or a glob, e.g. debian:buster")
        self.text = pattern
        digest = None
        if "@" in pattern:
            pattern, digest = pattern.split("@", 1)
        tag = None
        slash = pattern.rfind("/")
        colon = pattern.rfind(":")
        if colon > slash:
            pattern, tag = pattern[:colon], pattern[colon + 1 :]
        first, _, rest = pattern.partition("/")
        host_like = "." in first or ":" in first or first == "localhost"
        if not rest:
            pattern = f"{_DOCKER_HUB}/library/{pattern}"
        elif not host_like:
            pattern = f"{_DOCKER_HUB}/{pattern}"
        elif first in ("index.docker.io", "registry-1.docker.io"):
            pattern = f"{_DOCKER_HUB}/{rest}"
        self.name = GlobSet((pattern,))
        self.tag = GlobSet((tag,)) if tag else None
        self.digest = digest

    def matches(self, ref: Reference | None, digest: str | None = None) -> bool:
        if ref is None or not self.name.matches(ref.name):
            return False
        if self.tag is not None and (ref.tag is None or not self.tag.matches(ref.tag)):
            return False
        return self.digest is None or self.digest in (ref.digest, digest)

    def matches_level(self, level: Level) -> bool:
        return self.matches(level.reference, level.digest)


@dataclass(frozen=True)
class Use:
    """An image of an audited object whose lineage includes the base."""

    ref: ObjectRef
    container: str | None
    image: str
    matched: tuple[str, ...]  # the matching levels, as ``name`` (platform)
    depth: int  # 0: the image itself; 1: its base; …


def uses(pairs: Sequence[Pair], pattern: UsesPattern) -> list[Use]:
    """Every image whose own reference or any lineage level matches ``pattern``."""
    out: list[Use] = []
    for audited, result in pairs:
        for image in result.results:
            facts = image.facts
            matched: dict[str, int] = {}
            if pattern.matches(facts.reference):
                matched[facts.reference.normalized if facts.reference else facts.image] = 0
            lineage = facts.lineage
            for platform in lineage.platforms if lineage else ():
                for depth, level in enumerate(platform.levels):
                    if pattern.matches_level(level):
                        label = f"{level.name} ({platform.platform})"
                        matched.setdefault(label, depth)
            if matched:
                out.append(
                    Use(
                        ref=audited.ref,
                        container=facts.container,
                        image=facts.image,
                        matched=tuple(matched),
                        depth=min(matched.values()),
                    )
                )
    return out


PROBE = "baseguard-uses"


def probe_policy() -> CompiledPolicy:
    """A policy that matches everything and asks for every image's lineage, deciding nothing.

    ``--uses`` needs lineage even where no real policy does; going through the
    Assessor with this probe keeps one assessment path. Its findings (it has
    none that are not ``allow``) are never shown.
    """
    from controller.policy.compile import compile_policy
    from controller.policy.model import API_VERSION, CLUSTER_KIND

    return compile_policy(
        {
            "apiVersion": API_VERSION,
            "kind": CLUSTER_KIND,
            "metadata": {"name": PROBE},
            "spec": {
                "mode": "Audit",
                "lineage": {
                    "maxDepth": 10,
                    "onUnknownBase": "Allow",
                    "onLookupFailure": "Allow",
                    "staleBase": "Allow",
                    "verify": "Annotations",
                },
            },
        }
    )
