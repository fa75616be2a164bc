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
import json
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


@dataclass
class ReportWrites:
    """What one audit did to the reports: the figures ``bench/audit_scale.py`` prints."""

    written: int = 0
    """Report objects created or replaced."""
    bytes: int = 0
    """Their JSON, in bytes."""
    unchanged: int = 0
    """Parts whose content was already in the cluster (not written)."""
    deleted: int = 0
    """Reports of namespaces or parts no longer needed."""


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
    writes: Throttle = field(default_factory=lambda: Throttle(20.0))
    """Paces the audit's writes to the apiserver (reports, Events, status)."""
    status_refresh: dt.timedelta = dt.timedelta(hours=1)
    """``status.audit`` is rewritten when its figures change, or its ``lastRun`` is this old."""
    last_writes: ReportWrites = field(default_factory=ReportWrites)
    """The report writes of the last :meth:`publish`."""
    status_writes: int = 0
    """``status.audit`` patches of the last :meth:`publish`."""
    events_posted: int = 0
    """Events created or updated by the last :meth:`publish` (at most :attr:`events_per_run`)."""

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
        self.status_writes = 0
        for key, counts in run.counts.items():
            record = book.get(key)
            if record is None:
                continue
            if not self._status_due(record.status, counts, run.started):
                continue
            try:
                await self.writes.take()
                await self.kube.patch(record.path, audit_patch(counts, last_run=run.started))
                self.status_writes += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _status(exc) != 404:
                    log.warning(
                        "cannot write status.audit",
                        extra={"fields": {"policy": record.title, "error": str(exc)}},
                    )

    def _status_due(
        self, status: Mapping[str, Any] | None, counts: AuditCounts, started: dt.datetime
    ) -> bool:
        """True when ``status.audit`` says other figures, or its ``lastRun`` is :attr:`status_refresh` old."""
        audit = (status or {}).get("audit") if isinstance(status, Mapping) else None
        if not isinstance(audit, Mapping):
            return True
        if (audit.get("objects"), audit.get("violations")) != (counts.objects, counts.violations):
            return True
        try:
            last = dt.datetime.fromisoformat(str(audit.get("lastRun")).replace("Z", "+00:00"))
        except ValueError:
            return True
        if last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        return started - last >= self.status_refresh

    async def _events(self, run: AuditRun) -> None:
        now = self.clock()
        found = events.event_findings(run.pairs)
        self.ledger.keep_only(events.event_key(f) for f in found)
        posted = self.events_posted = 0
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
                await self.writes.take()
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
            self.events_posted = posted

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
        """Write the reports that changed, delete the ones no longer wanted; nothing else.

        One listing per API (baseguard's own reports, by label) says what the
        cluster holds and each part's content digest; a part whose digest is
        the one it would get is not written, so an audit that found what the
        last one found writes no report at all. Every write waits for
        :attr:`writes` (the apiserver is not flooded when a thousand
        namespaces change at once).
        """
        apis = await self.report_apis()
        stats = ReportWrites()
        self.last_writes = stats
        if not apis:
            return
        results = reports.report_results(run.pairs, now=run.started)
        wanted = {ns: r for ns, r in results.items() if r}
        for api in apis:
            try:
                held = await self._held_reports(api)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "cannot list PolicyReports; none written this time",
                    extra={"fields": {"api": api.api_version, "error": str(exc)}},
                )
                continue
            keep: set[tuple[str | None, str]] = set()
            for namespace, entries in wanted.items():
                for body in reports.report_bodies(namespace, entries, api=api):
                    name = body["metadata"]["name"]
                    keep.add((namespace, name))
                    old = held.get((namespace, name))
                    digest = body["metadata"]["annotations"][reports.DIGEST_ANNOTATION]
                    if old is not None and old[0] == digest:
                        stats.unchanged += 1
                        continue
                    try:
                        await self._write_report(api, namespace, body, old[1] if old else None, stats)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning(
                            "cannot write a PolicyReport",
                            extra={
                                "fields": {
                                    "namespace": namespace,
                                    "name": name,
                                    "api": api.api_version,
                                    "error": str(exc),
                                }
                            },
                        )
            for where in sorted(set(held) - keep, key=lambda k: (k[0] or "", k[1])):
                try:
                    await self.writes.take()
                    await self.kube.delete(api.path(where[0], where[1]))
                    stats.deleted += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if _status(exc) != 404:
                        log.warning(
                            "cannot tidy an old PolicyReport",
                            extra={"fields": {"api": api.api_version, "error": str(exc)}},
                        )

    async def _held_reports(
        self, api: reports.ReportApi
    ) -> dict[tuple[str | None, str], tuple[str | None, str | None]]:
        """(namespace, name) → (content digest, resourceVersion) of baseguard's reports in the cluster.

        Only objects with baseguard's label *and* a part name: a report someone
        else wrote is never compared, replaced or deleted.
        """
        selector = {"labelSelector": "app.kubernetes.io/managed-by=baseguard"}
        paths: list[tuple[str, bool]] = [
            (api.every_namespace if self.namespace is None else api.path(self.namespace), True)
        ]
        if self.namespace is None:
            paths.append((api.path(None), False))
        held: dict[tuple[str | None, str], tuple[str | None, str | None]] = {}
        for path, namespaced in paths:
            for item in await self.kube.list(path, params=selector):
                meta = item.get("metadata") or {}
                if not reports.is_part_name(meta.get("name")):
                    continue
                where = (str(meta.get("namespace")) if namespaced else None, str(meta["name"]))
                annotations = meta.get("annotations") or {}
                held[where] = (annotations.get(reports.DIGEST_ANNOTATION), meta.get("resourceVersion"))
        return held

    async def _write_report(
        self,
        api: reports.ReportApi,
        namespace: str | None,
        body: dict[str, Any],
        version: str | None,
        stats: ReportWrites,
    ) -> None:
        """Create, or replace at the listed resourceVersion (on a conflict: read it once, again)."""
        name = body["metadata"]["name"]
        size = len(json.dumps(body, separators=(",", ":")))
        await self.writes.take()
        if version is None:
            try:
                await self.kube.create(api.path(namespace), body)
                stats.written += 1
                stats.bytes += size
                return
            except Exception as exc:
                if _status(exc) != 409:
                    raise
            version = ((await self.kube.get(api.path(namespace, name))).get("metadata") or {}).get(
                "resourceVersion"
            )
        for attempt in range(2):
            body["metadata"]["resourceVersion"] = version
            try:
                await self.kube.replace(api.path(namespace, name), body)
                stats.written += 1
                stats.bytes += size
                return
            except Exception as exc:
                if _status(exc) != 409 or attempt:
                    raise
            version = ((await self.kube.get(api.path(namespace, name))).get("metadata") or {}).get(
                "resourceVersion"
            )
