"""Options and helpers several commands share, defined once so ``check``, ``lineage``, ``serve``,
``run`` and ``audit`` spell and explain them the same way. Cheap to import: argparse only."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from controller.errors import InputError

if TYPE_CHECKING:
    from controller.assess import Assessor
    from controller.webhook.settings import Settings

T = TypeVar("T")

# An ArgumentParser or an argument group: argparse's own common base.
_Adder = argparse._ActionsContainer


def docs(page: str) -> str:
    """Where ``--help`` sends a reader for the rest (``baseguard`` is installed without its docs)."""
    return f"Documentation: docs/{page} in the baseguard source tree."


def add_registry_options(parser: _Adder, *, offline: bool = True) -> None:
    """``--registry-config``, ``--docker-config`` and (unless ``offline=False``) ``--offline``."""
    parser.add_argument(
        "--registry-config",
        metavar="FILE",
        help="registries YAML (hosts, insecure, CA, mirrors, credentials)",
    )
    parser.add_argument(
        "--docker-config", metavar="FILE", help="a Docker config.json to read credentials from"
    )
    parser.add_argument(
        "--trusted-root",
        metavar="[NAME=]FILE",
        action="append",
        default=None,
        help="a Sigstore trusted_root.json for spec.trust keyless authorities (NAME defaults to "
        "default); read once, offline: no TUF, nothing but the registry is reached",
    )
    if offline:
        parser.add_argument(
            "--offline",
            action="store_true",
            help="no registry lookups: the lineage rules are not evaluated (the output says so)",
        )


def refuse_with_offline(args: argparse.Namespace, *names: str) -> None:
    """Refuse options that do nothing under ``--offline`` (exit 2), instead of ignoring them.

    ``--offline --registry-config ci.yaml`` in a CI file reads as "use this registry":
    silence would let the reader believe it was used. ``names`` are the ``args``
    attributes; each counts as given when it is not ``None`` (their defaults).
    """
    if not getattr(args, "offline", False):
        return
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) is not None]
    if given:
        verb, them = ("does", "it") if len(given) == 1 else ("do", "them")
        raise InputError(
            f"{' and '.join(given)} {verb} nothing with --offline (no registry is asked): "
            f"drop {them}, or drop --offline"
        )


#: What ``audit`` and ``run`` need beyond ``check``: kopf and the Kubernetes client.
OPERATOR_MODULES = frozenset({"kopf", "kubernetes"})
OPERATOR_EXTRA = "pip install 'baseguard[operator]'"


def missing_operator_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """The message for ``exc`` when it is the operator extra that is missing, else ``None``.

    ``pip install baseguard`` gives ``check``, ``lineage``, ``serve``, ``policy`` and
    ``test``; ``audit`` and ``run`` talk to a cluster and need the extra. A traceback
    (exit 1, which means "denied") would say neither.
    """
    root = (exc.name or "").partition(".")[0]
    if root not in OPERATOR_MODULES:
        return None
    return (
        f"{command} needs the operator extra, and {root} is not installed: {OPERATOR_EXTRA} "
        "(check, lineage, policy, test and serve work without it)"
    )


def add_now_option(parser: _Adder) -> None:
    parser.add_argument(
        "--now", metavar="YYYY-MM-DD", help="judge dates (exceptions, enforceAfter) as of this day"
    )


def parse_now(text: str | None) -> dt.datetime:
    """``--now``: noon UTC of that day (dates are judged by day), else the current time."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--now {text!r}: expected a date YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)


def add_webhook_options(parser: _Adder) -> None:
    """``--host``, ``--port``, ``--budget``, ``--safety-margin``, ``--client-ca``,
    ``--client-name``, ``--log-level``: ``serve`` and ``run``."""
    from controller.webhook.settings import Settings

    defaults = Settings()
    parser.add_argument(
        "--host", default=defaults.host, help=f"address to listen on (default {defaults.host})"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.port, help=f"HTTPS port (default {defaults.port})"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=defaults.budget,
        metavar="SECONDS",
        help=f"longest time one review may take when the apiserver sends no ?timeout= (default {defaults.budget:g})",
    )
    parser.add_argument(
        "--safety-margin",
        type=float,
        default=defaults.safety_margin,
        metavar="SECONDS",
        help=f"kept back from the apiserver's ?timeout= (default {defaults.safety_margin:g})",
    )
    parser.add_argument(
        "--client-ca",
        metavar="FILE",
        help="mutual TLS: answer reviews only from clients with a certificate this CA signed "
        "(the apiserver, via its AdmissionConfiguration kubeconfig); see docs/rollout.md",
    )
    parser.add_argument(
        "--client-name",
        action="append",
        default=[],
        metavar="NAME",
        help="with --client-ca: a name (CN or DNS SAN) the client certificate must carry (repeatable)",
    )
    parser.add_argument(
        "--log-level",
        default=defaults.log_level,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help=f"JSON log lines on stderr from this level (default {defaults.log_level})",
    )
    add_shared_cache_options(parser)


