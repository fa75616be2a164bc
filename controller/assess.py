"""The one assessment path shared by the CLI, the webhook and the audit.

workloads → images → facts (registry lookups under one deadline, only where a
matching policy needs them) → evaluate. Transports only serialise what this
returns, so ``check``, ``/validate`` and the audit can never disagree.

One call of :meth:`Assessor.assess` is one review: it gets one
:class:`~controller.lineage.budget.ReviewBudget` (the bounds on images judged,
platforms, candidates and registry requests), shared by all its lookups, and
every lookup it starts is cancelled when it returns — at the deadline, or when
its caller is cancelled because the answer no longer matters. Evaluation CPU is
counted per object judged (``max_cpu_per_review``, ``max_cpu_per_image``: an
admission review judges one object; ``check`` and the audit many per call), and
judging runs in short slices, each in its namespace's fair turn
(:mod:`controller.turns`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from controller.errors import InvalidReference
from controller.evidence import gather
from controller.lineage import identity
from controller.lineage.budget import Bounds, ReviewBudget
from controller.lineage.images import charged
from controller.lineage.indexer import IdentityIndex
from controller.lineage.model import Lineage
from controller.lineage.signatures import SignatureChecker, Wanted
from controller.policy.evaluate import applicable_indexed, evaluate, needs_lineage
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.index import PolicyIndex
from controller.policy.lookups import catalog_references, identity_targets, repositories_to_index
from controller.policy.model import Action, CompiledPolicy, most_severe
from controller.policy.trustspec import (
    AnswerKey,
    AuthoritySpec,
    TrustPolicy,
    TrustSubject,
    answer_key,
    subjects,
)
from controller.policy.verdict import ImageResult
from controller.reference import Reference, parse
from controller.registry.limits import as_tenant
from controller.trust.authorities import KeyAuthority, KeylessAuthority
from controller.trust.results import TrustAnswer
from controller.turns import TURNS
from controller.workloads import Workload

if TYPE_CHECKING:
    from controller.lineage.resolve import LineageResolver


#: Images parsed in one step of the event loop. A pod may name thousands of images;
#: between slices other reviews and the health probe are served.
SLICE = 32
#: CPU seconds one slice of judging (or of preparing lookups) may take before it
#: yields the loop. Slices are cut by time, not by count: under a tenant's policy of
#: thousands of globs one image costs milliseconds, and 32 of them held the loop for
#: seconds. Each slice waits for its tenant's turn (:mod:`controller.turns`), so
#: another namespace's honest review runs between them.
SLICE_CPU = 0.005


@dataclass(frozen=True)
class WorkloadResult:
    workload: Workload
    obj: ObjectFacts
    results: tuple[ImageResult, ...]  # aligned with workload.images

    @property
    def verdict(self) -> Action:
        return most_severe(r.verdict for r in self.results)


@dataclass
class _Lookup:
    """What the policies of one assessment need to know about one image."""

    reference: Reference
    max_depth: int = 0
    platforms: set[str] | None = None
    catalog: set[Reference] | None = None
    any_platform: bool = False
    tenant: str | None = None  # whose registry share the lookup uses: the first asker's namespace
    evidence: bool = False  # some policy judges the image's scan evidence (``spec.evidence``)
    #: ``spec.evidence.authorities`` of this namespace's policies judging the image, by
    #: fingerprint: what its signed scan documents are verified against.
    signers: dict[str, AuthoritySpec] = field(default_factory=dict)
    now: dt.datetime | None = None  # the review's time: keys' windows are judged at it

    def widen(self, policy: CompiledPolicy) -> None:
        settings = policy.lineage
        self.max_depth = max(self.max_depth, settings.max_depth)
        if settings.platforms is None:
            self.any_platform = True
        else:
            self.platforms = (self.platforms or set()) | set(settings.platforms)
        self.catalog = (self.catalog or set()) | set(catalog_references(policy))
        self.evidence = self.evidence or policy.evidence is not None
        for authority in policy.evidence.authorities if policy.evidence is not None else ():
            self.signers.setdefault(authority.fingerprint, authority)


def _facts(workload: Workload, namespace_labels: Mapping[str, Mapping[str, str]]) -> ObjectFacts:
    ns = workload.namespace
    return ObjectFacts(
        kind=workload.kind,
        name=workload.name,
        namespace=ns,
        labels=dict(workload.labels),
        namespace_labels=namespace_labels.get(ns) if ns is not None else None,
    )


async def _image_facts(workload: Workload) -> list[ImageFacts]:
    out = []
    for i, item in enumerate(workload.images):
        if i and not i % SLICE:
            await asyncio.sleep(0)
        try:
            ref: Reference | None = parse(item.image)
            invalid = None
        except InvalidReference as exc:
            ref, invalid = None, item.problem or exc.message
        out.append(
            ImageFacts(
                image=item.image, container=item.container, role=item.role, reference=ref, invalid=invalid
            )
        )
    return out


class Assessor:
    """Gathers facts for workloads and evaluates them. ``resolver=None`` is offline.

    ``identities`` is the identity index (what tags a pinned digest really has);
    by default one over the resolver's registry client, sharing its catalog's
    tag history, so the webhook, the CLI and the audit all judge digests alike.
    """

    def __init__(
        self,
        resolver: LineageResolver | None = None,
        *,
        budget: float = 8.0,
        identities: IdentityIndex | None = None,
        bounds: Bounds | None = None,
        signatures: SignatureChecker | None = None,
    ) -> None:
        self.resolver = resolver
        if signatures is None and resolver is not None:
            signatures = SignatureChecker(resolver.client)
        #: Verifies ``spec.trust`` signatures; its results cache outlives reviews.
        self.signatures = signatures
        self.budget = budget
        self.bounds = bounds or Bounds()
        self._index: PolicyIndex | None = None
        if identities is None and resolver is not None:
            identities = IdentityIndex(resolver.client, history=resolver.catalog.history)  # type: ignore[arg-type]
        self.identities = identities

    def index_of(self, policies: Sequence[CompiledPolicy]) -> PolicyIndex:
        """The :class:`PolicyIndex` of ``policies``, built once per policy snapshot.

        A store publishes a new tuple on every change, so an index is reused
        while the caller passes the *same* tuple object (kept alive here, so its
        identity cannot be recycled); a list could change under us and is
        indexed afresh each call, which costs about one scan.
        """
        index = self._index
        if index is not None and index.policies is policies:
            return index
        index = PolicyIndex.of(policies)
        if isinstance(policies, tuple):  # PolicyIndex.of keeps a tuple as it is
            self._index = index
        self._share(policies)
        return index

    def _share(self, policies: Sequence[CompiledPolicy]) -> None:
        """Tell the catalog and the tag history what the cluster policies name: the only
        state shared by every namespace, so their bounds evict tenants' entries first."""
        cluster = [p for p in policies if p.namespace is None]
        if self.resolver is not None:
            self.resolver.catalog.share(r for p in cluster for r in catalog_references(p))
        if self.identities is not None:
            targets: dict[str, frozenset[str]] = {}
            for policy in cluster:
                for name, tags in identity_targets(policy).items():
                    targets[name] = targets.get(name, frozenset()) | tags
            self.identities.history.share(targets)

    async def assess(
        self,
        workloads: Sequence[Workload],
        policies: Sequence[CompiledPolicy],
        *,
        now: dt.datetime,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        budget: float | None = None,
    ) -> list[WorkloadResult]:
        labels = namespace_labels or {}
        index = self.index_of(policies)
        # The review's account of registry requests, shared by all its lookups. CPU is
        # counted per object (an admission review judges one): ``check`` and the audit
        # judge many objects in one call, and each gets the bound a review would.
        allowance = ReviewBudget(self.bounds)
        prepared = []
        # Keyed by (namespace, image): what one namespace's policies contribute (catalog
        # bases, identity globs) informs only the lineages judged for that namespace, even
        # when one call judges several namespaces (the audit's batches).
        lookups: dict[tuple[str | None, str], _Lookup] = {}
        targets: dict[str, frozenset[str]] = {}
        scoped_targets: dict[str | None, dict[str, frozenset[str]]] = {}
        widened: set[tuple[str | None, int]] = set()
        for workload in workloads:
            obj = _facts(workload, labels)
            scoped = applicable_indexed(index, obj)
            images = await _image_facts(workload)
            ns = workload.namespace
            cpu = ReviewBudget(self.bounds)  # this object's evaluation CPU
            if self.resolver is not None:
                # Deciding what to look up matches every image against the policies'
                # exclusions: evaluation CPU, charged and sliced like judging. Once the
                # review's CPU is spent nothing more is looked up; judging then says so.

                def prepare(
                    facts: ImageFacts,
                    obj: ObjectFacts = obj,
                    scoped: list[CompiledPolicy] = scoped,
                    ns: str | None = ns,
                ) -> None:
                    if facts.reference is None or not needs_lineage(scoped, obj, facts):
                        return
                    lookup = lookups.setdefault(
                        (ns, facts.reference.normalized),
                        _Lookup(facts.reference, tenant=ns, now=now),
                    )
                    for policy in scoped:
                        if policy.needs_lineage:
                            lookup.widen(policy)
                            if (ns, id(policy)) not in widened:
                                widened.add((ns, id(policy)))
                                own = scoped_targets.setdefault(ns, {})
                                for name, tags in identity_targets(policy).items():
                                    targets[name] = targets.get(name, frozenset()) | tags
                                    own[name] = own.get(name, frozenset()) | tags

                await _sliced(images, ns, prepare, charge=cpu)
            prepared.append((workload, obj, scoped, images, cpu))

        seconds = self.budget if budget is None else budget
        started = asyncio.get_running_loop().time()
        gathered, indexed = await self._gather(lookups.values(), targets, seconds, allowance)
        found = dict(zip(lookups, gathered, strict=True))
        left = seconds - (asyncio.get_running_loop().time() - started)
        signed = await self._signatures(prepared, found, now=now, budget=left, allowance=allowance)
        results = []
        for workload, obj, scoped, images, cpu in prepared:
            ns = workload.namespace
            own = repositories_to_index(scoped_targets.get(ns, {}), indexed) if indexed else {}
            judged: list[ImageResult] = []

            def judge(
                facts: ImageFacts,
                obj: ObjectFacts = obj,
                scoped: list[CompiledPolicy] = scoped,
                judged: list[ImageResult] = judged,
                cpu: ReviewBudget = cpu,
                ns: str | None = ns,
                own: Mapping[str, frozenset[str]] = own,
            ) -> None:
                if facts.reference is not None:
                    where = (ns, facts.reference.normalized)
                    facts = self._with_facts(facts, found.get(where), own)
                    if where in signed:
                        facts = replace(facts, trust=signed[where])
                judged.extend(evaluate(scoped, obj, [facts], now=now, account=cpu))

            await _sliced(images, ns, judge)  # judging charges itself
            results.append(WorkloadResult(workload, obj, tuple(judged)))
        return results

    def _signers(self, lookup: _Lookup) -> gather.Signers | None:
        """What the image's scan documents are verified against (``None``: no policy asks)."""
        if not lookup.signers:
            return None
        now = lookup.now or dt.datetime.now(dt.UTC)
        found = tuple(_evidence_signer(self.signatures, a) for a in lookup.signers.values())
        return gather.Signers(found, now)

    async def _signatures(
        self,
        prepared: Sequence[tuple[Workload, ObjectFacts, list[CompiledPolicy], list[ImageFacts], ReviewBudget]],
        found: Mapping[tuple[str | None, str], Lineage],
        *,
        now: dt.datetime,
        budget: float,
        allowance: ReviewBudget,
    ) -> dict[tuple[str | None, str], dict[AnswerKey, TrustAnswer]]:
        """The ``spec.trust`` answers of each looked-up image, by (namespace, image).

        Only the policies of the image's own namespace decide what is fetched and
        whose authorities judge it. Charged to the review's budget; what the
        deadline cuts short is a failure (``lookup-failed``), never a pass.
        """
        checker = self.signatures
        if checker is None:
            return {}
        asked: dict[tuple[str | None, str], list[tuple[AnswerKey, Wanted]]] = {}
        seen: set[tuple[str | None, str, int]] = set()  # (namespace, image, policy) asked once
        for workload, _obj, scoped, images, _cpu in prepared:
            trusting = [p for p in scoped if p.trust is not None]
            if not trusting:
                continue
            ns = workload.namespace
            for facts in images:
                if facts.reference is None:
                    continue
                where = (ns, facts.reference.normalized)
                lineage = found.get(where)
                if lineage is None:
                    continue
                items = asked.setdefault(where, [])
                for policy in trusting:
                    if (*where, id(policy)) in seen or policy.trust is None:
                        continue
                    seen.add((*where, id(policy)))
                    items.extend(trust_requests(checker, policy.trust, subjects(policy.trust, lineage)))
        flat = [w for items in asked.values() for _, w in items]
        if not flat:
            return {}
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                answers = await checker.check(flat, budget=allowance, now=now)
        except TimeoutError:
            late = TrustAnswer(failure=f"the signatures were not read within the review's {self.budget:.1f}s")
            answers = [late] * len(flat)
        by_key = dict(zip((w.key for w in flat), answers, strict=True))
        return {
            where: {key: by_key[w.key] for key, w in items} for where, items in asked.items()
        }

    async def _gather(
        self,
        lookups: Iterable[_Lookup],
        wanted: Mapping[str, frozenset[str]],
        budget: float,
        allowance: ReviewBudget | None = None,
    ) -> tuple[list[Lineage], dict[str, frozenset[str]]]:
        """Lineages (aligned with ``lookups``), and the identity index brought up to date,
        under one deadline.

        Only repositories where something is pinned by digest are indexed (``wanted``
        maps the policies' repository globs to their tag globs): the images' own
        repositories while their lineages resolve, then the base claims'. A pinned tag
        the index contradicts is asked about once more (it may just have moved),
        within what is left of the budget. Returns the lineages and the
        repositories indexed, with their tag globs.
        """
        todo = list(lookups)
        index = self.identities
        if index is None or not wanted:
            return await self._resolve(todo, budget, allowance), {}
        deadline = asyncio.get_running_loop().time() + max(budget, 0.0)
        targets = repositories_to_index(
            wanted, {lk.reference.name for lk in todo if lk.reference.digest is not None}
        )
        refreshing = asyncio.ensure_future(index.ensure(targets))
        found = await self._resolve(todo, budget, allowance)
        pinned = [
            claim
            for lineage in found
            for claim in identity.pinned(lineage.reference, lineage)
        ]
        more = repositories_to_index(wanted, {n for n, _, _ in pinned if n not in targets})
        targets.update(more)
        try:
            async with asyncio.timeout_at(deadline):
                await refreshing
                await index.ensure(more)
                await index.explain([(n, d) for n, _, d in pinned if n in targets])
                await index.confirm([(n, t, d) for n, t, d in pinned if n in targets and t is not None])
        except TimeoutError:
            pass  # what is known by now is judged; the rest is judged by its tag, unverified
        finally:
            refreshing.cancel()
        return found, targets

    def _with_facts(
        self, facts: ImageFacts, lineage: Lineage | None, targets: Mapping[str, frozenset[str]]
    ) -> ImageFacts:
        """``facts`` with its lineage and what the identity index knows of its digests."""
        ref = facts.reference
        index = self.identities
        if ref is None or index is None or not targets:
            return facts if lineage is None else replace(facts, lineage=lineage)
        keys = [(name, digest) for name, _, digest in identity.pinned(ref, lineage)]
        known = index.history.facts(keys, within=targets)
        if lineage is not None:
            lineage = identity.unverified_noted(lineage, index.history, targets.keys())
        return replace(
            facts, lineage=lineage if lineage is not None else facts.lineage, identities=known
        )

    async def _resolve(
        self, lookups: Iterable[_Lookup], budget: float, allowance: ReviewBudget | None = None
    ) -> list[Lineage]:
        """The lineage of each lookup, in order (one image may be looked up once per namespace)."""
        resolver = self.resolver
        todo = list(lookups)
        if resolver is None or not todo:
            return []
        allowance = allowance or ReviewBudget(self.bounds)
        limit = self.bounds.max_images
        if len(todo) > limit:
            # Over the bound, nothing is looked up: judging the first few would still be
            # work the object's author chose, and the answer is lookup-failed either way.
            failure = (
                f"this review names {len(todo)} images that need a lookup, more than "
                f"{limit} (max_images_per_review = {limit}); none was looked up"
            )
            return [Lineage(lk.reference, None, failure=failure) for lk in todo]
        tasks = {
            asyncio.ensure_future(
                _as_tenant(
                    lk.tenant,
                    _with_evidence(
                        resolver,
                        resolver.resolve(
                            lk.reference,
                            max_depth=lk.max_depth,
                            platforms=None if lk.any_platform or not lk.platforms else sorted(lk.platforms),
                            catalog=sorted(lk.catalog or (), key=str),
                            budget=allowance,
                        ),
                        allowance if lk.evidence else None,
                        self._signers(lk),
                    ),
                )
            ): lk
            for lk in todo
        }
        try:
            done, pending = await asyncio.wait(tasks, timeout=max(budget, 0.0))
        finally:
            # At the deadline, or when our caller is cancelled (the answer was sent or
            # abandoned): no lookup of this review outlives it.
            for task in tasks:
                task.cancel()
        out: list[Lineage] = []
        for task, lk in tasks.items():
            key = lk.reference.normalized
            if task in done and not task.cancelled() and task.exception() is None:
                out.append(task.result())
            elif task in done and not task.cancelled():
                out.append(Lineage(lk.reference, None, failure=f"lookup of {key} failed: {task.exception()}"))
            else:
                out.append(Lineage(
                    lk.reference, None, failure=f"lookup of {key} did not finish within {budget:.1f}s"
                ))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return out


