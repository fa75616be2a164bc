"""Prometheus metrics of the webhook, on a registry of its own.

Each :class:`Metrics` owns a :class:`CollectorRegistry`: prometheus-client's
global default registry is process state, which two apps in one test process
(or the bench's server and floor) would share and collide in.

Gauges that describe state owned elsewhere (the policy store, the registry
client's counters) are read at scrape time through callbacks, so they can never
drift from what they describe and cost nothing per request.

The two figures every review updates (requests by verdict, latency) are kept
as plain numbers and turned into metric families at scrape time
(:class:`_Answers`): a prometheus-client child takes a lock per increment,
and the two of them cost about as much as the rest of answering a cached
review. The event loop is their only writer.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from controller.policy.store import Snapshot

#: Latency buckets from half a millisecond (a cached review) to the longest budget.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: How prometheus-client writes a bucket bound (``0.0005``, ``1.0``); it is not typed.
_go_float: Callable[[float], str] = floatToGoString


class RegistryStats(Protocol):
    """The registry client's counters (``RegistryClient.stats``), as far as metrics read them."""

    total: int
    cache_hits: int
    cache_misses: int
    coalesced: int

    @property
    def by_kind(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def rate_limited(self) -> Mapping[str, int]: ...

    @property
    def held_off(self) -> Mapping[str, int]: ...


StatsSource = Callable[[], RegistryStats]


class _Callbacks:
    """A collector that asks its sources at scrape time."""

    def __init__(
        self, snapshot: Callable[[], Snapshot] | None, registry_stats: StatsSource | None
    ) -> None:
        self._snapshot = snapshot
        self._stats = registry_stats

    def collect(self) -> Iterator[Metric]:
        if self._snapshot is not None:
            snap = self._snapshot()
            gauge = GaugeMetricFamily(
                "baseguard_policies",
                "Policies known to the webhook, by state (error: a source that failed to "
                "compile; its last good version, if any, stays in force).",
                labels=["state"],
            )
            gauge.add_metric(["ready"], len(snap.policies))
            gauge.add_metric(["error"], len(snap.errors))
            yield gauge
            yield GaugeMetricFamily(
                "baseguard_policy_generation",
                "How many times the policy store has changed since start.",
                value=snap.generation,
            )
        if self._stats is not None:
            yield from _registry_metrics(self._stats())

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only


def _registry_metrics(stats: RegistryStats) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "baseguard_registry_requests",
        "HTTP requests the registry client sent, by method and what was asked for.",
        labels=["method", "kind"],
    )
    for (method, kind), count in sorted(stats.by_kind.items()):
        requests.add_metric([method, kind], count)
    yield requests
    for name, counts, text in (
        ("rate_limited", stats.rate_limited, "Registry answers that were HTTP 429 (rate limit), by registry host."),
        (
            "rate_limit_holds",
            stats.held_off,
            "Requests not sent because the registry's rate limit had not reset yet, by registry host.",
        ),
    ):
        family = CounterMetricFamily(f"baseguard_registry_{name}", text, labels=["registry"])
        for host, count in sorted(counts.items()):
            family.add_metric([host], count)
        yield family
    for name, value, text in (
        ("cache_hits", stats.cache_hits, "Registry lookups answered from the client's cache."),
        (
            "cache_misses",
            stats.cache_misses,
            "Registry lookups that had to ask (or join an asker).",
        ),
        ("coalesced", stats.coalesced, "Lookups that joined an identical one already in flight."),
    ):
        yield CounterMetricFamily(f"baseguard_registry_{name}", text, value=value)


