"""``baseguard fix``: edit Dockerfiles and manifests into compliance: pin, refresh, update.

The default is a dry run that prints a unified diff, so a person reviews
before anything changes; ``--write`` applies it, ``--check`` turns it into a
CI gate (exit 1 when something would change). What could not be resolved
(``--offline``, a registry that does not answer) is listed on stderr and left
as it is: ``fix`` never writes a reference it did not establish.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys
from typing import TYPE_CHECKING, Any

from controller.cli.options import (
    add_budget_option,
    add_registry_options,
    docs,
    refuse_with_offline,
)
from controller.errors import ExitCode, InputError

if TYPE_CHECKING:
    from controller.fix.plan import FilePlan, Lookups, Modes
    from controller.fix.sites import Found
    from controller.policy.model import CompiledPolicy


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fix",
        help="edit Dockerfiles and manifests into compliance: pin, refresh or update images",
        description="Rewrite the image references of Dockerfiles (FROM, or the ARG default a "
        "FROM ${VAR} expands), Kubernetes manifests (every workload kind and container list) "
        "and kustomizations (images:) so they pass the policies. Only the references change: "
        "comments, formatting and line endings stay as they are. By default prints a unified "
        "diff and changes nothing.",
        epilog="Exit codes: 0 done (nothing to change, or --write wrote it); 1 with --check: "
        "something would change; 2 bad input or usage; 3 with --check: nothing would change, "
        "but something could not be resolved (--offline, or a lookup failed). " + docs("cli.md"),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="Dockerfiles, manifests, kustomizations or folders")
    p.add_argument(
        "-p", "--policy", action="append", default=[], metavar="POLICY",
        help="policy file or folder (repeatable): what --update may choose, and its replacements",
    )
    what = p.add_argument_group("what to fix (at least one)")
    what.add_argument(
        "--pin", action="store_true",
        help="add the digest the tag names now: repo:tag -> repo:tag@sha256:... (a multi-arch "
        "tag's index digest, never one platform's)",
    )
    what.add_argument(
        "--refresh", action="store_true", help="renew a tag@digest to the digest the same tag names now"
    )
    what.add_argument(
        "--update", action="store_true",
        help="move to the replacement a deprecated entry names, else to the newest tag the "
        "policies allow and do not deprecate, of the same variant and precision "
        "(3.8-slim -> 3.13-slim); a pinned digest follows the new tag",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--write", action="store_true", help="write the changes to the files")
    how.add_argument(
        "--check", action="store_true",
        help="change nothing; exit 1 when something would change (CI, pre-commit)",
    )
    p.add_argument(
        "--namespace", metavar="NS",
        help="judge Dockerfiles, and manifests that name no namespace, as if in NS "
        "(so NS's BaseImagePolicies apply)",
    )
    add_registry_options(p, offline=False)
    p.add_argument(
        "--offline", action="store_true",
        help="no registry lookups: only what the policies alone decide (a deprecated entry's "
        "replacement) is changed; what needs the registry is listed as not resolved",
    )
    add_budget_option(p)
    p.set_defaults(func=run)


def _wanted(name: str) -> bool:
    from controller.cli.loaders import is_dockerfile
    from controller.documents import is_manifest
    from controller.fix.kustomize import is_kustomization

    return is_dockerfile(name) or is_manifest(name) or is_kustomization(name)


def read_exact(path: str) -> tuple[str, str]:
    """``(byte order mark or "", text)`` with line endings as they are in the file."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return ("\ufeff", text[1:]) if text.startswith("\ufeff") else ("", text)


def find_sites(path: str, text: str, namespace: str | None) -> Found:
    """The sites of one file, by what the file is."""
    from controller.cli.loaders import is_dockerfile
    from controller.fix.dockerfile import dockerfile_sites
    from controller.fix.manifests import manifest_sites

    if is_dockerfile(os.path.basename(path)):
        try:
            return dockerfile_sites(text, path, namespace=namespace)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    return manifest_sites(text, path, default_namespace=namespace or "default")