def _evidence_signer(checker: SignatureChecker | None, spec: AuthoritySpec) -> gather.Signer:
    """An authority of ``spec.evidence.authorities`` as the evidence reader verifies with it."""
    if spec.keyless is None:
        return gather.Signer(spec.fingerprint, spec.name, KeyAuthority(spec.name, spec.keys))
    if checker is None:
        return gather.Signer(spec.fingerprint, spec.name, "no keyless trusted root is configured")
    k = spec.keyless
    authority = checker.keyless(spec.name, k.trusted_root, k.issuer, k.subject, k.subject_regexp)
    return gather.Signer(spec.fingerprint, spec.name, authority)


def trust_requests(
    checker: SignatureChecker, trust: TrustPolicy, targets: Sequence[TrustSubject]
) -> list[tuple[AnswerKey, Wanted]]:
    """What to verify for ``targets``: each digest, under each authority (and attestation)."""
    out: list[tuple[AnswerKey, Wanted]] = []
    asks: list[tuple[AuthoritySpec, str | None]] = [(a, None) for a in trust.authorities]
    asks += [(a, att.predicate_type) for att in trust.attestations for a in att.authorities]
    for target in targets:
        for digest in target.digests:
            for spec, predicate in asks:
                authority: KeyAuthority | KeylessAuthority | str
                if spec.keyless is None:
                    authority = KeyAuthority(spec.name, spec.keys)
                else:
                    k = spec.keyless
                    authority = checker.keyless(spec.name, k.trusted_root, k.issuer, k.subject, k.subject_regexp)
                ends = [key.not_after for key in spec.keys if key.not_after is not None]
                out.append((
                    answer_key(target, digest, spec, predicate),
                    Wanted(
                        target.registry, target.repository, digest, authority, spec.name,
                        spec.fingerprint, predicate, min(ends) if ends else None,
                    ),
                ))
    return out


