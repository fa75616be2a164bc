"""What the audit looks at and what it found, without I/O (tested without a cluster).

* **what**: every pod controller, and every Pod not owned by one. An object
  controlled by another audited object (a ReplicaSet of a Deployment, a Job
  of a CronJob, a Pod of either) is left out: its owner carries the same
  template, and judging both would count one problem several times. An
  object controlled by something baseguard does not audit (an Argo Rollout's
  ReplicaSet, an operator's Pod) is audited itself, or nobody would be;
* **status**: per policy, how many audited objects it applied to and how many
  of those break it (``status.audit.objects`` / ``violations``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import findings as findings_
from controller.assess import WorkloadResult
from controller.operator.status import AuditCounts
from controller.policy.model import Action, CompiledPolicy
from controller.policy.store import policy_key
from controller.workloads import Workload, extract, pod_spec

MANAGED_BY = {"app.kubernetes.io/managed-by": "baseguard"}
SOURCE = "baseguard"

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
class Finding(findings_.Finding):
    """A shared finding (image, where it sits, violation) of one audited object.

    The audit says what it found the way the webhook and ``check`` do; all it
    adds is which object, for Events and reports.
    """

    ref: ObjectRef


Pair = tuple[Audited, WorkloadResult]


def findings(pairs: Sequence[Pair]) -> list[Finding]:
    return [
        Finding(image=f.image, violation=f.violation, ref=audited.ref)
        for audited, result in pairs
        for f in findings_.findings([result])
    ]


def breaks(f: Finding) -> bool:
    return f.violation.waived is None and f.violation.action is not Action.ALLOW


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
        key = by_display.get(f.violation.policy)
        if key is not None and breaks(f):
            broken[key].add(f.ref)
    return {k: AuditCounts(objects=len(objects[k]), violations=len(broken[k])) for k in objects}
