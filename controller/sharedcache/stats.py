"""The shared tier's counters, and the Prometheus collector that reads them at scrape time.

Plain integers (one event loop, no locks), like the registry client's: a lookup
pays an increment, never a prometheus-client lock. Every family is written with
each of its label values, zeros included, so a dashboard's query names a series
that exists from the start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LOOKUP_RESULTS = ("hit", "miss")
REJECT_REASONS = ("mac", "expired", "malformed", "digest")
FALLBACK_REASONS = ("timeout", "error", "open")
CLAIM_RESULTS = ("led", "busy")


@dataclass
class SharedCacheStats:
    lookups: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    claims: Counter[str] = field(default_factory=Counter)
    writes: int = 0


class SharedCacheCollector:
    """``baseguard_shared_cache_*``, read from a :class:`SharedCacheStats` when scraped."""

    def __init__(self, stats: SharedCacheStats, circuit_open: Callable[[], bool]) -> None:
        self._stats = stats
        self._open = circuit_open

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        for name, counts, labels, label, text in (
            ("lookups", stats.lookups, LOOKUP_RESULTS, "result",
             "Reads of the shared cache tier that found an authenticated entry (hit) or none (miss)."),
            ("rejected", stats.rejected, REJECT_REASONS, "reason",
             "Shared cache entries ignored: no valid MAC, past their signed lifetime, not an "
             "entry, or a body that does not hash to its digest."),
            ("fallbacks", stats.fallbacks, FALLBACK_REASONS, "reason",
             "Shared cache calls that did not answer in time, failed, or were skipped while the "
             "circuit breaker was open: the lookup went on without the tier."),
            ("claims", stats.claims, CLAIM_RESULTS, "result",
             "Cross-replica single-flight: lookups this process claimed to fetch for all (led; "
             "it found the answer instead when that had landed just before its claim), claims "
             "refused because another process was fetching (busy)."),
        ):
            family = CounterMetricFamily(f"baseguard_shared_cache_{name}", text, labels=[label])
            for value in labels:
                family.add_metric([value], counts[value])
            yield family
        yield CounterMetricFamily(
            "baseguard_shared_cache_writes", "Entries written to the shared cache tier.", value=stats.writes
        )
        yield GaugeMetricFamily(
            "baseguard_shared_cache_circuit_open",
            "1 while the shared cache's circuit breaker is open (the tier is not asked).",
            value=1 if self._open() else 0,
        )

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only