async def _sliced(
    images: Sequence[ImageFacts],
    tenant: str | None,
    work: Callable[[ImageFacts], None],
    *,
    charge: ReviewBudget | None = None,
) -> None:
    """``work`` on each image, in slices of at most :data:`SLICE_CPU` seconds of CPU,
    each in ``tenant``'s fair turn, yielding the loop between slices.

    ``work`` is synchronous, so nothing else runs inside a slice and its thread
    CPU time is this review's own. With ``charge``, that time is counted against
    the review's budget and the work stops once the review's CPU is spent (what
    was not prepared is judged "not evaluated" later); judging charges itself.
    """
    position = 0
    while position < len(images):
        async with TURNS.turn(tenant):  # released before any await: no turn is held across one
            start = time.thread_time()
            while position < len(images):
                if charge is not None and charge.cpu_exhausted() is not None:
                    return
                began = time.thread_time()
                work(images[position])
                position += 1
                if charge is not None:
                    charge.charge_cpu(time.thread_time() - began)
                if time.thread_time() - start >= SLICE_CPU:
                    break
        if position < len(images):
            await asyncio.sleep(0)  # the health probe, the other reviews' I/O, the next turn


async def _with_evidence(
    resolver: LineageResolver,
    lookup: Awaitable[Lineage],
    budget: ReviewBudget | None,
    signers: gather.Signers | None = None,
) -> Lineage:
    """The lineage, then (with ``budget``: a policy judges scan evidence) the scans
    attached to each platform image, read under the same deadline and budget, each
    signed document verified against ``signers``."""
    lineage = await lookup
    if budget is None:
        return lineage
    return await gather.attach(
        charged(resolver.client, budget),  # type: ignore[arg-type]
        lineage,
        budget,
        signers=signers,
    )


async def _as_tenant(tenant: str | None, lookup: Awaitable[Lineage]) -> Lineage:
    """Run ``lookup`` as ``tenant``: one namespace cannot take all of a registry's concurrency."""
    with as_tenant(tenant):
        return await lookup
