"""``baseguard run``: the webhook and the kopf operator, in one process and one event loop.

Every replica serves ``/validate`` and ``/mutate`` (the same application as
``baseguard serve``) with the policies kopf watches into the store, namespace
labels from the watch, and pull-secret credentials; one replica, elected on a
Lease, also writes policy status, keeps the certificates and runs the audit.

This module is where the two adapters meet, and the only one: it builds the
parts they share and starts each through its own start function
(:func:`controller.webhook.server.start`, :mod:`controller.operator.running`),
so neither imports the other.

Start-up order, and why:

1. the webhook listens at once, on a throw-away certificate until the real
   one is read from the Secret (liveness works; readiness waits);
2. the long-lived loops (election, Secret polling, leader jobs, catalog
   refresh) start before kopf, which claims every task created after it;
3. ``kopf.operator(...)`` runs until SIGTERM/SIGINT (kopf's handlers) or the
   stop flag; its cleanup handler then releases the Lease, drains in-flight
   reviews (``Settings.shutdown_timeout``) and closes the registry client.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.cli.options import (
    add_registry_options,
    add_webhook_options,
    docs,
    duration,
    missing_operator_extra,
    refuse_with_offline,
    trusted_roots,
    webhook_settings,
)
from controller.cli.registrycache import open_registry_cache
from controller.errors import ExitCode, InputError

if TYPE_CHECKING:
    from controller.operator.kube import Kube
    from controller.operator.replica import Operator
    from controller.operator.settings import OperatorSettings
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig
    from controller.webhook.metrics import Metrics
    from controller.webhook.settings import Settings

log = logging.getLogger("baseguard.operator.run")

__all__ = ["Started", "add_arguments", "config_from", "duration", "register", "run", "serve"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="in-cluster: the operator (policies from CRDs, status, certificates, audit) and the webhook",
        description="Run in the cluster: the operator (policies watched from the "
        "BaseImagePolicy/ClusterBaseImagePolicy resources, their status, the webhook "
        "certificates and configurations, the periodic audit) and the admission webhook, in one "
        "process. Needs the operator extra (pip install 'baseguard[operator]') and a cluster "
        "connection (in-cluster, or --kubeconfig/--context). Runs until SIGTERM or SIGINT.",
        epilog="Exit codes: 0 stopped by SIGTERM/SIGINT after a clean shutdown; 1 the operator "
        "failed while running (its log says why); 2 bad arguments or files, no cluster "
        "connection, or the operator extra is not installed (nothing was started). "
        + docs("install.md"),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_webhook_options(parser.add_argument_group("webhook"))

    reg = parser.add_argument_group("registries")
    add_registry_options(reg)
    reg.add_argument(
        "--no-pull-secrets",
        dest="pull_secrets",
        action="store_false",
        help="do not read pods' imagePullSecrets (no RBAC on Secrets needed)",
    )
    reg.add_argument(
        "--catalog-refresh-interval",
        type=duration,
        default=300.0,
        metavar="DURATION",
        help="how often catalog bases' digests are refreshed (default 5m)",
    )

    kube = parser.add_argument_group("cluster")
    kube.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="outside a cluster: the kubeconfig (default: in-cluster, else $KUBECONFIG)",
    )
    kube.add_argument("--context", help="the kubeconfig context")
    kube.add_argument("--namespace", help="baseguard's namespace (default: the pod's)")
    kube.add_argument(
        "--identity",
        help="this replica's name in the Lease (default: $POD_NAME, else the host name)",
    )
    kube.add_argument(
        "--lease-name", default="baseguard-leader", help="the Lease replicas elect a leader on"
    )

    tls = parser.add_argument_group("certificates")
    tls.add_argument(
        "--tls-secret",
        metavar="NAME",
        help="the Secret with the serving pair, read through the API (replicas pick up rotations)",
    )
    tls.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="instead of --tls-secret: the serving certificate file (reloaded when it changes)",
    )
    tls.add_argument("--tls-key", metavar="FILE", help="its private key")
    tls.add_argument(
        "--manage-certificates",
        action="store_true",
        help="the leader creates and rotates --tls-secret and patches the caBundle",
    )
    tls.add_argument(
        "--service", default="baseguard", help="the webhook's Service (certificate DNS names)"
    )
    tls.add_argument(
        "--cert-host",
        action="append",
        default=[],
        metavar="HOST",
        help="another name or IP for the serving certificate, e.g. the host of webhook.url (repeatable)",
    )
    tls.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        metavar="NAME",
        help="webhook configuration(s) whose caBundle to patch (repeatable; default: baseguard)",
    )
    tls.add_argument(
        "--ca-validity",
        type=duration,
        default=5 * 365 * 86400.0,
        metavar="DURATION",
        help="CA validity (default 1825d)",
    )
    tls.add_argument(
        "--cert-validity",
        type=duration,
        default=90 * 86400.0,
        metavar="DURATION",
        help="serving certificate validity (default 90d)",
    )
    tls.add_argument(
        "--cert-renew-before",
        type=duration,
        default=30 * 86400.0,
        metavar="DURATION",
        help="replace the serving certificate this long before it expires (default 30d)",
    )
    tls.add_argument(
        "--mutating-webhook",
        metavar="NAME",
        help="the MutatingWebhookConfiguration whose webhook the leader registers only while "
        "some policy sets pinning.mutateToDigest (its baseguard.io/webhook-template annotation)",
    )
    tls.add_argument(
        "--mutation-check-interval",
        type=duration,
        default=60.0,
        metavar="DURATION",
        help="how often the leader re-checks --mutating-webhook besides every policy change (default 1m)",
    )
    tls.add_argument(
        "--cert-check-interval",
        type=duration,
        default=60.0,
        metavar="DURATION",
        help="how often the leader checks the certificates and caBundles (default 1m)",
    )
    tls.add_argument(
        "--tls-poll-interval",
        type=duration,
        default=10.0,
        metavar="DURATION",
        help="how often every replica reads the Secret (default 10s)",
    )

    vap = parser.add_argument_group("ValidatingAdmissionPolicy backstop")
    vap.add_argument(
        "--vap-backstop",
        action="store_true",
        help="the leader keeps a ValidatingAdmissionPolicy and binding per policy (its rules "
        "that need no registry) in step with the policies, so they hold while the webhook is "
        "down (docs/vap.md)",
    )
    vap.add_argument(
        "--vap-owner",
        default="",
        metavar="NAME",
        help="the baseguard.io/backstop label value of the objects it writes, the only ones it "
        "replaces or deletes (default: --namespace)",
    )
    vap.add_argument(
        "--vap-exclude-namespace",
        action="append",
        default=None,
        metavar="NS",
        help="a namespace the generated objects never judge (repeatable; default kube-system)",
    )
    vap.add_argument(
        "--vap-check-interval",
        type=duration,
        default=60.0,
        metavar="DURATION",
        help="time between backstop checks when no policy changed (default 1m)",
    )

    aud = parser.add_argument_group("audit")
    aud.add_argument(
        "--audit-interval",
        type=duration,
        default=600.0,
        metavar="DURATION",
        help="time between background audits; 0 turns it off (default 10m)",
    )
    aud.add_argument(
        "--audit-budget",
        type=duration,
        default=60.0,
        metavar="DURATION",
        help="lookup time for one batch (default 60s)",
    )
    aud.add_argument(
        "--audit-batch",
        type=int,
        default=50,
        metavar="N",
        help="objects assessed together (default 50)",
    )
    aud.add_argument(
        "--audit-rate",
        type=float,
        default=10.0,
        metavar="PER_SECOND",
        help="registry lookups the audit starts per second at most (default 10)",
    )
    aud.add_argument(
        "--audit-write-rate",
        type=float,
        default=20.0,
        metavar="PER_SECOND",
        help="writes (reports, Events, status) the audit sends the apiserver per second at most "
        "(default 20)",
    )
    aud.add_argument(
        "--audit-status-refresh",
        type=duration,
        default=3600.0,
        metavar="DURATION",
        help="status.audit is rewritten when its figures change, or when it is this old "
        "(default 1h)",
    )
    aud.add_argument(
        "--event-interval",
        type=duration,
        default=3600.0,
        metavar="DURATION",
        help="a persisting finding refreshes its Event at most this often (default 1h)",
    )
    aud.add_argument(
        "--warm-start",
        action="store_true",
        help="once leading, pre-resolve the images of running pods into the caches reviews read "
        "(and the shared cache), so a rollout or restart does not start cold",
    )
    aud.add_argument(
        "--warm-start-rate",
        type=float,
        default=5.0,
        metavar="PER_SECOND",
        help="image lookups the warm start begins per second at most (default 5)",
    )
    aud.add_argument(
        "--no-policy-reports",
        dest="policy_reports",
        action="store_false",
        help="do not write PolicyReports (openreports.io Reports, wgpolicyk8s.io PolicyReports)",
    )



def config_from(args: argparse.Namespace) -> OperatorSettings:
    from controller.operator.kube import own_namespace
    from controller.operator.rotation import Lifetimes
    from controller.operator.settings import OperatorSettings

    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    if args.tls_cert and args.tls_secret:
        raise InputError("give --tls-secret or --tls-cert/--tls-key, not both")
    if not args.tls_cert and not args.tls_secret:
        raise InputError(
            "the webhook needs a serving certificate: --tls-secret NAME (with --manage-certificates to have one made) or --tls-cert/--tls-key"
        )
    if args.manage_certificates and not args.tls_secret:
        raise InputError(
            "--manage-certificates needs --tls-secret NAME: the Secret to keep the pair in"
        )
    if not args.warm_start_rate > 0:
        raise InputError(f"--warm-start-rate must be more than 0, not {args.warm_start_rate:g}")
    try:
        lifetimes = Lifetimes(
            ca=dt.timedelta(seconds=args.ca_validity),
            serving=dt.timedelta(seconds=args.cert_validity),
            renew_before=dt.timedelta(seconds=args.cert_renew_before),
        )
    except ValueError as exc:
        raise InputError(f"--cert-renew-before: {exc}") from None
    return OperatorSettings(
        namespace=args.namespace or own_namespace(),
        identity=args.identity or os.environ.get("POD_NAME") or socket.gethostname(),
        lease_name=args.lease_name,
        tls_secret=args.tls_secret,
        manage_certificates=args.manage_certificates,
        service=args.service,
        cert_hosts=tuple(args.cert_host),
        webhook_configurations=tuple(args.webhook_configuration or ["baseguard"]),
        mutating_webhook=args.mutating_webhook or None,
        mutation_check_interval=args.mutation_check_interval,
        vap_backstop=args.vap_backstop,
        vap_owner=args.vap_owner,
        vap_exclude_namespaces=tuple(
            ns for ns in (args.vap_exclude_namespace or ["kube-system"]) if ns
        ),
        vap_check_interval=args.vap_check_interval,
        lifetimes=lifetimes,
        cert_check_interval=args.cert_check_interval,
        tls_poll_interval=args.tls_poll_interval,
        audit_interval=args.audit_interval,
        audit_budget=args.audit_budget,
        audit_batch=args.audit_batch,
        audit_lookups_per_second=args.audit_rate,
        audit_writes_per_second=args.audit_write_rate,
        audit_status_refresh=dt.timedelta(seconds=args.audit_status_refresh),
        event_interval=dt.timedelta(seconds=args.event_interval),
        policy_reports=args.policy_reports,
        catalog_refresh_interval=args.catalog_refresh_interval,
        pull_secrets=args.pull_secrets,
        warm_start=args.warm_start,
        warm_start_rate=args.warm_start_rate,
    )


def registry_config_from(args: argparse.Namespace) -> RegistryConfig | None:
    """``None`` when ``--offline`` (and ``--shared-cache`` refused with it: nothing to share)."""
    if args.offline:
        refuse_with_offline(args, "shared_cache")
        return None
    from controller.registry.config import load_registry_config

    return load_registry_config(args.registry_config, docker_config=args.docker_config)



@dataclass(frozen=True)
class Started:
    """What a started ``run`` exposes (tests use it)."""

    operator: Operator
    port: int
    metrics: Metrics


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def serve(
    settings: Settings,
    config: OperatorSettings,
    *,
    kube: Kube,
    registry_config: RegistryConfig | None,
    registry_client: RegistryClient | None = None,
    tls_files: tuple[str, str] | None = None,
    roots: Mapping[str, Any] | None = None,
    stop_flag: asyncio.Event | None = None,
    started: Callable[[Started], None] | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
) -> int:
    """Run the webhook and the operator until kopf stops; 0 after a clean stop.

    ``registry_config=None`` is offline. ``registry_client`` replaces the
    client made from it (tests pass one with a short tag TTL); it is closed
    on the way out either way.
    """
    from controller.lineage.catalog import Catalog
    from controller.memo import MemoAssessor, MemoResolver
    from controller.operator import running
    from controller.operator.serving_secret import ServingPair
    from controller.policy.store import PolicyStore
    from controller.registry.client import RegistryClient
    from controller.webhook import server
    from controller.webhook.handlers import Admission
    from controller.webhook.metrics import Metrics, RegistryStats

    store = PolicyStore()
    client = registry_client
    tier = None
    if client is None and registry_config is not None:
        cache, tier = await open_registry_cache(settings)
        client = RegistryClient(registry_config, cache=cache)
    catalog = Catalog()
    resolver = MemoResolver(client, catalog=catalog, ttl=settings.cache_ttl) if client else None
    assessor = MemoAssessor(
        resolver, budget=settings.budget, bounds=settings.bounds, ttl=settings.cache_ttl,
        trusted_roots=roots,
    )
    hosts = config.serving_hosts
    try:
        ca = settings.client_ca
        serving = (
            ServingPair.from_files(*tls_files, client_ca=ca)
            if tls_files
            else ServingPair.placeholder(hosts, client_ca=ca)
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load --tls-cert/--tls-key/--client-ca: {exc}") from None
    operator = running.build(
        config,
        kube=kube,
        store=store,
        serving=serving,
        clock=clock,
        client=client,
        catalog=catalog,
        resolver=resolver,
        roots=roots,
        assessor=assessor,
    )

    def registry_stats() -> RegistryStats:
        assert client is not None
        return client.stats

    metrics = Metrics(
        snapshot=lambda: store.snapshot, registry_stats=registry_stats if client else None
    )
    if tier is not None:
        metrics.registry.register(tier.collector())
    if operator.warm is not None:
        metrics.registry.register(operator.warm.collector())
    pull = operator.pull_secrets
    reviewer = Admission(
        store=store,
        assessor=assessor,
        metrics=metrics,
        clock=clock,
        namespace_labels=operator.namespaces.lookup,
        credentials=pull.for_pod if pull is not None else None,
    )

    async def close_client() -> None:
        if client is not None:
            await client.close()
        if tier is not None:
            await tier.close()

    webhook = await server.start(
        settings,
        store=store,
        assessor=assessor,
        metrics=metrics,
        ssl_context=serving.context,
        reviewer=reviewer,
        closers=[close_client],
    )
    loops = running.start_loops(
        operator, tls_files=tls_files is not None, cert_reload_interval=settings.cert_reload_interval
    )

    async def drain() -> None:
        log.info("draining the webhook", extra={"fields": {"timeout": settings.shutdown_timeout}})
        await webhook.close()  # drains, then closes the registry client

    async def stop_loops() -> None:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)  # the elector releases the Lease

    operator.closers.extend([drain, stop_loops])  # run last-first
    log.info(
        "listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": webhook.port,
                "offline": client is None,
                "identity": config.identity,
                "namespace": config.namespace,
            }
        },
    )
    if started is not None:
        started(Started(operator=operator, port=webhook.port, metrics=metrics))
    await running.run(operator, stop_flag=stop_flag)
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 2 for bad arguments, 1 when kopf fails."""
    from controller import logs
    from controller.operator.kube import Kube

    settings = webhook_settings(args)
    handler = logs.configure(level=settings.log_level, batched=True)
    # kopf logs every handler call ("Handler '…' succeeded.") at INFO: one line per watch
    # event would drown the decision log. Its warnings and errors still come through.
    chatty = logging.getLogger("kopf.objects")
    previous = chatty.level
    if settings.log_level != "DEBUG":
        chatty.setLevel(logging.WARNING)
    try:
        config = config_from(args)
        kube = Kube.connect(kubeconfig=args.kubeconfig, context=args.context)
        tls_files = (args.tls_cert, args.tls_key) if args.tls_cert else None
        try:
            return asyncio.run(
                serve(
                    settings,
                    config,
                    kube=kube,
                    registry_config=registry_config_from(args),
                    tls_files=tls_files,
                    roots=trusted_roots(getattr(args, "trusted_root", None)),
                )
            )
        finally:
            kube.close()
    except InputError as exc:
        log.error("cannot start", extra={"fields": {"error": exc.message}})
        print(f"baseguard run: {exc.message}", file=sys.stderr)
        return ExitCode.USAGE
    except ModuleNotFoundError as exc:
        missing = missing_operator_extra(exc, "run")
        if missing is None:
            raise
        log.error("cannot start", extra={"fields": {"error": missing}})
        print(f"baseguard run: {missing}", file=sys.stderr)
        return ExitCode.USAGE
    except Exception:
        log.exception("the operator failed")
        return ExitCode.FAILED
    finally:
        chatty.setLevel(previous)
        logs.unconfigure(handler)
