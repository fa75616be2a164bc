"""``baseguard serve``: the webhook on its own, with policies from files.

For local use, a CI cluster (kind) without the operator, and the benchmark.
Policies come from ``-p`` files and folders and are re-read when they change;
a file that breaks keeps its last good policies in force, and ``/readyz`` and
the log say why. Without ``--tls-cert``/``--tls-key`` a throw-away CA and
serving certificate for localhost are made, and the CA is printed so a client
(or a kind cluster's webhook configuration) can trust it.

Start-up is cheap for the rest of the CLI: ``add_arguments`` needs nothing but
argparse; aiohttp and the registry client are imported by :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.cli.options import add_registry_options
from controller.errors import InputError
from controller.policy.store import PolicyStore, Snapshot, policy_key
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.policy.model import CompiledPolicy
    from controller.registry.client import RegistryClient
    from controller.webhook.metrics import RegistryStats, StatsSource

log = logging.getLogger("baseguard.webhook.serve")

EXIT_OK, EXIT_USAGE = 0, 2
_DEFAULTS = Settings()
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_ERRORS_SHOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``baseguard serve`` (the lead wires the sub-command)."""
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
    parser.add_argument(
        "--host", default=_DEFAULTS.host, help=f"address to listen on (default {_DEFAULTS.host})"
    )
    parser.add_argument(
        "--port", type=int, default=_DEFAULTS.port, help=f"HTTPS port (default {_DEFAULTS.port})"
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serving certificate (PEM); reloaded when it changes"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    parser.add_argument(
        "--budget",
        type=float,
        default=_DEFAULTS.budget,
        metavar="SECONDS",
        help=f"longest time one review may take when the apiserver sends no ?timeout= (default {_DEFAULTS.budget:g})",
    )
    parser.add_argument(
        "--safety-margin",
        type=float,
        default=_DEFAULTS.safety_margin,
        metavar="SECONDS",
        help=f"kept back from the apiserver's ?timeout= (default {_DEFAULTS.safety_margin:g})",
    )
    parser.add_argument(
        "--log-level", default=_DEFAULTS.log_level, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed arguments; everything not on the command line keeps its default."""
    return Settings(
        host=args.host,
        port=args.port,
        budget=args.budget,
        safety_margin=args.safety_margin,
        log_level=args.log_level,
    )


# --------------------------------------------------------------------------- policy files


def _is_manifest(name: str) -> bool:
    return name.lower().endswith(_MANIFEST_SUFFIXES) and not name.startswith(".")


@dataclass
class PolicyFiles:
    """Policy files under ``paths``, compiled into ``store``, re-read when they change.

    Folders are walked like ``baseguard check -p`` does (``.yaml``/``.yml``/
    ``.json``, hidden entries and ``tests/`` folders left out). Each file is
    loaded on its own, so one broken file does not take the others down:

    * a file that does not read, parse or compile keeps its last good
      policies in force, and its error is recorded (``/readyz``, the log);
    * a file that disappears from a folder takes its policies with it;
      a file named explicitly with ``-p`` that disappears is an error
      (its last good policies stay: it was asked for by name);
    * a policy defined in two files is an error on the later file.
    """

    paths: Sequence[str]
    store: PolicyStore
    _good: dict[str, dict[str, CompiledPolicy]] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _signature: dict[str, tuple[int, int, int]] | None = None

    def discover(self) -> tuple[list[str], dict[str, str]]:
        """(files, errors for missing explicit paths)."""
        files: list[str] = []
        missing: dict[str, str] = {}
        seen: set[str] = set()

        def add(path: str) -> None:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                files.append(path)

        for path in self.paths:
            if os.path.isdir(path):
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "tests")
                    for name in sorted(names):
                        if _is_manifest(name):
                            add(os.path.join(root, name))
            elif os.path.exists(path):
                add(path)
            else:
                missing[path] = f"{path}: no such file or directory"
        return files, missing

    def signature(self) -> dict[str, tuple[int, int, int]]:
        files, missing = self.discover()
        out: dict[str, tuple[int, int, int]] = {path: (0, 0, 0) for path in missing}
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                out[path] = (0, 0, 0)
            else:
                out[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return out

    def changed(self) -> bool:
        return self._signature != self.signature()

    def load(self) -> Snapshot:
        """One pass over every file; publishes a new snapshot (always marked loaded)."""
        from controller.cli.loaders import load_policy_documents
        from controller.policy.compile import check_policy, compile_policy

        self._signature = self.signature()
        files, missing = self.discover()
        errors: dict[str, str] = dict(missing)
        present = set(files) | set(missing)
        for path in list(self._good):
            if path not in present:
                del self._good[path]  # gone from its folder: its policies go too
        for path in files:
            try:
                documents = load_policy_documents([path])
            except InputError as exc:
                errors[path] = exc.message
                continue
            problems = [
                f"document {index + 1}: {err}"
                for _, index, doc in documents
                for err in check_policy(doc)
            ]
            if problems:
                shown = problems[:_MAX_ERRORS_SHOWN]
                more = len(problems) - len(shown)
                errors[path] = "; ".join(shown) + (f"; and {more} more" if more else "")
                continue
            compiled: dict[str, CompiledPolicy] = {}
            for _, _, doc in documents:
                policy = compile_policy(doc)
                compiled[policy_key(policy.kind, policy.namespace, policy.name)] = policy
            self._good[path] = compiled
        policies: dict[str, CompiledPolicy] = {}
        origin: dict[str, str] = {}
        for path in [*files, *missing]:
            for key, policy in self._good.get(path, {}).items():
                if key in policies:
                    errors.setdefault(
                        path,
                        f"{key.replace('//', ' ')} is also defined in {origin[key]}; this copy is ignored",
                    )
                    continue
                policies[key] = policy
                origin[key] = path
        previous = self._errors
        self._errors = errors
        for path, reason in errors.items():
            if previous.get(path) != reason:
                log.warning(
                    "policy file refused; its last good policies stay in force",
                    extra={"fields": {"file": path, "error": reason}},
                )
        snapshot = self.store.replace(policies, errors, loaded=True)
        log.info(
            "policies loaded",
            extra={
                "fields": {
                    "policies": sorted(p.key for p in snapshot.policies),
                    "errors": len(errors),
                    "generation": snapshot.generation,
                }
            },
        )
        return snapshot

    async def watch(self, interval: float) -> None:
        """Re-read every file whenever any of them changes, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(self.changed):
                    await asyncio.to_thread(self.load)
            except Exception:  # the watcher must outlive any surprise
                log.exception("policy reload failed; the policies in force are unchanged")


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A started webhook: its runner, bound port and background tasks (tests use it too)."""

    runner: Any
    port: int
    tasks: list[asyncio.Task[None]]
    closers: list[Any]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.cleanup()
        for closer in reversed(self.closers):
            await closer.__aexit__(None, None, None)


def _tls(args: argparse.Namespace, settings: Settings, out: Any) -> Any:
    from controller.webhook.tls import CertReloader, self_signed

    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError(
            "--tls-cert and --tls-key go together: give both, or neither for a self-signed pair"
        )
    if args.tls_cert:
        try:
            return CertReloader(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    hosts = ["localhost", "127.0.0.1"]
    if settings.host not in ("0.0.0.0", "::", "", *hosts):
        hosts.append(settings.host)
    pair = self_signed(hosts)
    directory = tempfile.mkdtemp(prefix="baseguard-tls-")
    ca, cert, key = pair.write(directory)
    print(
        f"baseguard serve: no --tls-cert/--tls-key, so a self-signed certificate for "
        f"{', '.join(hosts)} is in use (local use only). Trust this CA ({ca}):\n"
        f"{pair.ca_pem.decode()}",
        file=out,
        flush=True,
    )
    return CertReloader(cert, key)


async def start(args: argparse.Namespace, settings: Settings, *, out: Any = None) -> Server:
    """Load policies, open the registry client, bind the port; raise InputError on bad arguments."""

    from controller.webhook.app import make_app
    from controller.webhook.caching import MemoAssessor, MemoResolver
    from controller.webhook.metrics import Metrics

    store = PolicyStore()
    files = PolicyFiles(list(args.policy), store)
    _, missing = files.discover()
    if missing:
        raise InputError("; ".join(missing.values()))
    await asyncio.to_thread(files.load)
    reloader = _tls(args, settings, out or sys.stdout)

    closers: list[Any] = []
    stats: StatsSource | None = None
    if args.offline:
        assessor = MemoAssessor(None, budget=settings.budget, ttl=settings.cache_ttl)
    else:
        from controller.registry.client import RegistryClient
        from controller.registry.config import load_registry_config

        config = load_registry_config(args.registry_config, docker_config=args.docker_config)
        client = RegistryClient(config)
        await client.__aenter__()
        closers.append(client)
        stats = _stats_of(client)
        resolver = MemoResolver(client, ttl=settings.cache_ttl)
        assessor = MemoAssessor(resolver, budget=settings.budget, ttl=settings.cache_ttl)

    metrics = Metrics(snapshot=lambda: store.snapshot, registry_stats=stats)
    app = make_app(store=store, assessor=assessor, settings=settings, metrics=metrics)
    try:
        runner, port = await listen(app, settings, reloader.context)
    except InputError:
        for closer in closers:
            await closer.__aexit__(None, None, None)
        raise
    tasks = [
        asyncio.create_task(files.watch(settings.policy_reload_interval)),
        asyncio.create_task(reloader.watch(settings.cert_reload_interval)),
    ]
    log.info(
        "listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": port,
                "offline": bool(args.offline),
                "policies": len(store.snapshot.policies),
                "errors": len(store.snapshot.errors),
            }
        },
    )
    return Server(runner=runner, port=port, tasks=tasks, closers=closers)


async def listen(app: Any, settings: Settings, ssl_context: Any) -> tuple[Any, int]:
    """Serve ``app`` over HTTPS on ``settings.host``/``port``: (its ``AppRunner``, the bound port).

    Shared by ``serve`` and ``run`` (:mod:`controller.operator.run`). Raises
    :class:`InputError` when the port cannot be bound.
    """
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise InputError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    return runner, _bound_port(runner, settings.port)


def _bound_port(runner: Any, default: int) -> int:
    for address in getattr(runner, "addresses", []):
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


def _stats_of(client: RegistryClient) -> StatsSource:
    def read() -> RegistryStats:
        return client.stats

    return read


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    server = await start(args, settings)
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
        await server.close()
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 2 for bad arguments or files."""
    from controller import logs

    settings = settings_from(args)
    handler = logs.configure(level=settings.log_level, batched=True)
    try:
        return asyncio.run(_serve(args, settings))
    except InputError as exc:
        log.error("cannot start", extra={"fields": {"error": exc.message}})
        print(f"baseguard serve: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        logs.unconfigure(handler)
