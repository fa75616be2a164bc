"""Memoised assessment: the same question within seconds gets the same answer.

It sits beside :mod:`controller.assess` because the webhook, ``serve`` and
the operator's audit all wrap the one Assessor with it; it used to live in
``webhook/`` and made the operator import webhook internals.

A Deployment rollout asks about the same images many times in a few seconds:
the Deployment, its ReplicaSet, then every Pod. Each answer is a pure function
of (policies, object facts, image lineage, today), and the registry client
already caches what it fetched, but walking a warm lineage and evaluating it
again still costs ~1 ms per image. Two layers of memory remove that:

* :class:`MemoResolver` remembers each successful :class:`Lineage` for ``ttl``
  seconds and lets concurrent callers share one resolution (a caller whose
  budget runs out does not cancel it for the others; when the last caller
  has gone, the resolution is cancelled: nobody is left to read it, and a
  review that has been answered must leave no lookups running).
* :class:`MemoAssessor` remembers each workload's results for ``ttl`` seconds,
  keyed by everything evaluation reads (kind, namespace, labels, namespace
  labels, images with their containers and paths, the date). A new policy
  snapshot empties it: the policies are compared by identity, and every store
  change publishes a new tuple.

* :meth:`MemoAssessor.judged` holds whole reviews' results under a key the
  webhook makes from the review's bytes
  (:func:`controller.webhook.review.memo_key`), so a repeated review skips
  even extracting its workload (on a warm cache that was most of a review's
  cost), and reviews with one key that arrive together are judged once.

Neither remembers a failure: a lookup that failed or ran out of budget is
asked again by the next review, so a registry that recovers is seen at once.
The staleness they add is bounded by ``ttl`` (default 5 s) on top of the
registry client's tag TTL (30 s): a base tag that moves is noticed at most
that much later. Their maps and flights are :mod:`controller.caching`'s
(LRU-bounded, one single-flight for the controller); nothing is shared
between processes.

**Credentials.** A review may bring registry credentials (a pod's pull
secrets): :meth:`MemoAssessor.for_credentials` hands out an assessor bound to
that credential set, with memories of its own, so a result judged with one
set of credentials is never recalled for another, and a lookup in flight for
one set is never joined by another (an anonymous 401 must not answer a
request that has the password). What the registry client keeps below that is
its business: verified content and tag → digest answers are shared between
credential sets by design (see :mod:`controller.registry.client`), failures
are not.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from controller.assess import Assessor, WorkloadResult
from controller.caching import Instances, SingleFlight, TTLMap
from controller.lineage.budget import Bounds, ReviewBudget
from controller.lineage.catalog import Catalog
from controller.lineage.images import ClaimSource, RegistryClient
from controller.lineage.model import DEFAULT_MAX_DEPTH, End, Lineage
from controller.lineage.resolve import LineageKey, LineageResolver, lineage_key
from controller.lineage.signatures import SignatureChecker
from controller.policy.facts import ObjectFacts
from controller.policy.model import CompiledPolicy
from controller.reference import Reference
from controller.registry.client import RegistryClient as HttpRegistryClient
from controller.workloads import Workload

if TYPE_CHECKING:
    from controller.registry.config import Credentials

DEFAULT_TTL = 5.0
DEFAULT_ENTRIES = 4096
DEFAULT_CREDENTIAL_SETS = 64


def lineage_ok(lineage: Lineage | None) -> bool:
    """A lineage worth remembering: looked up, and no part of it failed."""
    if lineage is None:
        return True
    return lineage.failure is None and all(
        p.end is not End.LOOKUP_FAILED for p in lineage.platforms
    )


def trust_ok(answers: Mapping[Any, Any]) -> bool:
    """Signature answers worth remembering: none failed (registry trouble, a bound, a missing root)."""
    return all(getattr(a, "failure", None) is None for a in answers.values())


class MemoResolver(LineageResolver):
    """A :class:`LineageResolver` that remembers successful lineages for ``ttl`` seconds."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        catalog: Catalog | None = None,
        sources: Sequence[ClaimSource] | None = None,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, catalog=catalog, sources=sources)
        self.memo: TTLMap[LineageKey, Lineage] = TTLMap(ttl=ttl, max_entries=max_entries, clock=clock)
        self._flights: SingleFlight[LineageKey, Lineage] = SingleFlight()

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
        found = self.memo.get(key)
        if found is not None:
            return found
        resolve = super().resolve

        async def resolved() -> Lineage:
            lineage = await resolve(
                ref, max_depth=max_depth, platforms=platforms, catalog=catalog, budget=budget
            )
            if lineage_ok(lineage):
                self.memo.put(key, lineage)
            return lineage

        return await self._flights.run(key, resolved)


