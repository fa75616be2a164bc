"""``baseguard check``: manifests and Dockerfiles against policies, in CI or before a commit."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from controller.cli.options import (
    add_budget_option,
    add_now_option,
    add_registry_options,
    colour,
    parse_now,
    with_assessor,
)
from controller.errors import ExitCode, InputError

if TYPE_CHECKING:
    from controller.assess import Assessor


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="check manifests and Dockerfiles against policies")
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifests, Dockerfiles or folders")
    p.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        metavar="POLICY",
        help="policy file or folder (repeatable)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="no registry lookups; the lineage rules are not evaluated (the output says so)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_now_option(p)
    p.add_argument(
        "--namespace",
        default="default",
        help="namespace for manifests that name none (default: default)",
    )
    add_registry_options(p, offline=False)
    add_budget_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.cli.loaders import load_inputs
    from controller.cli.output import check_json, write_check_text
    from controller.policy.model import Action
    from controller.policyfiles import compile_documents, load_policies

    now = parse_now(args.now)
    loaded = load_inputs(args.paths, default_namespace=args.namespace)
    if args.policy:
        policies = load_policies(args.policy)
    elif loaded.policies:
        policies = compile_documents(loaded.policies)
    else:
        raise InputError("no policies: pass -p POLICY (a file or a folder, e.g. -p policies/)")

    async def work(assessor: Assessor) -> Any:
        return await assessor.assess(
            loaded.workloads, policies, now=now, namespace_labels=loaded.namespaces
        )

    results = asyncio.run(with_assessor(args, work))
    if args.format == "json":
        json.dump(
            check_json(results, offline=args.offline, skipped=loaded.skipped), sys.stdout, indent=2
        )
        sys.stdout.write("\n")
    else:
        write_check_text(
            results,
            sys.stdout,
            offline=args.offline,
            skipped=loaded.skipped,
            colour=colour(sys.stdout),
        )
    denied = any(r.verdict is Action.DENY for r in results)
    return ExitCode.DENIED if denied else ExitCode.OK
