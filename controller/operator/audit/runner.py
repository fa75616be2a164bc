"""The audit's I/O: list what runs, assess it the admission way, write what was found.

Assessment goes through :class:`~controller.assess.Assessor` — the same path
as admission and ``baseguard check`` — in batches of ``batch`` objects (each
batch's lookups deduplicated), grouped by pull-secret credentials. Lookups
are throttled (:class:`Throttle`) and remembered for a while
(:class:`AuditResolver`), so an audit of a big cluster does not hammer a
registry, and the images every namespace shares cost one lookup.

``baseguard audit`` (the CLI) uses :meth:`Auditor.run` and prints;
the operator's leader also calls :meth:`Auditor.publish`: ``status.audit``
of every policy, Events on offending objects, and PolicyReports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.assess import Assessor
from controller.caching import Instances
from controller.lineage.budget import ReviewBudget
from controller.lineage.catalog import Catalog
from controller.lineage.model import DEFAULT_MAX_DEPTH, Lineage
from controller.lineage.resolve import lineage_key
from controller.memo import MemoResolver
from controller.operator.audit import events, plan, reports
from controller.operator.audit.events import EventLedger
from controller.operator.audit.plan import AUDITED, Audited, Pair
from controller.operator.credentials import PullSecrets, fingerprint
from controller.operator.kube import KubeLike, object_path
from controller.operator.policies import PolicyBook
from controller.operator.status import AuditCounts, audit_patch
from controller.policy.model import CompiledPolicy
from controller.reference import Reference
from controller.registry.client import RegistryClient
from controller.registry.config import Credentials

log = logging.getLogger("baseguard.operator.audit")



def _status(exc: BaseException) -> int | None:
    value = getattr(exc, "status", None)
    return value if isinstance(value, int) else None


MakeAssessor = Callable[[RegistryClient | None], Assessor]


class Assessors:
    """One assessor per registry credential set, sharing the client's session, cache and limits.

    ``make(client)`` builds an assessor on a client view; the one for no pull
    secrets is built once and kept, others for the last ``max_sets``
    credential sets (LRU). The audit's assessors share one :class:`Throttle`
    through ``make``, so credentials do not multiply the lookup rate.
    """

    def __init__(
        self, make: MakeAssessor, client: RegistryClient | None, *, max_sets: int = 64
    ) -> None:
        self.make = make
        self.client = client
        self.max_sets = max_sets
        self.default = make(client)
        self._by_creds: Instances[frozenset[tuple[str, Credentials]], Assessor] = Instances(
            self._bound, max_entries=max_sets
        )

    def for_credentials(self, creds: Mapping[str, Credentials]) -> Assessor:
        if not creds or self.client is None:
            return self.default
        return self._by_creds.get(fingerprint(creds))

    def _bound(self, key: frozenset[tuple[str, Credentials]]) -> Assessor:
        assert self.client is not None
        return self.make(self.client.with_config(self.client.config.with_credentials(dict(key))))


class Throttle:
    """A token bucket: at most ``rate`` starts per second, in bursts of up to ``burst``."""

    def __init__(
        self, rate: float, *, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(int(rate), 1))
        self.clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = self.clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class AuditResolver(MemoResolver):
    """A :class:`MemoResolver` whose lookups (not its memory hits) wait for the :class:`Throttle`."""

    def __init__(self, client: Any, *, catalog: Catalog, ttl: float, throttle: Throttle) -> None:
        super().__init__(client, catalog=catalog, ttl=ttl)
        self.throttle = throttle

    async def resolve(
        self,
        ref: Reference,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        platforms: Sequence[str] | None = None,
        catalog: Sequence[Reference] = (),
        budget: ReviewBudget | None = None,
    ) -> Lineage:
        key = lineage_key(ref, max_depth=max_depth, platforms=platforms, catalog=catalog)
        if self.memo.get(key) is None:
            await self.throttle.take()
        return await super().resolve(
            ref, max_depth=max_depth, platforms=platforms, catalog=catalog, budget=budget
        )


@dataclass(frozen=True)
class AuditRun:
    """One audit's results."""

    started: dt.datetime
    pairs: list[Pair]
    policies: tuple[CompiledPolicy, ...]
    counts: dict[str, AuditCounts]
    seconds: float

    @property
    def objects(self) -> int:
        return len(self.pairs)


