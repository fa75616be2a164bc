"""The ValidatingAdmissionPolicy backstop, kept in step with the policies (chart value ``vapBackstop``).

With the webhook's ``failurePolicy: Ignore`` every rule lapses while baseguard
is unreachable. :mod:`controller.vap` turns a policy's registry-free rules into
a ValidatingAdmissionPolicy and its binding that the apiserver judges itself;
here the leader keeps those objects equal to what the policies in force say:

* a policy added or changed: its two objects created or replaced (only when
  their content differs: :data:`DIGEST_ANNOTATION`);
* a policy deleted, refused (``Ready=False``), or one whose rules can no longer
  be exported (the generator fails on it): its objects deleted, binding first;
* an exception's end date passed: the content changes (the generator only keeps
  exceptions in force on ``today``), so the next check rewrites the objects.
  The apiserver has no clock in CEL, so the check runs on a timer as well as on
  every policy event, and wakes on the first ``regenerate-by`` day.

Ownership is exact: every object this writes carries :data:`OWNER_LABEL` with
this installation's name, and only objects with that label are ever replaced or
deleted; a same-named object without it (a GitOps copy of ``baseguard export
vap``) is left alone and said in the log. A ``ClusterBaseImagePolicy``'s objects
also get an ``ownerReference`` to it, so the garbage collector removes them with
the policy even when baseguard is not running (a namespaced ``BaseImagePolicy``
cannot own a cluster-scoped object; its objects go by the label only).

Everything above :class:`Backstop` is pure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.operator.kube import KubeLike
from controller.policy.model import CLUSTER_KIND, GROUP, VERSION, CompiledPolicy
from controller.vap.generate import DEFAULT_EXCLUDED_NAMESPACES, export

log = logging.getLogger("baseguard.operator.backstop")

API = "/apis/admissionregistration.k8s.io/v1"
POLICIES = "validatingadmissionpolicies"
BINDINGS = "validatingadmissionpolicybindings"
#: Which installation wrote the object: the only objects the backstop replaces or deletes.
OWNER_LABEL = "baseguard.io/backstop"
#: A hash of what the object says; equal: the object is not written again.
DIGEST_ANNOTATION = "baseguard.io/backstop-digest"


@dataclass(frozen=True)
class Wanted:
    """One object the cluster should hold: its collection, its body, its digest."""

    resource: str
    name: str
    body: dict[str, Any]
    digest: str


def _digest(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    text = json.dumps(
        [
            body.get("spec"),
            meta.get("labels"),
            meta.get("annotations"),
            meta.get("ownerReferences"),
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _stamp(
    body: dict[str, Any], *, owner: str, owners: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    meta = body["metadata"]
    meta["labels"] = {**meta.get("labels", {}), OWNER_LABEL: owner}
    if owners:
        meta["ownerReferences"] = [dict(o) for o in owners]
    meta.setdefault("annotations", {})[DIGEST_ANNOTATION] = _digest(body)
    return body


def wanted_objects(
    policies: Iterable[CompiledPolicy],
    *,
    today: dt.date,
    owner: str,
    uids: Mapping[tuple[str, str | None, str], str],
    exclude_namespaces: Sequence[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> tuple[list[Wanted], dt.date | None]:
    """Every object the policies in force want on ``today``, and the first day they change.

    ``uids`` maps (kind, namespace, name) of a policy to its object's uid (for the
    ``ownerReference`` of a cluster policy's objects). A policy the generator
    cannot export is left out (and logged): its old objects are then deleted,
    because an object that no longer says what the policy says must not judge.
    """
    out: list[Wanted] = []
    next_day: dt.date | None = None
    for policy in policies:
        try:
            done = export(policy, today=today, exclude_namespaces=exclude_namespaces)
        except Exception as exc:  # a generator bug must not stop the other policies' objects
            log.warning(
                "policy cannot be exported as a ValidatingAdmissionPolicy; its objects are removed",
                extra={"fields": {"policy": policy.key, "error": str(exc)}},
            )
            continue
        if not done.exported:
            continue
        uid = uids.get((policy.kind, policy.namespace, policy.name))
        owners: list[dict[str, Any]] = []
        if policy.kind == CLUSTER_KIND and uid:
            owners = [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": CLUSTER_KIND,
                    "name": policy.name,
                    "uid": uid,
                }
            ]
        for resource, body in ((POLICIES, done.policy), (BINDINGS, done.binding)):
            stamped = _stamp(json.loads(json.dumps(body)), owner=owner, owners=owners)
            out.append(
                Wanted(
                    resource,
                    stamped["metadata"]["name"],
                    stamped,
                    stamped["metadata"]["annotations"][DIGEST_ANNOTATION],
                )
            )
        if done.regenerate_by is not None:
            next_day = min(next_day or done.regenerate_by, done.regenerate_by)
    return out, next_day


@dataclass
class Changes:
    """What one check did (logged, and read by tests)."""

    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    """Names held by objects this installation did not write: left alone."""
    failed: list[str] = field(default_factory=list)
    """Objects the apiserver refused (logged; tried again at the next check)."""

    @property
    def any(self) -> bool:
        return bool(self.created or self.replaced or self.deleted)


PoliciesNow = Callable[
    [], tuple[Sequence[CompiledPolicy], Mapping[tuple[str, str | None, str], str]]
]


class Backstop:
    """The leader's writer of the generated objects (see the module docstring)."""

    def __init__(
        self,
        kube: KubeLike,
        *,
        owner: str,
        clock: Callable[[], dt.datetime],
        exclude_namespaces: Sequence[str] = DEFAULT_EXCLUDED_NAMESPACES,
        interval: float = 60.0,
    ) -> None:
        self.kube = kube
        self.owner = owner
        self.clock = clock
        self.exclude_namespaces = tuple(exclude_namespaces)
        self.interval = interval
        self.wake = asyncio.Event()
        self.next_day: dt.date | None = None
        self.checks = 0
        """Checks done (tests wait on it)."""

    def poke(self) -> None:
        """A policy changed: check at once."""
        self.wake.set()

    def seconds_to_wait(self) -> float:
        """Until the next check: the interval, or less when a ``regenerate-by`` day starts sooner."""
        if self.next_day is None:
            return self.interval
        start = dt.datetime.combine(self.next_day, dt.time(), tzinfo=dt.UTC)
        return max(min(self.interval, (start - self.clock()).total_seconds() + 1), 0.5)

    async def _held(self, resource: str) -> dict[str, dict[str, Any]]:
        items = await self.kube.list(
            f"{API}/{resource}", params={"labelSelector": f"{OWNER_LABEL}={self.owner}"}
        )
        return {
            str(i["metadata"]["name"]): i
            for i in items
            if (i.get("metadata") or {}).get("labels", {}).get(OWNER_LABEL) == self.owner
        }

    async def _put(self, item: Wanted, old: Mapping[str, Any] | None, changes: Changes) -> None:
        """Create ``item``, or replace ``old`` when its digest differs; a foreign name is left alone."""
        if old is None:
            try:
                await self.kube.create(f"{API}/{item.resource}", item.body)
                changes.created.append(f"{item.resource}/{item.name}")
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise
                changes.foreign.append(f"{item.resource}/{item.name}")
                log.warning(
                    "an object of that name exists and was not written by this "
                    "installation; left alone",
                    extra={"fields": {"object": f"{item.resource}/{item.name}"}},
                )
            return
        meta = old.get("metadata") or {}
        if (meta.get("annotations") or {}).get(DIGEST_ANNOTATION) == item.digest:
            return
        body = json.loads(json.dumps(item.body))
        body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        await self.kube.replace(f"{API}/{item.resource}/{item.name}", body)
        changes.replaced.append(f"{item.resource}/{item.name}")

    async def reconcile(
        self,
        policies: Sequence[CompiledPolicy],
        uids: Mapping[tuple[str, str | None, str], str],
    ) -> Changes:
        """Make the cluster hold exactly the objects the policies want; write only what differs."""
        self.wake.clear()
        wanted, self.next_day = wanted_objects(
            policies,
            today=self.clock().date(),
            owner=self.owner,
            uids=uids,
            exclude_namespaces=self.exclude_namespaces,
        )
        changes = Changes()
        held = {r: await self._held(r) for r in (POLICIES, BINDINGS)}
        # Policies before bindings: a binding naming a policy not yet there matches nothing.
        for item in sorted(wanted, key=lambda w: w.resource != POLICIES):
            try:
                await self._put(item, held[item.resource].get(item.name), changes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One object the apiserver refuses (a 422) must not hold up the others.
                if getattr(exc, "status", None) in (0, 401, None):
                    raise
                changes.failed.append(f"{item.resource}/{item.name}")
                log.warning(
                    "cannot write a generated ValidatingAdmissionPolicy object",
                    extra={"fields": {"object": f"{item.resource}/{item.name}", "error": str(exc)}},
                )
        keep = {(w.resource, w.name) for w in wanted}
        # Bindings before policies: a policy deleted under its binding leaves it dangling.
        for resource in (BINDINGS, POLICIES):
            for name in sorted(held[resource]):
                if (resource, name) in keep:
                    continue
                try:
                    await self.kube.delete(f"{API}/{resource}/{name}")
                except Exception as exc:
                    if getattr(exc, "status", None) != 404:
                        raise
                changes.deleted.append(f"{resource}/{name}")
        self.checks += 1
        if changes.any:
            log.info(
                "ValidatingAdmissionPolicy backstop updated",
                extra={
                    "fields": {
                        "created": changes.created,
                        "replaced": changes.replaced,
                        "deleted": changes.deleted,
                        "regenerate_by": self.next_day.isoformat() if self.next_day else None,
                    }
                },
            )
        return changes
