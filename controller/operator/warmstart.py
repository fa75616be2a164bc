"""Warm start: the leader pre-resolves the images of running pods into admission's caches.

Every process starts with empty memories, so the first reviews after a rollout
or a restart would each ask the registry for everything (and N new replicas N
times, against Docker Hub's pull limits and ECR/GAR throttling). Once the
policies are loaded and this replica leads, :class:`WarmStart` lists the
running (and pending) pods and judges each distinct image once, through the
webhook's own assessor — the same lookups a review of that pod would make, so
they land in the very caches reviews read: the lineage memory, the signature
results, the registry client's cache and, when configured, the shared tier
(where the other replicas find them).

Bounded: image lookups start at most ``rate`` per second (a token bucket with
a burst of one) and ``concurrency`` at a time; each is its own review with its
own :class:`~controller.lineage.budget.ReviewBudget` and ``budget`` seconds, so
the warm start never spends a real review's allowance. A failing registry is
logged and counted (``baseguard_warm_start_images_total{outcome="failed"}``),
never raised: the operator goes on, and the reviews ask again.

Isolation: an image is looked up with the pull secrets of the pod that runs
it, in that pod's namespace (:meth:`PullSecrets.for_pod`, as the audit and the
webhook read them), and judged under that namespace's policies; the bound
assessor is the one the webhook hands out for that credential set
(:func:`controller.memo.bind_credentials`), whose memories are its own. Below
it, the registry client keeps failures per credential set and shares verified
content and tag → digest answers between sets, as it does for reviews (they are
the registry's answers, checked by digest; the shared tier keys tag answers by
the credential fingerprint too). What one namespace's pods warm is what a review
in that namespace, with those credentials, would have stored itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from controller.assess import Assessor
from controller.memo import bind_credentials, lineage_ok, trust_ok
from controller.operator.audit.runner import Throttle
from controller.operator.credentials import PullSecrets, fingerprint
from controller.operator.kube import KubeLike
from controller.policy.model import CompiledPolicy
from controller.registry.config import Credentials
from controller.workloads import Workload, extract

log = logging.getLogger("baseguard.operator.warmstart")

#: Pod phases whose images a rollout or restart will be asked about again.
PHASES = frozenset({"Running", "Pending"})
#: ``outcome`` label values: resolved into the caches; a lookup failed (or ran out of
#: its budget); no policy needs a lookup for the image (nothing to warm).
OUTCOMES = ("warm", "failed", "skipped")


@dataclass
class WarmStartSummary:
    """What one warm start did (the end-of-run log line; tests read it)."""

    images: Counter[str] = field(default_factory=Counter)
    """Distinct (namespace, credentials, image) by outcome."""
    requests: int = 0
    """Registry requests the client sent meanwhile (the webhook's, if it was asked, included)."""
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.images.values())


@dataclass(frozen=True)
class _Item:
    namespace: str | None
    credentials: Mapping[str, Credentials]
    workload: Workload  # the pod, with this one image


class WarmStart:
    """The leader's one pass over the running pods' images (see the module docstring)."""

    def __init__(
        self,
        *,
        kube: KubeLike,
        assessor: Assessor,
        policies: Callable[[], Sequence[CompiledPolicy]],
        namespace_labels: Callable[[], Mapping[str, Mapping[str, str]]],
        pull_secrets: PullSecrets | None,
        rate: float,
        concurrency: int = 4,
        budget: float = 30.0,
        requests: Callable[[], int] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.kube = kube
        self.assessor = assessor
        self.policies = policies
        self.namespace_labels = namespace_labels
        self.pull_secrets = pull_secrets
        self.throttle = Throttle(rate, burst=1)
        self.concurrency = max(concurrency, 1)
        self.budget = budget
        self.requests = requests
        self.clock = clock
        self.counts: Counter[str] = Counter()
        """Images by outcome over this process's warm starts (the metric)."""
        self.last: WarmStartSummary | None = None

    def collector(self) -> Collector:
        """``baseguard_warm_start_images_total{outcome}`` (register it with the webhook's metrics)."""
        return _Collector(self.counts)

    async def run(self) -> WarmStartSummary:
        """List, resolve, log one line; never raises (but for cancellation)."""
        started = time.perf_counter()
        before = self.requests() if self.requests is not None else 0
        summary = WarmStartSummary()
        try:
            items = await self._items()
            await self._resolve(items, summary)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("warm start stopped early", extra={"fields": {"error": str(exc)}})
        summary.seconds = time.perf_counter() - started
        summary.requests = (self.requests() if self.requests is not None else 0) - before
        self.last = summary
        log.info(
            "warm start done",
            extra={
                "fields": {
                    "images": summary.total,
                    **{o: summary.images[o] for o in OUTCOMES},
                    "requests": summary.requests,
                    "seconds": round(summary.seconds, 3),
                }
            },
        )
        return summary

    async def _items(self) -> list[_Item]:
        """Each distinct (namespace, credential set, image) of the running pods, first pod's shape."""
        pods = await self.kube.list("/api/v1/pods", kind="Pod")
        seen: set[tuple[str | None, frozenset[tuple[str, Credentials]], str]] = set()
        out: list[_Item] = []
        for pod in pods:
            status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
            assert isinstance(status, Mapping)
            if status.get("phase") not in PHASES:
                continue
            spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
            assert isinstance(spec, Mapping)
            obj = {"apiVersion": "v1", "kind": "Pod", **pod}
            for workload in extract(obj, source="cluster"):
                creds: Mapping[str, Credentials] = {}
                if self.pull_secrets is not None and workload.images:
                    try:
                        creds = await self.pull_secrets.for_pod(workload.namespace, spec)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # its images are looked up as a review without them would be
                        log.debug("warm start: pull secrets unreadable: %s", exc)
                for image in workload.images:
                    key = (workload.namespace, fingerprint(creds), image.image)
                    if not image.image or key in seen:
                        continue
                    seen.add(key)
                    out.append(_Item(workload.namespace, creds, replace(workload, images=(image,))))
        return out

    async def _resolve(self, items: Sequence[_Item], summary: WarmStartSummary) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []

        async def one(item: _Item) -> None:
            try:
                outcome = await self._one(item)
            finally:
                gate.release()
            summary.images[outcome] += 1
            self.counts[outcome] += 1

        try:
            for item in items:
                await gate.acquire()
                await self.throttle.take()
                tasks.append(asyncio.create_task(one(item)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _one(self, item: _Item) -> str:
        policies = self.policies()
        assessor = bind_credentials(self.assessor, item.credentials)
        try:
            (result,) = await assessor.assess(
                [item.workload],
                policies,
                now=self.clock(),
                namespace_labels=self.namespace_labels(),
                budget=self.budget,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("warm start: %s failed: %s", item.workload.images[0].image, exc)
            return "failed"
        facts = [r.facts for r in result.results]
        if all(f.lineage is None and not f.trust for f in facts):
            return "skipped"
        if all(lineage_ok(f.lineage) and trust_ok(f.trust) for f in facts):
            return "warm"
        failures = [
            why
            for f in facts
            if f.lineage is not None
            for why in (f.lineage.failure, *(p.failure for p in f.lineage.platforms))
            if why
        ]
        log.debug("warm start: %s not warmed: %s", item.workload.images[0].image, failures)
        return "failed"


class _Collector(Collector):
    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "baseguard_warm_start_images",
            "Distinct running images the leader pre-resolved at start-up, by outcome: warm "
            "(in the caches), failed (a lookup failed or ran out of budget), skipped (no "
            "policy needs a lookup for it).",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            family.add_metric([outcome], self._counts[outcome])
        yield family