WorkloadKey = tuple[Hashable, ...]


def workload_key(
    workload: Workload, labels: Mapping[str, Mapping[str, str]], today: dt.date
) -> WorkloadKey:
    """Everything evaluation reads about a workload, except its name (matching never uses it)."""
    ns = workload.namespace
    ns_labels = labels.get(ns) if ns is not None else None
    return (
        workload.kind,
        ns,
        tuple(sorted(workload.labels.items())),
        tuple(sorted(ns_labels.items())) if ns_labels is not None else None,
        tuple((i.container, i.image, i.path, i.section, i.role) for i in workload.images),
        today,
    )


class MemoAssessor(Assessor):
    """An :class:`Assessor` that remembers each workload's results for ``ttl`` seconds.

    Results are remembered only when every lineage in them is complete; a
    workload is re-assessed when the policies change (by identity).
    """

    def __init__(
        self,
        resolver: LineageResolver | None = None,
        *,
        budget: float = 8.0,
        bounds: Bounds | None = None,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        max_credential_sets: int = DEFAULT_CREDENTIAL_SETS,
        trusted_roots: Mapping[str, Any] | None = None,
    ) -> None:
        signatures = (
            SignatureChecker(resolver.client, roots=trusted_roots) if resolver is not None else None
        )
        super().__init__(resolver, budget=budget, bounds=bounds, signatures=signatures)
        self.trusted_roots = dict(trusted_roots or {})
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.max_credential_sets = max_credential_sets
        self.memo: TTLMap[WorkloadKey, WorkloadResult] = TTLMap(
            ttl=ttl, max_entries=max_entries, clock=clock
        )
        self.reviews: TTLMap[Hashable, tuple[WorkloadResult, ...]] = TTLMap(
            ttl=ttl, max_entries=max_entries, clock=clock
        )
        self._judging: SingleFlight[Hashable, list[WorkloadResult]] = SingleFlight()
        self._policies: Sequence[CompiledPolicy] | None = None
        self._by_credentials: Instances[frozenset[tuple[str, Credentials]], MemoAssessor] = (
            Instances(self._bound, max_entries=max_credential_sets)
        )

    def _policies_are(self, policies: Sequence[CompiledPolicy]) -> None:
        """Forget everything judged under other policies (every store change is a new tuple)."""
        if policies is not self._policies:
            self.memo.clear()
            self.reviews.clear()
            self._judging.forget()  # flights under way finish for their own callers only
            self._policies = policies

    async def judged(
        self,
        key: Hashable,
        policies: Sequence[CompiledPolicy],
        judge: Callable[[], Awaitable[list[WorkloadResult]]],
    ) -> list[WorkloadResult]:
        """A whole review's results under ``key`` (made by the caller from the review).

        Remembered ones if fresh; else those of a review with the same key
        being judged right now (the pods of a rollout arrive together: one is
        judged, the others wait for it); else ``judge()``'s, remembered for
        ``ttl`` when every lookup in them succeeded. The results' workloads
        carry the name of the review that was judged; nothing the webhook
        answers reads it.
        """
        self._policies_are(policies)
        found = self.reviews.get(key)
        if found is not None:
            return list(found)

        async def judging() -> list[WorkloadResult]:
            results = await judge()  # a failure is for its callers only, never remembered
            if policies is self._policies and all(
                lineage_ok(r.facts.lineage) and trust_ok(r.facts.trust)
                for result in results
                for r in result.results
            ):
                self.reviews.put(key, tuple(results))
            return results

        return list(await self._judging.run(key, judging))  # one caller's timeout is not the others'

    def for_credentials(self, credentials: Mapping[str, Credentials]) -> MemoAssessor:
        """An assessor that looks images up with ``credentials`` (host → credentials) as well.

        Its registry client is a view of this one's (same session, cache and
        limits: :meth:`RegistryClient.with_config`), with the credentials
        added for the hosts they name; its lineage and result memories are its
        own. The last ``max_credential_sets`` sets are kept, so a team's next
        pod finds its memories warm. Offline, or without credentials: ``self``.
        """
        resolver = self.resolver
        if not credentials or resolver is None or not isinstance(resolver.client, HttpRegistryClient):
            return self
        return self._by_credentials.get(frozenset(credentials.items()))

    def _bound(self, key: frozenset[tuple[str, Credentials]]) -> MemoAssessor:
        resolver = self.resolver
        client = _client_with(resolver, dict(key))
        assert client is not None and resolver is not None
        bound = MemoResolver(
            client,
            # What a base's layers are is no secret: shared, and read per lookup catalog set.
            catalog=resolver.catalog,
            sources=resolver.sources,
            ttl=self.ttl,
            max_entries=self.max_entries,
            clock=self.clock,
        )
        return MemoAssessor(
            bound,
            budget=self.budget,
            bounds=self.bounds,
            ttl=self.ttl,
            max_entries=self.max_entries,
            clock=self.clock,
            max_credential_sets=0,
            # its own results cache: what was read with one pull secret is judged for it only
            trusted_roots=self.trusted_roots,
        )

    async def assess(
        self,
        workloads: Sequence[Workload],
        policies: Sequence[CompiledPolicy],
        *,
        now: dt.datetime,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        budget: float | None = None,
    ) -> list[WorkloadResult]:
        self._policies_are(policies)
        labels = namespace_labels or {}
        today = now.date()
        keys = [workload_key(w, labels, today) for w in workloads]
        out: list[WorkloadResult | None] = []
        for workload, key in zip(workloads, keys, strict=True):
            hit = self.memo.get(key)
            out.append(None if hit is None else _rebind(hit, workload))
        missing = [i for i, result in enumerate(out) if result is None]
        if missing:
            fresh = await super().assess(
                [workloads[i] for i in missing],
                policies,
                now=now,
                namespace_labels=namespace_labels,
                budget=budget,
            )
            for i, result in zip(missing, fresh, strict=True):
                out[i] = result
                if all(lineage_ok(r.facts.lineage) and trust_ok(r.facts.trust) for r in result.results):
                    self.memo.put(keys[i], result)
        return [r for r in out if r is not None]


