"""``baseguard serve``: the webhook on its own, with policies from files.

For local use, a CI cluster (kind) without the operator, and the benchmark.
Policies come from ``-p`` files and folders and are re-read when they change
(:class:`controller.policyfiles.PolicyFiles`); a file that breaks keeps its
last good policies in force, and ``/readyz`` and the log say why. Without
``--tls-cert``/``--tls-key`` a throw-away CA and serving certificate for
localhost are made, and the CA is printed so a client (or a kind cluster's
webhook configuration) can trust it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli.options import (
    add_registry_options,
    add_webhook_options,
    docs,
    refuse_with_offline,
    trusted_roots,
    webhook_settings,
)
from controller.cli.registrycache import open_registry_cache
from controller.errors import ExitCode, InputError

if TYPE_CHECKING:
    from controller.tls.serving import CertReloader
    from controller.webhook.server import Closer, Server
    from controller.webhook.settings import Settings

log = logging.getLogger("baseguard.webhook.serve")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the admission webhook with policies from files",
        description="Run the admission webhook (/validate, /mutate, /healthz, /readyz, /metrics) "
        "over HTTPS with policies read from files, without the operator or a cluster connection: "
        "for a cluster without the CRDs, a second cluster, or trying policies with a real "
        "apiserver. Runs until SIGTERM or SIGINT.",
        epilog="Exit codes: 0 stopped by SIGTERM/SIGINT after a clean shutdown; 2 bad arguments, "
        "a bad policy file, or a TLS certificate/key that cannot be loaded (nothing was served). "
        + docs("install.md"),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        metavar="POLICY",
        required=True,
        help="policy file or folder (repeatable); re-read when it changes",
    )
    add_registry_options(parser)
    add_webhook_options(parser)
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serving certificate (PEM); reloaded when it changes"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")


def _tls(args: argparse.Namespace, settings: Settings, out: TextIO) -> tuple[CertReloader, bool]:
    """The serving pair, and whether its files are worth watching (a throw-away pair is not).

    Without ``--tls-cert``, a throw-away CA and certificate are made, loaded,
    and their files removed at once: nothing with a private key is left in
    /tmp by a ``serve`` (nor by a test run that starts many).
    """
    from controller.tls.serving import CertReloader, self_signed

    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError(
            "--tls-cert and --tls-key go together: give both, or neither for a self-signed pair"
        )
    if args.tls_cert:
        try:
            return CertReloader(args.tls_cert, args.tls_key, client_ca=settings.client_ca), True
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load --tls-cert/--tls-key/--client-ca: {exc}") from None
    hosts = ["localhost", "127.0.0.1"]
    if settings.host not in ("0.0.0.0", "::", "", *hosts):
        hosts.append(settings.host)
    pair = self_signed(hosts)
    with tempfile.TemporaryDirectory(prefix="baseguard-tls-") as directory:
        _, cert, key = pair.write(directory)
        try:
            reloader = CertReloader(cert, key, client_ca=settings.client_ca)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load --client-ca: {exc}") from None
    print(
        f"baseguard serve: no --tls-cert/--tls-key, so a self-signed certificate for "
        f"{', '.join(hosts)} is in use (local use only). Trust this CA:\n"
        f"{pair.ca_pem.decode()}",
        file=out,
        flush=True,
    )
    return reloader, False


async def start(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> Server:
    """Load policies, open the registry client, bind the port; raise InputError on bad arguments."""
    from controller.memo import MemoAssessor, MemoResolver
    from controller.policy.store import PolicyStore
    from controller.policyfiles import PolicyFiles
    from controller.webhook import server
    from controller.webhook.metrics import Metrics, RegistryStats, StatsSource

    store = PolicyStore()
    files = PolicyFiles(list(args.policy), store)
    _, missing = files.discover()
    if missing:
        raise InputError("; ".join(missing.values()))
    await asyncio.to_thread(files.load)
    reloader, watched = _tls(args, settings, out or sys.stdout)

    closers: list[Closer] = []
    stats: StatsSource | None = None
    tier = None
    if args.offline:
        assessor = MemoAssessor(None, budget=settings.budget, ttl=settings.cache_ttl)
    else:
        from controller.registry.client import RegistryClient
        from controller.registry.config import load_registry_config

        config = load_registry_config(args.registry_config, docker_config=args.docker_config)
        cache, tier = await open_registry_cache(settings)
        if tier is not None:
            closers.append(tier.close)  # closers run last first: after the client's writes
        client = RegistryClient(config, cache=cache)
        await client.__aenter__()
        closers.append(client.close)

        def read_stats() -> RegistryStats:
            return client.stats

        stats = read_stats
        resolver = MemoResolver(client, ttl=settings.cache_ttl)
        assessor = MemoAssessor(
            resolver, budget=settings.budget, bounds=settings.bounds, ttl=settings.cache_ttl,
            trusted_roots=trusted_roots(getattr(args, "trusted_root", None)),
        )

    metrics = Metrics(snapshot=lambda: store.snapshot, registry_stats=stats)
    if tier is not None:
        metrics.registry.register(tier.collector())
    started = await server.start(
        settings,
        store=store,
        assessor=assessor,
        metrics=metrics,
        ssl_context=reloader.context,
        tasks=[
            lambda: files.watch(settings.policy_reload_interval),
            *([lambda: reloader.watch(settings.cert_reload_interval)] if watched else []),
        ],
        closers=closers,
    )
    log.info(
        "listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": started.port,
                "offline": bool(args.offline),
                "policies": len(store.snapshot.policies),
                "errors": len(store.snapshot.errors),
            }
        },
    )
    return started


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    started = await start(args, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down", extra={"fields": {"timeout": settings.shutdown_timeout}})
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await started.close()
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 2 for bad arguments or files."""
    from controller import logs

    settings = webhook_settings(args)
    handler = logs.configure(level=settings.log_level, batched=True)
    try:
        refuse_with_offline(args, "registry_config", "docker_config", "shared_cache")
        return asyncio.run(_serve(args, settings))
    except InputError as exc:
        log.error("cannot start", extra={"fields": {"error": exc.message}})
        print(f"baseguard serve: {exc.message}", file=sys.stderr)
        return ExitCode.USAGE
    finally:
        logs.unconfigure(handler)
