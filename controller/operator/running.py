"""The operator's start: frozen config and collaborators in, a running kopf operator out.

``baseguard run`` (:mod:`controller.cli.commands.run`) builds the parts the
webhook and the operator share (the policy store, the registry client, the
catalog, the memoised resolver, the serving pair) and hands them here, the
way ``kopf.operator(registry=, settings=, memo=)`` takes its parts; the
webhook gets the same store and the namespace labels and pull secrets the
operator keeps, through plain callables. Nothing here imports the webhook.

Start-up order, and why: the long-lived loops (election, Secret polling,
leader jobs, catalog refresh) start before kopf, which claims every task
created after it; ``kopf.operator(...)`` then runs until SIGTERM/SIGINT
(kopf's handlers) or the stop flag; its cleanup handler releases the Lease
and runs the closers the caller registered (drain the webhook, close the
client).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.operator.settings import OperatorSettings

if TYPE_CHECKING:
    from controller.assess import Assessor
    from controller.lineage.catalog import Catalog
    from controller.lineage.resolve import LineageResolver
    from controller.operator.kube import Kube
    from controller.operator.replica import Operator
    from controller.operator.serving_secret import ServingPair
    from controller.policy.store import PolicyStore
    from controller.registry.client import RegistryClient

#: Seconds the audit remembers a lineage: audits are minutes apart, admission's memory is seconds.
AUDIT_MEMO_TTL = 60.0


def build(
    config: OperatorSettings,
    *,
    kube: Kube,
    store: PolicyStore,
    serving: ServingPair,
    clock: Callable[[], dt.datetime],
    client: RegistryClient | None,
    catalog: Catalog,
    resolver: LineageResolver | None,
    roots: Mapping[str, Any] | None = None,
    assessor: Assessor | None = None,
) -> Operator:
    """The :class:`Operator` with its auditor, certificate keeper, mutation keeper and pull secrets.

    ``client=None`` is offline. ``resolver`` is the one admission uses; the
    operator refreshes the catalog through it. ``roots`` are admission's keyless
    trusted roots: the audit judges ``spec.trust`` through the same
    :class:`~controller.assess.Assessor` path, charged to each batch's budget.
    ``assessor`` is admission's: the warm start (``config.warm_start``) fills its caches.
    """
    from controller.assess import Assessor
    from controller.lineage.signatures import SignatureChecker
    from controller.operator.audit.events import EventLedger
    from controller.operator.audit.runner import Assessors, Auditor, AuditResolver, Throttle
    from controller.operator.backstop import Backstop
    from controller.operator.credentials import PullSecrets
    from controller.operator.mutation import MutationKeeper
    from controller.operator.replica import Operator
    from controller.operator.serving_secret import CertKeeper
    from controller.operator.warmstart import WarmStart

    throttle = Throttle(config.audit_lookups_per_second)

    def audit_assessor(view: RegistryClient | None) -> Assessor:
        """The audit's: the same Assessor as admission, with throttled, longer-lived lookups."""
        if view is None:
            return Assessor(None, budget=config.audit_budget)
        audit_resolver = AuditResolver(view, catalog=catalog, ttl=AUDIT_MEMO_TTL, throttle=throttle)
        # Its own results cache per credential set (``make`` runs once per set), as admission's.
        signatures = SignatureChecker(view, roots=roots)
        return Assessor(
            audit_resolver, budget=config.audit_budget, signatures=signatures
        )

    pull = PullSecrets(kube, ttl=config.pull_secret_ttl) if config.pull_secrets and client else None
    auditor = Auditor(
        kube=kube,
        assessors=Assessors(audit_assessor, client),
        clock=clock,
        pull_secrets=pull,
        budget=config.audit_budget,
        batch=config.audit_batch,
        identity=config.identity,
        events_per_run=config.audit_events_per_run,
        policy_reports=config.policy_reports,
        ledger=EventLedger(config.event_interval),
        writes=Throttle(
            config.audit_writes_per_second, burst=max(int(config.audit_writes_per_second), 1)
        ),
        status_refresh=config.audit_status_refresh,
    )
    keeper = None
    if config.manage_certificates and config.tls_secret:
        keeper = CertKeeper(
            kube=kube,
            namespace=config.namespace,
            secret=config.tls_secret,
            hosts=config.serving_hosts,
            configurations=config.webhook_configurations,
            lifetimes=config.lifetimes,
            clock=clock,
            serving=serving,
        )
    mutation = (
        MutationKeeper(kube, config.mutating_webhook, interval=config.mutation_check_interval)
        if config.mutating_webhook
        else None
    )
    backstop = (
        Backstop(
            kube,
            owner=config.vap_owner or config.namespace,
            clock=clock,
            exclude_namespaces=config.vap_exclude_namespaces,
            interval=config.vap_check_interval,
        )
        if config.vap_backstop
        else None
    )
    operator = Operator(
        config=config,
        mutation=mutation,
        backstop=backstop,
        kube=kube,
        store=store,
        serving=serving,
        clock=clock,
        auditor=auditor,
        keeper=keeper,
        resolver=resolver,
        pull_secrets=pull,
    )
    if config.warm_start and assessor is not None and client is not None:
        operator.warm = WarmStart(
            kube=kube,
            assessor=assessor,
            policies=lambda: store.snapshot.policies,
            namespace_labels=operator.namespaces.snapshot,
            pull_secrets=pull,
            rate=config.warm_start_rate,
            concurrency=config.warm_start_concurrency,
            budget=config.warm_start_budget,
            requests=lambda: client.stats.total,
            clock=clock,
        )
    return operator


def start_loops(
    operator: Operator, *, tls_files: bool, cert_reload_interval: float
) -> list[asyncio.Task[None]]:
    """Every replica's and the leader's long-lived loops; call before :func:`run` (see above)."""
    config = operator.config
    loops: list[asyncio.Task[None]] = [
        asyncio.create_task(operator.elector.run(), name="baseguard: leader election"),
        asyncio.create_task(operator.status_loop(), name="baseguard: policy status"),
        asyncio.create_task(operator.cert_loop(), name="baseguard: certificates"),
        asyncio.create_task(operator.audit_loop(), name="baseguard: audit"),
        asyncio.create_task(operator.warm_start_once(), name="baseguard: warm start"),
        asyncio.create_task(operator.mutation_loop(), name="baseguard: mutating webhook"),
        asyncio.create_task(operator.backstop_loop(), name="baseguard: VAP backstop"),
        asyncio.create_task(operator.catalog_loop(), name="baseguard: catalog refresh"),
    ]
    if config.tls_secret and not tls_files:
        loops.append(
            asyncio.create_task(
                operator.serving.poll(
                    operator.kube,
                    config.namespace,
                    config.tls_secret,
                    interval=config.tls_poll_interval,
                ),
                name="baseguard: serving certificate",
            )
        )
    else:
        loops.append(
            asyncio.create_task(
                operator.serving.watch_files(cert_reload_interval),
                name="baseguard: certificate files",
            )
        )
    return loops


async def run(operator: Operator, *, stop_flag: asyncio.Event | None = None) -> None:
    """Run kopf until it stops (SIGTERM/SIGINT or ``stop_flag``), then shut the operator down."""
    import kopf

    from controller.operator import handlers

    try:
        await kopf.operator(
            registry=handlers.build_registry(),
            settings=handlers.settings(),
            memo=operator,
            standalone=True,
            clusterwide=True,
            stop_flag=stop_flag,
        )
    finally:
        await operator.shutdown()  # normally done already by kopf's cleanup handler