class _Answers:
    """Reviews answered (by endpoint, kind, verdict) and their latency (by endpoint)."""

    REQUESTS = "baseguard_admission_requests"
    DURATION = "baseguard_admission_duration_seconds"

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.requests: dict[tuple[str, str, str], int] = {}
        # per endpoint: a count per bucket (the last one is +Inf), and the sum of seconds
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def count(self, endpoint: str, kind: str, verdict: str) -> None:
        key = (endpoint, kind, verdict)
        self.requests[key] = self.requests.get(key, 0) + 1

    def observe(self, endpoint: str, seconds: float) -> None:
        found = self.latency.get(endpoint)
        if found is None:
            found = self.latency[endpoint] = ([0] * (len(self.bounds) + 1), [0.0])
        counts, total = found
        counts[bisect.bisect_left(self.bounds, seconds)] += 1  # le: bound >= seconds
        total[0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            self.REQUESTS,
            "Admission reviews answered, by endpoint, object kind and verdict "
            "(allow, audit, warn, deny; error: an internal failure answered safely; "
            "invalid: HTTP 400/413; busy: HTTP 429, too many reviews in flight; "
            "unauthorized: no allowed client certificate).",
            labels=["endpoint", "kind", "verdict"],
        )
        for key, n in sorted(self.requests.items()):
            requests.add_metric(list(key), n)
        yield requests
        duration = HistogramMetricFamily(
            self.DURATION,
            "Time from the request's arrival to its answer, by endpoint.",
            labels=["endpoint"],
        )
        les = [_go_float(b) for b in self.bounds] + ["+Inf"]
        for endpoint, (counts, total) in sorted(self.latency.items()):
            cumulative = list(itertools.accumulate(counts))
            duration.add_metric([endpoint], list(zip(les, cumulative, strict=True)), total[0])
        yield duration

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only


class Metrics:
    """The webhook's counters and histograms."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], Snapshot] | None = None,
        registry_stats: StatsSource | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._answers = _Answers(LATENCY_BUCKETS)
        self.registry.register(self._answers)
        self.violations = Counter(
            "baseguard_admission_violations",
            "Violations found in admitted (non-dry-run) reviews, by policy, rule and action.",
            ["policy", "rule", "action"],
            registry=self.registry,
        )
        self.patches = Counter(
            "baseguard_admission_patches",
            "JSONPatch operations returned by /mutate, by kind (pin: image rewritten to "
            "tag@digest; annotate: checked digests recorded on a Pod).",
            ["kind"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "baseguard_connections_closed",
            "Connections the webhook closed to keep its bounds, by reason (slow-headers: "
            "no whole request head in time; over-limit: more connections than allowed).",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_Callbacks(snapshot, registry_stats))
        # labelled children, looked up once: ``labels()`` takes a lock and builds a tuple
        self._violations: dict[tuple[str, str, str], Any] = {}
        self._patches: dict[str, Any] = {}

    def answered(self, endpoint: str, kind: str, verdict: str, seconds: float) -> None:
        """Count one answered review and its latency."""
        self._answers.count(endpoint, kind, verdict)
        self._answers.observe(endpoint, seconds)

    def refused(self, endpoint: str, verdict: str = "invalid") -> None:
        """Count one request refused before review, no kind: ``invalid`` (HTTP 400/413),
        ``busy`` (HTTP 429: too many reviews in flight), ``unauthorized`` (HTTP 401/403:
        no allowed client certificate)."""
        self._answers.count(endpoint, "", verdict)

    def connection_closed(self, reason: str) -> None:
        """Count one connection closed by the listener's bounds."""
        self.connections_closed.labels(reason).inc()

    def violated(self, policy: str, rule: str, action: str, count: int = 1) -> None:
        """Count ``count`` violations in an admitted review."""
        key = (policy, rule, action)
        counter = self._violations.get(key)
        if counter is None:
            counter = self._violations[key] = self.violations.labels(policy, rule, action)
        counter.inc(count)

    def patched(self, kind: str) -> None:
        """Count one JSONPatch operation returned by /mutate."""
        counter = self._patches.get(kind)
        if counter is None:
            counter = self._patches[kind] = self.patches.labels(kind)
        counter.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value (tests and the bench): ``sample("baseguard_policies", {"state": "ready"})``."""
        value: Any = self.registry.get_sample_value(name, dict(labels or {}))
        return None if value is None else float(value)