def bind_credentials(assessor: Assessor, credentials: Mapping[str, Credentials]) -> Assessor:
    """``assessor``, looking images up with ``credentials`` (host → credentials) as well.

    A :class:`MemoAssessor` keeps one bound assessor per credential set
    (:meth:`MemoAssessor.for_credentials`); a plain :class:`Assessor` has no
    memory to keep, so it gets a fresh one on a client view. Offline, without
    credentials, or on a client that is not the HTTP registry client (a test
    double): ``assessor`` itself.
    """
    if isinstance(assessor, MemoAssessor):
        return assessor.for_credentials(credentials)
    resolver = assessor.resolver
    client = _client_with(resolver, credentials)
    if client is None or resolver is None:
        return assessor
    bound = LineageResolver(client, catalog=resolver.catalog, sources=resolver.sources)
    return Assessor(bound, budget=assessor.budget, bounds=assessor.bounds)


def _client_with(
    resolver: LineageResolver | None, credentials: Mapping[str, Credentials]
) -> HttpRegistryClient | None:
    """A view of ``resolver``'s registry client that also has ``credentials``; ``None``: not possible."""
    if not credentials or resolver is None:
        return None
    client = resolver.client
    if not isinstance(client, HttpRegistryClient):
        return None
    return client.with_config(client.config.with_credentials(credentials))


def _rebind(result: WorkloadResult, workload: Workload) -> WorkloadResult:
    """A remembered result, told about the workload now asking (its name may differ).

    Everything else evaluation read is in the key, so only the name can differ.
    """
    if result.workload.name == workload.name:
        return result
    obj = result.obj
    facts = ObjectFacts(
        kind=obj.kind,
        name=workload.name,
        namespace=obj.namespace,
        labels=obj.labels,
        namespace_labels=obj.namespace_labels,
        operation=obj.operation,
    )
    return WorkloadResult(workload, facts, result.results)