def add_shared_cache_options(parser: _Adder) -> None:
    """``--shared-cache`` and its companions (``serve`` and ``run``): docs/shared-cache.md."""
    from controller.webhook.settings import Settings

    defaults = Settings()
    parser.add_argument(
        "--shared-cache",
        metavar="URL",
        help="redis:// or rediss:// URL of a Redis/Valkey the replicas share registry answers "
        "through (no password in the URL); see docs/shared-cache.md",
    )
    parser.add_argument(
        "--shared-cache-key-file",
        metavar="FILE",
        help="with --shared-cache: the HMAC key (32 bytes or more) entries are signed with",
    )
    parser.add_argument(
        "--shared-cache-password-file", metavar="FILE", help="with --shared-cache: the password"
    )
    parser.add_argument(
        "--shared-cache-ca", metavar="FILE", help="with rediss://: the CA of the database's certificate"
    )
    parser.add_argument(
        "--shared-cache-prefix",
        default=defaults.shared_cache_prefix,
        metavar="PREFIX",
        help=f"prefix of every key written (default {defaults.shared_cache_prefix})",
    )
    parser.add_argument(
        "--shared-cache-timeout",
        type=duration,
        default=defaults.shared_cache_timeout,
        metavar="DURATION",
        help=f"longest one call to the database may take (default {defaults.shared_cache_timeout * 1000:g}ms)",
    )
    parser.add_argument(
        "--shared-cache-wait",
        type=duration,
        default=defaults.shared_cache_wait,
        metavar="DURATION",
        help="longest a replica waits for another one's fetch of the same thing "
        f"(default {defaults.shared_cache_wait * 1000:g}ms)",
    )


def webhook_settings(args: argparse.Namespace) -> Settings:
    """The webhook's :class:`Settings` from ``serve``'s or ``run``'s arguments; the rest keeps its default."""
    from controller.webhook.settings import Settings

    return Settings(
        host=args.host,
        port=args.port,
        budget=args.budget,
        safety_margin=args.safety_margin,
        log_level=args.log_level,
        client_ca=args.client_ca,
        client_names=tuple(args.client_name),
        shared_cache_url=args.shared_cache,
        shared_cache_key_file=args.shared_cache_key_file,
        shared_cache_password_file=args.shared_cache_password_file,
        shared_cache_ca_file=args.shared_cache_ca,
        shared_cache_prefix=args.shared_cache_prefix,
        shared_cache_timeout=args.shared_cache_timeout,
        shared_cache_wait=args.shared_cache_wait,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(text: str) -> float:
    """``90d``, ``10m``, ``30s``, ``1.5h`` or plain seconds → seconds (argparse type)."""
    match = _DURATION.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 10m, 1h, 90d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def colour(stream: object) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


#: The narrowest ``--width`` taken: fewer columns leave no room for a finding's words.
WIDTH_MIN = 40


def add_width_option(parser: _Adder) -> None:
    parser.add_argument(
        "--width",
        type=_width,
        metavar="N",
        help="text: wrap lines at N columns, continuation lines indented (default: the "
        "terminal's width on a terminal; no wrapping when the output is a file or a pipe, "
        "as in CI, so each finding stays one line to grep; 0: never wrap)",
    )


def _width(text: str) -> int:
    try:
        columns = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of columns") from None
    if columns != 0 and columns < WIDTH_MIN:
        raise argparse.ArgumentTypeError(f"{columns} columns is too narrow: use {WIDTH_MIN} or more, or 0")
    return columns


def text_width(args: argparse.Namespace, stream: object) -> int | None:
    """The columns text output wraps at: ``--width``; else the terminal's when ``stream`` is
    one (``COLUMNS`` first, as :func:`shutil.get_terminal_size` reads it); else ``None``.

    Not a terminal means a CI log or a pipe: CI log viewers wrap long lines themselves,
    and a hard-wrapped finding would no longer be one line for ``grep`` to find.
    """
    given = getattr(args, "width", None)
    if given is not None:
        return given or None
    if not getattr(stream, "isatty", lambda: False)():
        return None
    return max(shutil.get_terminal_size().columns, WIDTH_MIN)


#: ``--budget`` of ``check`` and ``lineage`` when not given.
DEFAULT_BUDGET = 10.0


def add_budget_option(parser: _Adder) -> None:
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"time for all registry lookups (default {DEFAULT_BUDGET:g})",
    )


def budget_of(args: argparse.Namespace) -> float:
    """``--budget``, or its default where a command records "not given" as ``None``."""
    budget = getattr(args, "budget", None)
    return DEFAULT_BUDGET if budget is None else float(budget)


async def with_assessor(args: argparse.Namespace, work: Callable[[Assessor], Awaitable[T]]) -> T:
    """Run ``work(assessor)`` with an online or offline assessor, closing the client after."""
    from controller.assess import Assessor

    if getattr(args, "offline", False):
        return await work(Assessor(None, budget=budget_of(args)))
    from controller.lineage.resolve import LineageResolver
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    config = load_registry_config(args.registry_config, docker_config=args.docker_config)
    roots = trusted_roots(getattr(args, "trusted_root", None))
    async with RegistryClient(config) as client:
        from controller.lineage.signatures import SignatureChecker

        checker = SignatureChecker(client, roots=roots)
        return await work(
            Assessor(LineageResolver(client), budget=budget_of(args), signatures=checker)
        )


def trusted_roots(given: list[str] | None) -> dict[str, Any]:
    """``--trusted-root [NAME=]FILE`` read into roots by name (``sigstore`` loads only if given)."""
    if not given:
        return {}
    from controller.trust.roots import load_trusted_root

    roots: dict[str, Any] = {}
    for item in given:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = "default", item
        roots[name] = load_trusted_root(path)
    return roots
