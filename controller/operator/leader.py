"""Leader election on a ``coordination.k8s.io/v1`` Lease.

Every replica serves the webhook; the work that must happen once (policy
status, certificates, the audit) is done by the replica holding the Lease.
kopf's own peering is not used: equal-priority peers *freeze* each other
rather than elect one (kopf ``docs/peering.rst``), and the operator runs
``standalone=True``.

The protocol is client-go's ``leaderelection``:

* the holder renews ``spec.renewTime`` every ``retry`` seconds and steps
  down when it could not renew for ``renew_deadline`` seconds;
* a candidate takes the Lease over when it is free (no holder — a leader
  that stopped cleanly released it), or when the record it sees has not
  changed for ``leaseDurationSeconds`` *by its own clock*. Judging expiry by
  when the record was last seen to change, not by the ``renewTime`` written
  in it, makes the election indifferent to clock skew between nodes;
* every write is a PUT carrying the ``resourceVersion`` that was read, so of
  two candidates racing for an expired Lease exactly one wins (the other gets
  409 Conflict and stays a follower).

:func:`decide` and :class:`Observer` are pure; :class:`Elector` is the loop
around them with the API calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.operator.kube import KubeLike

log = logging.getLogger("baseguard.operator.leader")

API_VERSION = "coordination.k8s.io/v1"


def micro_time(moment: dt.datetime) -> str:
    """A ``metav1.MicroTime``: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, and the ``resourceVersion`` a write must carry."""

    holder: str | None
    duration: int
    renew_time: str | None = None
    acquire_time: str | None = None
    transitions: int = 0
    resource_version: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration=duration if isinstance(duration, int) else 0,
            renew_time=spec.get("renewTime"),
            acquire_time=spec.get("acquireTime"),
            transitions=transitions if isinstance(transitions, int) else 0,
            resource_version=meta.get("resourceVersion"),
        )

    @property
    def version(self) -> tuple[str | None, str | None, int]:
        """What changes on every renewal: a record that stays equal is not being renewed."""
        return (self.holder, self.renew_time, self.transitions)


class Step(StrEnum):
    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # we hold it: move renewTime
    ACQUIRE = "acquire"  # free or expired: take it over
    FOLLOW = "follow"  # someone else holds a live Lease


@dataclass(frozen=True)
class Decision:
    step: Step
    spec: dict[str, Any] | None = None  # the Lease spec to write, for every step but FOLLOW
    holder: str | None = None  # who leads afterwards, if the write succeeds


def decide(
    lease: LeaseRecord | None,
    *,
    identity: str,
    now: dt.datetime,
    expired: bool,
    duration: int,
) -> Decision:
    """What to do with the Lease as read. ``expired``: see :class:`Observer`."""
    stamp = micro_time(now)
    if lease is None:
        spec = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        }
        return Decision(Step.CREATE, spec, identity)
    if lease.holder == identity:
        spec = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration,
            "acquireTime": lease.acquire_time or stamp,
            "renewTime": stamp,
            "leaseTransitions": lease.transitions,
        }
        return Decision(Step.RENEW, spec, identity)
    if lease.holder is None or expired:
        spec = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": lease.transitions + 1,
        }
        return Decision(Step.ACQUIRE, spec, identity)
    return Decision(Step.FOLLOW, None, lease.holder)


@dataclass
class Observer:
    """Tells whether a Lease held by someone else has stopped being renewed.

    Remembers when the record (holder, renewTime, transitions) last changed,
    by the local monotonic clock; the Lease is expired once it has not changed
    for its ``leaseDurationSeconds``. A record seen for the first time counts
    as just renewed: a replica that starts never takes over from a live leader.
    """

    _seen: tuple[str | None, str | None, int] | None = None
    _since: float = 0.0

    def expired(self, lease: LeaseRecord, mono: float) -> bool:
        if lease.version != self._seen:
            self._seen = lease.version
            self._since = mono
            return False
        return mono - self._since >= max(lease.duration, 1)



def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Elector:
    """Campaigns for the Lease until cancelled; calls ``on_start``/``on_stop`` on changes.

    ``on_start`` and ``on_stop`` are plain callables (they start or cancel the
    leader's tasks); they run on the event loop and must not block.
    """

    kube: KubeLike
    namespace: str
    name: str
    identity: str
    duration: int = 15
    renew_deadline: float = 10.0
    retry: float = 2.0
    on_start: Callable[[], None] = lambda: None
    on_stop: Callable[[], None] = lambda: None
    wall: Callable[[], dt.datetime] = utc_now
    mono: Callable[[], float] = time.monotonic
    is_leader: bool = False
    holder: str | None = None
    _observer: Observer = field(default_factory=Observer)
    _renewed: float = 0.0
    _record: LeaseRecord | None = None

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError(
                "leader election needs 0 < retry < renew deadline < lease duration "
                f"(got {self.retry}, {self.renew_deadline}, {self.duration})"
            )

    async def run(self) -> None:
        """Campaign every ``retry`` seconds until cancelled; release the Lease on the way out."""
        try:
            while True:
                await self.try_once()
                await asyncio.sleep(self.retry)
        finally:
            if self.is_leader:
                await asyncio.shield(self.release())

    async def try_once(self) -> bool:
        """One round: read the Lease, write it if ours to write; True while leading."""
        path = lease_path(self.namespace, self.name)
        try:
            try:
                record: LeaseRecord | None = LeaseRecord.from_object(await self.kube.get(path))
            except Exception as exc:
                if _status_of(exc) != 404:
                    raise
                record = None
            expired = record is not None and self._observer.expired(record, self.mono())
            decision = decide(
                record,
                identity=self.identity,
                now=self.wall(),
                expired=expired,
                duration=self.duration,
            )
            if decision.step is Step.FOLLOW:
                self._follow(decision.holder)
                return False
            body = self._body(decision.spec or {}, record)
            if decision.step is Step.CREATE:
                written = await self.kube.create(lease_path(self.namespace), body)
            else:
                written = await self.kube.replace(path, body)
            self._record = LeaseRecord.from_object(written)
            self._renewed = self.mono()
            self._lead(acquired=decision.step is not Step.RENEW)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = _status_of(exc)
            if status == 409:
                log.debug("lost a race for the lease", extra={"fields": {"lease": self.name}})
            else:
                log.warning(
                    "leader election round failed",
                    extra={"fields": {"lease": self.name, "error": str(exc)}},
                )
            if self.is_leader and self.mono() - self._renewed >= self.renew_deadline:
                log.warning(
                    "could not renew the lease in time; stepping down",
                    extra={"fields": {"lease": self.name, "deadline": self.renew_deadline}},
                )
                self._step_down(None)
            return self.is_leader

    async def release(self) -> None:
        """Give the Lease up (holder cleared) so another replica takes over at once.

        The last renewal may have been in flight when the loop was cancelled
        (its answer lost, its write done), so a 409 is retried once on a fresh
        read, and only while the Lease is still ours.
        """
        record = self._record
        self._step_down(None)
        path = lease_path(self.namespace, self.name)
        for _ in range(2):
            if record is None or record.holder != self.identity:
                return
            spec = {
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "acquireTime": record.acquire_time,
                "renewTime": micro_time(self.wall()),
                "leaseTransitions": record.transitions,
            }
            try:
                await self.kube.replace(path, self._body(spec, record))
                log.info("lease released", extra={"fields": {"lease": self.name}})
                return
            except Exception as exc:
                if _status_of(exc) != 409:
                    log.warning(
                        "could not release the lease", extra={"fields": {"error": str(exc)}}
                    )
                    return
                try:
                    record = LeaseRecord.from_object(await self.kube.get(path))
                except Exception:
                    return

    # ---- state changes

    def _body(self, spec: Mapping[str, Any], record: LeaseRecord | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record is not None and record.resource_version:
            meta["resourceVersion"] = record.resource_version
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": dict(spec)}

    def _lead(self, *, acquired: bool) -> None:
        self.holder = self.identity
        if not self.is_leader:
            self.is_leader = True
            log.info(
                "became the leader",
                extra={
                    "fields": {"lease": self.name, "identity": self.identity, "acquired": acquired}
                },
            )
            self.on_start()

    def _follow(self, holder: str | None) -> None:
        if holder != self.holder:
            log.info("following", extra={"fields": {"lease": self.name, "leader": holder}})
        self._step_down(holder)

    def _step_down(self, holder: str | None) -> None:
        self.holder = holder
        if self.is_leader:
            self.is_leader = False
            log.info("stopped leading", extra={"fields": {"lease": self.name}})
            self.on_stop()
