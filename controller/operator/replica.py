"""One replica's operator: its shared state and background work, between kopf and the webhook.

One :class:`Operator` per process. kopf's handlers (:mod:`.handlers`) call
into it; it is also kopf's ``memo``. The webhook reads the store and the
namespace labels it keeps. Its jobs:

* **every replica** keeps the policy store and the namespace labels in step
  with the watch, loads the serving pair, refreshes the catalog bases, and
  campaigns for the Lease;
* **the leader** writes policy status, keeps certificates fresh, runs the
  background audit and, once per process, the warm start (:mod:`.warmstart`). Leader jobs are long-lived loops that wait for the
  leadership and check it again before every write, so losing the Lease in
  the middle of an audit only means its results are not published.

Readiness: the store is marked loaded (``/readyz`` 200, reviews judged) once
kopf has listed every watched kind — kopf runs no event handler before every
index is populated, and the indexing handlers are what fill the store — and
the real serving pair is in place.

All long-lived tasks are created *before* ``kopf.operator`` starts: kopf
treats any task created after its start as its own and, on exit, waits for
it and then cancels it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from controller.lineage.resolve import LineageResolver
from controller.operator.audit.runner import Auditor, AuditRun
from controller.operator.backstop import Backstop
from controller.operator.credentials import PullSecrets
from controller.operator.kube import Kube
from controller.operator.leader import Elector
from controller.operator.mutation import MutationKeeper
from controller.operator.namespaces import Namespaces
from controller.operator.policies import PolicyBook, PolicyRecord, key_of
from controller.operator.serving_secret import CertKeeper, ServingPair
from controller.operator.settings import OperatorSettings
from controller.operator.status import status_patch
from controller.operator.warmstart import WarmStart
from controller.policy.compile import catalog_references
from controller.policy.store import PolicyStore

log = logging.getLogger("baseguard.operator")

DELETED = "DELETED"


class Operator:
    """Everything kopf's handlers and the leader's loops share."""

    def __init__(
        self,
        *,
        config: OperatorSettings,
        kube: Kube,
        store: PolicyStore,
        serving: ServingPair,
        clock: Callable[[], dt.datetime],
        auditor: Auditor | None = None,
        keeper: CertKeeper | None = None,
        resolver: LineageResolver | None = None,
        pull_secrets: PullSecrets | None = None,
        mutation: MutationKeeper | None = None,
        backstop: Backstop | None = None,
    ) -> None:
        self.config = config
        self.kube = kube
        self.store = store
        self.book = PolicyBook(store, today=lambda: self.clock().date())
        self.namespaces = Namespaces(kube)
        self.serving = serving
        self.clock = clock
        self.auditor = auditor
        self.keeper = keeper
        self.resolver = resolver
        self.pull_secrets = pull_secrets
        """Pods' registry credentials, for the webhook's reviews and the audit (``None``: off)."""
        self.mutation = mutation
        """Keeps the mutating webhook registered only while a policy pins (``None``: off)."""
        self.backstop = backstop
        """Keeps the ValidatingAdmissionPolicy backstop in step with the policies (``None``: off)."""
        self.leading = asyncio.Event()
        self.loaded = asyncio.Event()
        self.elector = Elector(
            kube,
            namespace=config.namespace,
            name=config.lease_name,
            identity=config.identity,
            duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry=config.retry_period,
            on_start=self.leading.set,
            on_stop=self.leading.clear,
        )
        self.warm: WarmStart | None = None
        """Pre-resolves running pods' images once this replica first leads (``None``: off)."""
        self.last_audit: AuditRun | None = None
        self.audits = 0
        """Audits published by this replica (tests and the bench wait on it)."""
        self.closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._closed = False
        self._listed = False
        self._sent: dict[str, tuple[str, int, str, str, str]] = {}
        self.serving.on_ready = self._maybe_ready

    def __copy__(self) -> Operator:
        """kopf gives each object a shallow copy of the memo; this one is shared on purpose."""
        return self

    # ---- kopf: policies

    def policy_indexed(self, body: Mapping[str, Any], *, kind: str) -> dict[str, int]:
        """Indexing handler: compile into the store (runs for every event but DELETED)."""
        record, compiled = self.book.apply(body, kind=kind)
        if compiled and record.errors:
            log.warning(
                "policy refused",
                extra={
                    "fields": {
                        "policy": record.title,
                        "generation": record.generation,
                        "errors": [str(e) for e in record.errors],
                    }
                },
            )
        return {record.key: record.generation}

    async def policy_event(
        self, event_type: str | None, body: Mapping[str, Any], *, kind: str
    ) -> None:
        """Event handler (after every index is populated): deletions, readiness, status."""
        self._mark_listed()
        if event_type == DELETED:
            gone = self.book.remove(body, kind=kind)
            log.info(
                "policy deleted",
                extra={"fields": {"policy": gone.title if gone else key_of(body, kind=kind)}},
            )
            await self.sync_mutation()
            if self.backstop is not None:
                self.backstop.poke()
            return
        if self.backstop is not None:
            self.backstop.poke()
        record = self.book.get(key_of(body, kind=kind))
        if record is not None and self.leading.is_set():
            # The webhook first: a policy reported Ready pins the next pod it applies to.
            await self.sync_mutation()
            await self.sync_status(record)

    # ---- kopf: namespaces

    def namespace_indexed(self, name: str, labels: Mapping[str, str]) -> None:
        self.namespaces.put(name, labels)

    def namespace_event(self, event_type: str | None, name: str) -> None:
        self._mark_listed()
        if event_type == DELETED:
            self.namespaces.remove(name)

    async def shutdown(self) -> None:
        """Run the closers (last registered first), once; kopf's cleanup handler calls this."""
        if self._closed:
            return
        self._closed = True
        self.leading.clear()
        for closer in reversed(self.closers):
            try:
                await closer()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("error while shutting down")

    # ---- readiness

    def _mark_listed(self) -> None:
        if not self._listed:
            self._listed = True
            log.info(
                "initial listing done",
                extra={
                    "fields": {
                        "policies": len(self.store.snapshot.policies),
                        "namespaces": len(self.namespaces),
                    }
                },
            )
            self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self._listed and self.serving.ready and not self.loaded.is_set():
            snapshot = self.store.mark_loaded()
            self.loaded.set()
            log.info("ready", extra={"fields": {"summary": snapshot.summary()}})

    # ---- status (the leader)

    async def sync_status(self, record: PolicyRecord) -> bool:
        """Write ``record``'s Ready condition if it is not what the object says; True if written.

        A patch just sent is not sent again while its own event is on the way
        (events of other changes can arrive first and still show the old status).
        """
        # An exception's status names the policy it waives, if that is in force.
        target = record.exception.policy_key if record.exception is not None else record.key
        patch = status_patch(record, now=self.clock(), in_force=self.book.in_force(target))
        if patch is None or not self.leading.is_set():
            self._sent.pop(record.key, None)
            return False
        condition = patch["status"]["conditions"][0]
        seen = json.dumps(record.status, sort_keys=True, default=str)
        sent = (record.uid, record.generation, condition["status"], condition["message"], seen)
        if self._sent.get(record.key) == sent:
            return False  # sent already, and the object has not changed since
        self._sent[record.key] = sent
        try:
            await self.kube.patch(record.path, patch)
        except asyncio.CancelledError:
            self._sent.pop(record.key, None)
            raise
        except Exception as exc:
            self._sent.pop(record.key, None)
            if getattr(exc, "status", None) != 404:
                log.warning(
                    "cannot write policy status",
                    extra={"fields": {"policy": record.title, "error": str(exc)}},
                )
            return False
        log.info(
            "policy status written",
            extra={
                "fields": {
                    "policy": record.title,
                    "ready": patch["status"]["conditions"][0]["status"],
                    "generation": record.generation,
                }
            },
        )
        return True

    async def sync_all(self) -> int:
        written = 0
        for record in self.book.records():
            if not self.leading.is_set():
                break
            written += await self.sync_status(record)
        return written

    # ---- loops (created before kopf starts; see the module docstring)

    async def status_loop(self) -> None:
        await self.loaded.wait()
        while True:
            await self.leading.wait()
            await self.sync_all()
            await self._pause(self.config.status_resync_interval)

    async def cert_loop(self) -> None:
        if self.keeper is None:
            return
        while True:
            await self.leading.wait()
            try:
                await self.keeper.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "certificate check failed; retrying", extra={"fields": {"error": str(exc)}}
                )
                await self._pause(min(self.config.cert_check_interval, 10.0))
                continue
            await self._pause(self.config.cert_check_interval)

    async def sync_mutation(self) -> bool:
        """The leader: register or remove the mutating webhook for the policies now in force.

        A failure is logged and left to :meth:`mutation_loop` (woken at once), so a
        policy event is never held up by the webhook configuration.
        """
        if self.mutation is None or not self.leading.is_set() or not self._listed:
            return False
        try:
            return await self.mutation.reconcile(self.store.snapshot.policies, if_changed=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "mutating webhook check failed; retrying", extra={"fields": {"error": str(exc)}}
            )
            self.mutation.poke()
            return False

    async def mutation_loop(self) -> None:
        """The leader, after the initial listing: the same check on a slow timer, and when poked."""
        if self.mutation is None:
            return
        await self.loaded.wait()
        while True:
            await self.leading.wait()
            try:
                await self.mutation.reconcile(self.store.snapshot.policies)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "mutating webhook check failed; retrying", extra={"fields": {"error": str(exc)}}
                )
                await self._pause(min(self.mutation.interval, 5.0))
                continue
            await self._pause(self.mutation.interval, wake=self.mutation.wake)

    async def backstop_loop(self) -> None:
        """The leader, after the initial listing: the generated ValidatingAdmissionPolicies kept
        equal to the policies in force, at once on a policy event, else on a timer (an
        exception's end date passes without any event)."""
        if self.backstop is None:
            return
        await self.loaded.wait()
        while True:
            await self.leading.wait()
            uids = {(r.kind, r.namespace, r.name): r.uid for r in self.book.records()}
            try:
                await self.backstop.reconcile(self.store.snapshot.policies, uids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "ValidatingAdmissionPolicy backstop check failed; retrying",
                    extra={"fields": {"error": str(exc)}},
                )
                await self._pause(min(self.backstop.interval, 5.0))
                continue
            await self._pause(self.backstop.seconds_to_wait(), wake=self.backstop.wake)

    async def audit_loop(self) -> None:
        if self.auditor is None or self.config.audit_interval <= 0:
            return
        await self.loaded.wait()
        while True:
            await self.leading.wait()
            try:
                await self.audit_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit failed; next try at the next interval")
            await self._pause(self.config.audit_interval)

    async def warm_start_once(self) -> None:
        """The warm start, once per process: when the policies are loaded and this replica leads.

        Before the first audit's lookups (they are throttled apart, and the audit waits its
        interval): what the warm start resolved, the audit finds in the caches.
        """
        if self.warm is None:
            return
        await self.loaded.wait()
        await self.leading.wait()
        await self.warm.run()  # logs and counts its failures; never raises them

    async def audit_once(self) -> AuditRun | None:
        assert self.auditor is not None
        policies = self.store.snapshot.policies
        run = await self.auditor.run(policies, namespace_labels=self.namespaces.snapshot())
        self.last_audit = run
        if not self.leading.is_set():
            log.info("audit done but no longer leading; not published")
            return run
        await self.auditor.publish(run, self.book)
        self.audits += 1
        broken = sum(c.violations for c in run.counts.values())
        writes = self.auditor.last_writes
        log.info(
            "audit published",
            extra={
                "fields": {
                    "objects": run.objects,
                    "policies": len(run.counts),
                    "violating": broken,
                    "seconds": round(run.seconds, 3),
                    "reports_written": writes.written,
                    "reports_unchanged": writes.unchanged,
                    "reports_deleted": writes.deleted,
                    "report_bytes": writes.bytes,
                    "status_written": self.auditor.status_writes,
                }
            },
        )
        return run

    async def catalog_loop(self) -> None:
        """Every replica: refresh the catalog bases of every policy, so each tag's digest history grows.

        Layer detection knows a base by every digest its tag has had *while it
        was watched*; an image built on last month's ``python:3.12-slim`` is
        only recognised if some refresh saw that digest.
        """
        if self.resolver is None:
            return
        await self.loaded.wait()
        while True:
            refs = list(
                {
                    ref.normalized: ref
                    for p in self.store.snapshot.policies
                    for ref in catalog_references(p)
                }.values()
            )
            if refs:
                try:
                    failures = await self.resolver.refresh_catalog(refs)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures = {"*": str(exc)}
                if failures:
                    log.warning(
                        "catalog refresh incomplete", extra={"fields": {"failures": dict(failures)}}
                    )
            await asyncio.sleep(self.config.catalog_refresh_interval)

    async def _pause(self, seconds: float, *, wake: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less if the leadership is lost (the loop then waits for it again)
        or ``wake`` is set.

        Plain sleeps in short steps: no task is created, so nothing here
        outlives a kopf shutdown.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        step = max(self.config.retry_period / 2, 0.05)
        while self.leading.is_set() and not (wake is not None and wake.is_set()):
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, step))