def run(args: argparse.Namespace) -> int:
    from controller.cli.loaders import chart_of, is_dockerfile
    from controller.documents import discover
    from controller.fix.plan import Modes
    from controller.policyfiles import load_policies

    modes = Modes(pin=args.pin, refresh=args.refresh, update=args.update)
    if not (modes.pin or modes.refresh or modes.update):
        raise InputError("say what to fix: --pin, --refresh and/or --update")
    if "-" in args.paths:
        raise InputError("fix edits files: name them (- for stdin has nothing to write back to)")
    refuse_with_offline(args, "registry_config", "docker_config")
    policies = load_policies(args.policy) if args.policy else []
    files: list[tuple[str, str, str, Found]] = []
    notes: list[str] = []
    for path in discover(args.paths, wanted=_wanted):
        name = os.path.basename(path)
        if not _wanted(name):
            raise InputError(f"{path}: not a Dockerfile, a manifest (.yaml, .yml, .json) nor a kustomization")
        chart = None if is_dockerfile(name) else chart_of(path)  # Dockerfiles are never templated
        if chart is not None:
            notes.append(f"{path}: in the Helm chart {chart}: templates are YAML only once rendered; not edited")
            continue
        bom, text = read_exact(path)
        files.append((path, bom, text, find_sites(path, text, args.namespace)))
    if not files:
        raise InputError("nothing to fix: the paths hold no Dockerfile, manifest or kustomization")

    plans = _plan(files, modes, policies, args)
    return _report(plans, files, notes, args)


def _plan(
    files: list[tuple[str, str, str, Found]],
    modes: Modes,
    policies: list[CompiledPolicy],
    args: argparse.Namespace,
) -> list[FilePlan]:
    from controller.fix.plan import plan_file

    async def each(lookups: Lookups | None) -> list[FilePlan]:
        return [
            await plan_file(path, text, found.sites, found.notes, modes, policies, lookups)
            for path, _, text, found in files
        ]

    if args.offline:
        return asyncio.run(each(None))

    async def online() -> list[FilePlan]:
        from controller.fix.registry import RegistryLookups
        from controller.registry.client import RegistryClient
        from controller.registry.config import load_registry_config

        config = load_registry_config(args.registry_config, docker_config=args.docker_config)
        async with RegistryClient(config) as client:
            return await asyncio.wait_for(each(RegistryLookups(client)), timeout=args.budget)

    try:
        return asyncio.run(online())
    except TimeoutError:
        raise InputError(f"the registry lookups did not finish within --budget {args.budget:g}s") from None


def _report(plans: list[FilePlan], files: list[tuple[str, str, str, Found]], notes: list[str], args: argparse.Namespace) -> int:
    boms = {path: bom for path, bom, _, _ in files}
    changed = [p for p in plans if p.changes]
    for plan in changed:
        new = plan.new_text
        if args.write:
            with open(plan.source, "w", encoding="utf-8", newline="") as handle:
                handle.write(boms[plan.source] + new)
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    plan.text.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{plan.source}",
                    tofile=f"b/{plan.source}",
                )
            )
            if not new.endswith("\n"):
                sys.stdout.write("\n\\ No newline at end of file\n")
    for note in [*notes, *(n for p in plans for n in p.notes)]:
        print(f"baseguard fix: {note}", file=sys.stderr)
    count = sum(len(p.changes) for p in plans)
    unresolved = sum(p.unresolved for p in plans)
    verb = "changed" if args.write else "to change"
    summary = f"{count} reference(s) {verb} in {len(changed)} file(s)"
    if unresolved:
        summary += f"; {unresolved} could not be resolved (listed above)"
    print(f"baseguard fix: {summary}", file=sys.stderr)
    if args.check:
        if count:
            return ExitCode.DENIED
        return ExitCode.UNJUDGED if unresolved else ExitCode.OK
    return ExitCode.OK