@dataclass
class Auditor:
    kube: KubeLike
    assessors: Assessors
    clock: Callable[[], dt.datetime]
    pull_secrets: PullSecrets | None = None
    namespace: str | None = None  # audit one namespace only (the CLI's --namespace)
    budget: float = 60.0
    batch: int = 50
    identity: str = "baseguard"
    events_per_run: int = 200
    policy_reports: bool = True
    ledger: EventLedger = field(default_factory=lambda: EventLedger(dt.timedelta(hours=1)))

    # ---- reading and judging

    async def collect(self) -> list[Audited]:
        """Every object to audit, listed kind by kind (a kind the API refuses is skipped, and said)."""
        out: list[Audited] = []
        for resource in AUDITED:
            try:
                items = await self.kube.list(resource.path(self.namespace), kind=resource.kind)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _status(exc) in (401, 0, None):
                    raise
                log.warning(
                    "cannot list for the audit; skipped",
                    extra={"fields": {"kind": resource.kind, "error": str(exc)}},
                )
                continue
            out.extend(plan.audited_objects(resource, items))
        return out

    async def namespace_labels(self) -> dict[str, Mapping[str, str]]:
        if self.namespace is not None:
            try:
                ns = await self.kube.get(object_path("namespaces", self.namespace))
            except Exception:
                return {}
            return {self.namespace: dict((ns.get("metadata") or {}).get("labels") or {})}
        found = await self.kube.list("/api/v1/namespaces", kind="Namespace")
        return {
            str(n["metadata"]["name"]): dict((n.get("metadata") or {}).get("labels") or {})
            for n in found
            if isinstance(n.get("metadata"), Mapping) and n["metadata"].get("name")
        }

    async def assess(
        self,
        objects: Sequence[Audited],
        policies: Sequence[CompiledPolicy],
        *,
        now: dt.datetime,
        namespace_labels: Mapping[str, Mapping[str, str]],
    ) -> list[Pair]:
        """Every object through the assessor of its credential set, ``batch`` at a time."""
        groups: dict[Any, tuple[Assessor, list[Audited]]] = {}
        for item in objects:
            creds: Mapping[str, Any] = {}
            if self.pull_secrets is not None:
                creds = await self.pull_secrets.for_pod(item.ref.namespace, item.pod_spec)
            key = fingerprint(creds)
            if key not in groups:
                groups[key] = (self.assessors.for_credentials(creds), [])
            groups[key][1].append(item)
        pairs: list[Pair] = []
        for assessor, members in groups.values():
            for start in range(0, len(members), max(self.batch, 1)):
                chunk = members[start : start + max(self.batch, 1)]
                results = await assessor.assess(
                    [a.workload for a in chunk],
                    policies,
                    now=now,
                    namespace_labels=namespace_labels,
                    budget=self.budget,
                )
                pairs.extend(zip(chunk, results, strict=True))
        return pairs

    async def run(
        self,
        policies: Sequence[CompiledPolicy],
        *,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> AuditRun:
        started = self.clock()
        clock = time.perf_counter()
        objects = await self.collect()
        labels = namespace_labels if namespace_labels is not None else await self.namespace_labels()
        pairs = await self.assess(objects, policies, now=started, namespace_labels=labels)
        counts = plan.policy_counts(pairs, policies)
        return AuditRun(started, pairs, tuple(policies), counts, time.perf_counter() - clock)

    # ---- writing (the leader)

    async def publish(self, run: AuditRun, book: PolicyBook) -> None:
        await self._statuses(run, book)
        await self._events(run)
        if self.policy_reports:
            await self._reports(run)

    async def _statuses(self, run: AuditRun, book: PolicyBook) -> None:
        for key, counts in run.counts.items():
            record = book.get(key)
            if record is None:
                continue
            try:
                await self.kube.patch(record.path, audit_patch(counts, last_run=run.started))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _status(exc) != 404:
                    log.warning(
                        "cannot write status.audit",
                        extra={"fields": {"policy": record.title, "error": str(exc)}},
                    )

    async def _events(self, run: AuditRun) -> None:
        now = self.clock()
        found = events.event_findings(run.pairs)
        self.ledger.keep_only(events.event_key(f) for f in found)
        posted = 0
        for finding in found:
            key = events.event_key(finding)
            if not self.ledger.due(key, now):
                continue
            if posted >= self.events_per_run:
                log.info(
                    "event budget of this audit used up; the rest follow next time",
                    extra={"fields": {"left": len(found) - posted}},
                )
                break
            first, count = self.ledger.next_count(key, now)
            body = events.event_body(
                finding, now=now, first=first, count=count, instance=self.identity
            )
            namespace = body["metadata"]["namespace"]
            try:
                try:
                    await self.kube.create(f"/api/v1/namespaces/{namespace}/events", body)
                except Exception as exc:
                    if _status(exc) != 409:
                        raise
                    existing = await self.kube.get(
                        f"/api/v1/namespaces/{namespace}/events/{body['metadata']['name']}"
                    )
                    count = int(existing.get("count") or 1) + 1
                    first_seen = existing.get("firstTimestamp") or body["firstTimestamp"]
                    await self.kube.patch(
                        f"/api/v1/namespaces/{namespace}/events/{body['metadata']['name']}",
                        {
                            "count": count,
                            "lastTimestamp": body["lastTimestamp"],
                            "message": body["message"],
                        },
                    )
                    first = dt.datetime.fromisoformat(str(first_seen).replace("Z", "+00:00"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "cannot post an audit Event",
                    extra={"fields": {"object": finding.ref.title, "error": str(exc)}},
                )
                continue
            self.ledger.posted(key, first=first, now=now, count=count)
            posted += 1

    async def report_apis(self) -> list[reports.ReportApi]:
        """The report APIs this cluster serves (discovery needs no RBAC), in writing order."""
        found: list[reports.ReportApi] = []
        for api in reports.REPORT_APIS:
            try:
                listing = await self.kube.get(f"/apis/{api.group}/{api.version}")
            except Exception:
                continue
            names = {
                r.get("name") for r in listing.get("resources") or [] if isinstance(r, Mapping)
            }
            if api.plural in names:
                found.append(api)
        return found

    async def reports_installed(self) -> bool:
        return bool(await self.report_apis())

    async def _reports(self, run: AuditRun) -> None:
        apis = await self.report_apis()
        if not apis:
            return
        results = reports.report_results(run.pairs, now=run.started)
        wanted = {ns: r for ns, r in results.items() if r}
        for api in apis:
            for namespace, entries in wanted.items():
                body = reports.report_body(namespace, entries, api=api)
                try:
                    await self._upsert(
                        api.path(namespace, reports.REPORT_NAME), api.path(namespace), body
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "cannot write a PolicyReport",
                        extra={
                            "fields": {
                                "namespace": namespace,
                                "api": api.api_version,
                                "error": str(exc),
                            }
                        },
                    )
            await self._drop_stale_reports(api, set(wanted))

    async def _upsert(self, path: str, collection: str, body: dict[str, Any]) -> None:
        try:
            existing = await self.kube.get(path)
        except Exception as exc:
            if _status(exc) != 404:
                raise
            await self.kube.create(collection, body)
            return
        body["metadata"]["resourceVersion"] = (existing.get("metadata") or {}).get(
            "resourceVersion"
        )
        await self.kube.replace(path, body)

    async def _drop_stale_reports(self, api: reports.ReportApi, keep: set[str | None]) -> None:
        selector = {"labelSelector": "app.kubernetes.io/managed-by=baseguard"}
        stale: list[str] = []
        try:
            if self.namespace is None:
                for item in await self.kube.list(api.every_namespace, params=selector):
                    meta = item.get("metadata") or {}
                    if meta.get("name") == reports.REPORT_NAME and meta.get("namespace") not in keep:
                        stale.append(api.path(meta.get("namespace"), reports.REPORT_NAME))
                for item in await self.kube.list(api.path(None), params=selector):
                    meta = item.get("metadata") or {}
                    if meta.get("name") == reports.REPORT_NAME and None not in keep:
                        stale.append(api.path(None, reports.REPORT_NAME))
            for path in stale:
                await self.kube.delete(path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "cannot tidy old PolicyReports",
                extra={"fields": {"api": api.api_version, "error": str(exc)}},
            )
