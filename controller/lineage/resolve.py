"""Build an image's lineage from the registry: image → base → base's base, per platform.

For every platform of the image (attestation entries skipped) the resolver
reads the base *claim* — manifest annotations, then the index descriptor and
index annotations, then config labels, then the Buildpacks run image, then
BuildKit's recorded sources (the readers of :mod:`controller.lineage.claims`,
then any registry-backed :class:`~controller.lineage.images.ClaimSource`) —
and checks it by layers: the claimed base's ``rootfs.diff_ids`` must be a
prefix of the child's. When nothing is claimed, the base is *detected* as the longest diff_id prefix among the
catalog bases. Each level is recorded with how it was found and whether the
layers confirmed it; whether a contradicted or unverifiable claim matters is
the policy's decision, not ours, so the resolver always computes and never
judges.

The walk itself, and the decisions it makes on the way, are in
:mod:`controller.lineage.walk`; this module holds what lives across calls
(the client, the catalog of bases, the claim sources) and starts one
:class:`~controller.lineage.walk.Walk` per call, charged to the review's
:class:`~controller.lineage.budget.ReviewBudget`.

Nothing here raises for registry trouble: failures become data
(:attr:`Lineage.failure`, ``End.LOOKUP_FAILED``). Independent lookups run in
task groups, so a caller's ``asyncio.timeout`` cancels them all cleanly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.lineage.budget import ReviewBudget
from controller.lineage.catalog import Catalog
from controller.lineage.images import ClaimSource, RegistryClient, charged
from controller.lineage.model import DEFAULT_MAX_DEPTH, Lineage
from controller.lineage.sources import default_sources
from controller.lineage.walk import Walk
from controller.reference import Reference
from controller.registry.programs import processes_charged_to

LineageKey = tuple[str, int, tuple[str, ...] | None, tuple[str, ...]]


def lineage_key(
    ref: Reference,
    *,
    max_depth: int,
    platforms: Sequence[str] | None,
    catalog: Sequence[Reference],
) -> LineageKey:
    """Everything :meth:`LineageResolver.resolve` answers by, as one hashable key.

    For whoever remembers lineages (the webhook's memo, the audit's throttle):
    two calls with equal keys get the same lineage.
    """
    return (
        ref.normalized,
        max_depth,
        tuple(platforms) if platforms is not None else None,
        tuple(sorted(c.normalized for c in catalog)),
    )


class LineageResolver:
    """Resolves lineages against one registry client, remembering catalog bases across calls.

    ``sources`` are claim sources that need the registry (see
    :class:`controller.lineage.claims.ClaimSource`), asked in order after the
    pure readers of :mod:`controller.lineage.claims` found no claim; by
    default BuildKit provenance (:mod:`controller.lineage.sources`), when the
    client can fetch statements.
    """

    def __init__(
        self,
        client: RegistryClient,
        *,
        catalog: Catalog | None = None,
        sources: Sequence[ClaimSource] | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog if catalog is not None else Catalog()
        self.sources = tuple(default_sources(client) if sources is None else sources)

    def _walk(self, budget: ReviewBudget | None) -> Walk:
        client = self.client if budget is None else charged(self.client, budget)
        bounds = None if budget is None else budget.bounds
        return Walk(client, catalog=self.catalog, sources=self.sources, bounds=bounds)

    async def refresh_catalog(self, refs: Sequence[Reference]) -> Mapping[str, str]:
        """Make sure each catalog ref's *current* image is in the catalog.

        A tag costs one (TTL-cached) digest lookup; only a digest the catalog
        has not seen for that tag is fetched. Calling this on a timer is what
        builds the history of every digest a tag has had. No review's budget is
        charged: this is the operator's own work.
        One failing entry does not stop the others; the failures are returned
        (normalized ref → message) for whoever wants to report them.
        """
        return await self._walk(None).refresh_catalog(refs)

    async def resolve(
        self,
        ref: Reference,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        platforms: Sequence[str] | None = None,
        catalog: Sequence[Reference] = (),
        budget: ReviewBudget | None = None,
    ) -> Lineage:
        """The lineage of ``ref``, per platform; registry trouble becomes data, never an exception.

        ``catalog`` lists the bases detection may use: those the catalog has never
        seen are fetched first (alongside the image itself); those it knows are
        used as remembered. ``platforms`` filters an index (normalized:
        ``linux/arm64`` is ``linux/arm64/v8``); ``max_depth`` counts ancestors.
        ``budget`` is the review's (shared by all the lookups it makes); without
        one, this call gets a budget of its own with the default bounds.
        """
        account = budget if budget is not None else ReviewBudget()
        walk = self._walk(account)
        with processes_charged_to(account):  # credential programs started for it count too
            return await walk.run(ref, max_depth=max_depth, platforms=platforms, catalog=catalog)
