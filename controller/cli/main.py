"""The ``baseguard`` command line.

Start-up is a feature: ``check`` runs in CI loops, so heavy modules (aiohttp,
the registry client, the webhook) are imported inside the command that needs
them, and kopf/kubernetes never by ``check``/``serve``.

Exit codes: 0 nothing denied; 1 something denied (or a policy test failed);
2 bad input, bad policy or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller import __version__
from controller.cli.options import add_now_option, add_registry_options, parse_now
from controller.errors import BaseguardError, InputError, PolicyError

if TYPE_CHECKING:
    from controller.assess import Assessor
    from controller.policy.model import CompiledPolicy

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


def compile_documents(documents: Sequence[tuple[str, int, dict[str, Any]]]) -> list[CompiledPolicy]:
    """Compile every policy document; all problems reported at once, naming file and document."""
    from controller.policy.compile import compile_checked

    problems: list[str] = []
    policies: list[CompiledPolicy] = []
    for path, index, doc in documents:
        policy, errors = compile_checked(doc)
        problems.extend(f"{path} (document {index + 1}): {err}" for err in errors)
        if policy is not None:
            policies.append(policy)
    if problems:
        raise PolicyError("", "invalid policy:\n  " + "\n  ".join(problems))
    return policies


def load_policies(paths: Sequence[str]) -> list[CompiledPolicy]:
    from controller.cli.loaders import load_policy_documents

    documents = load_policy_documents(paths)
    if not documents:
        raise InputError(f"no policies found in {', '.join(paths)}")
    return compile_documents(documents)


def _colour(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


async def _with_assessor(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(assessor)`` with an online or offline assessor, closing the client after."""
    from controller.assess import Assessor

    if getattr(args, "offline", False):
        return await work(Assessor(None, budget=args.budget))
    from controller.lineage.resolve import LineageResolver
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    config = load_registry_config(args.registry_config, docker_config=args.docker_config)
    async with RegistryClient(config) as client:
        return await work(Assessor(LineageResolver(client), budget=args.budget))


def cmd_check(args: argparse.Namespace) -> int:
    from controller.cli.loaders import load_inputs
    from controller.cli.output import check_json, write_check_text

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

    results = asyncio.run(_with_assessor(args, work))
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
            colour=_colour(sys.stdout),
        )
    from controller.policy.model import Action

    denied = any(r.verdict is Action.DENY for r in results)
    return EXIT_DENIED if denied else EXIT_OK


def cmd_lineage(args: argparse.Namespace) -> int:
    from controller.cli.output import lineage_dict, write_lineage_text
    from controller.lineage.resolve import LineageResolver
    from controller.reference import parse
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    ref = parse(args.image)
    config = load_registry_config(args.registry_config, docker_config=args.docker_config)
    catalog = [parse(c) for c in args.catalog]

    async def work() -> Any:
        async with RegistryClient(config) as client:
            resolver = LineageResolver(client)
            return await asyncio.wait_for(
                resolver.resolve(
                    ref,
                    max_depth=args.max_depth,
                    platforms=[args.platform] if args.platform else None,
                    catalog=catalog,
                ),
                timeout=args.budget,
            )

    try:
        lineage = asyncio.run(work())
    except TimeoutError:
        print(
            f"baseguard: lookup of {ref.normalized} did not finish within {args.budget}s",
            file=sys.stderr,
        )
        return EXIT_DENIED
    if args.format == "json":
        json.dump(lineage_dict(lineage), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_lineage_text(lineage, sys.stdout)
    return EXIT_DENIED if lineage.failure else EXIT_OK


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from controller.cli.loaders import load_policy_documents
    from controller.policy.compile import check_policy

    documents = load_policy_documents(args.paths)
    if not documents:
        raise InputError(f"no policies found in {', '.join(args.paths)}")
    bad = 0
    for path, index, doc in documents:
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
        errors = check_policy(doc)
        if errors:
            bad += 1
            for err in errors:
                print(f"{path} (document {index + 1}, {name}): {err}")
        else:
            print(f"{path} (document {index + 1}, {name}): ok")
    print(f"{len(documents)} policies, {bad} invalid")
    return EXIT_USAGE if bad else EXIT_OK


def cmd_policy_crds(args: argparse.Namespace) -> int:
    import yaml

    from controller.policy.schema import crd_manifests

    sys.stdout.write(yaml.safe_dump_all(crd_manifests(), sort_keys=False))
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from controller.cli.testing import run_tests

    return run_tests(args.dirs, sys.stdout, colour=_colour(sys.stdout))


#: Commands whose arguments and code live in an adapter: (name, help, module with add_arguments/run).
_ADAPTERS = (
    ("serve", "run the admission webhook with policies from files", "controller.webhook.serve"),
    (
        "run",
        "in-cluster: the operator (policies from CRDs, status, certificates, audit) and the webhook",
        "controller.operator.run",
    ),
    (
        "audit",
        "evaluate what already runs in a cluster (dry run); --uses finds who runs on a base",
        "controller.operator.audit_cli",
    ),
)


def _run_adapter(module: str, args: argparse.Namespace) -> int:
    code: int = importlib.import_module(module).run(args)
    return code


def _registry_args(p: argparse.ArgumentParser) -> None:
    add_registry_options(p, offline=False)
    p.add_argument(
        "--budget",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time for all registry lookups (default 10)",
    )


def _chosen(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baseguard",
        description="Base image policy for Kubernetes: admission webhook, CI checks, audit.",
    )
    parser.add_argument("--version", action="version", version=f"baseguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen(argv)

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
    _registry_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("lineage", help="print an image's base chain, verified against its layers")
    p.add_argument("image")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--platform", metavar="OS/ARCH", help="only this platform of an index")
    p.add_argument("--max-depth", type=int, default=4)
    p.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="IMAGE",
        help="a known base for detection by layers (repeatable)",
    )
    _registry_args(p)
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    v = psub.add_parser(
        "validate", help="validate policies against the CRD schema and semantically"
    )
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.set_defaults(func=cmd_policy_validate)
    c = psub.add_parser("crds", help="print the CustomResourceDefinitions")
    c.set_defaults(func=cmd_policy_crds)

    p = sub.add_parser("test", help="run policy tests (baseguard-test.yaml files)")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.set_defaults(func=cmd_test)

    for name, help_text, module in _ADAPTERS:
        p = sub.add_parser(name, help=help_text)
        if name == chosen:  # only the chosen adapter's module is imported (kopf stays out of check)
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(func=functools.partial(_run_adapter, module))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except BaseguardError as exc:
        print(f"baseguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `baseguard check … | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
