"""``baseguard audit``: the operator's audit, once, from a laptop, read-only.

Reads the cluster's policies (or ``-p`` files), namespaces and workloads with
a kubeconfig, judges every pod controller and unowned Pod through the same
:class:`~controller.assess.Assessor` as admission (pull secrets included),
and prints a table or JSON. Nothing is written to the cluster.

``--uses BASE`` answers "who still runs on debian:buster?": every workload
whose image, or any base in its lineage, matches the reference glob. Every
image's lineage is looked up for that (not only where a policy needs it).

Exit codes, as ``check``: 0 nothing denied (with ``--uses``: nothing uses
the base); 1 something would be denied at admission (with ``--uses``: some
workload uses it); 2 bad arguments, an unreachable cluster or a bad policy file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli.options import (
    add_now_option,
    add_registry_options,
    add_width_option,
    colour,
    docs,
    parse_now,
    refuse_with_offline,
    text_width,
)
from controller.errors import BaseguardError, ExitCode, InputError

if TYPE_CHECKING:
    from controller.operator.audit.runner import AuditRun
    from controller.operator.kube import Kube

def register(sub: Any) -> None:
    parser = sub.add_parser(
        "audit",
        help="evaluate what already runs in a cluster (dry run); --uses finds who runs on a base",
        description="Judge the workloads that already run in a cluster against its policies (or "
        "policy files), as the webhook would judge them now, without changing anything: the "
        "dry run before switching a policy to Enforce. With --uses BASE-GLOB, list the workloads "
        "whose images are built on a base instead. Needs the operator extra (pip install "
        "'baseguard[operator]') and read access to the cluster.",
        epilog="Exit codes: 0 nothing would be denied (--uses: no workload uses the base); 1 "
        "something would be denied (--uses: a workload uses the base); 2 bad arguments or "
        "policies, the cluster cannot be read, or the operator extra is not installed. "
        + docs("rollout.md"),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", help="audit this namespace only (default: all)")
    parser.add_argument(
        "--uses",
        metavar="BASE-GLOB",
        help="list the workloads whose lineage includes this base, e.g. debian:buster or 'python:3.8*'",
    )
    parser.add_argument(
        "--fixable",
        action="append",
        default=[],
        choices=("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"),
        metavar="SEVERITY",
        help="with --uses: only workloads whose base carries fixable vulnerabilities of this "
        "severity, read from the scans attached to their images (repeatable)",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    add_width_option(parser)
    parser.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        metavar="POLICY",
        help="judge with these policy files instead of the cluster's (repeatable)",
    )
    add_registry_options(parser)
    parser.add_argument(
        "--no-pull-secrets",
        dest="pull_secrets",
        action="store_false",
        help="do not read pods' imagePullSecrets",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="lookup time for each batch of objects (default 60)",
    )
    parser.add_argument(
        "--batch", type=int, default=50, metavar="N", help="objects assessed together (default 50)"
    )
    add_now_option(parser)


async def audit(
    args: argparse.Namespace, kube: Kube, *, now: dt.datetime
) -> tuple[AuditRun, list[str]]:
    from controller.assess import Assessor
    from controller.cli.options import trusted_roots
    from controller.lineage.catalog import Catalog
    from controller.lineage.resolve import LineageResolver
    from controller.lineage.signatures import SignatureChecker
    from controller.operator.audit.runner import Assessors, Auditor
    from controller.operator.audit.uses import probe_policy
    from controller.operator.credentials import PullSecrets
    from controller.operator.policies import cluster_policies
    from controller.policyfiles import load_policies
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    problems: list[str] = []
    if args.policy:
        policies = load_policies(args.policy)
    else:
        policies, problems = await cluster_policies(kube)
    if args.uses:
        policies.append(probe_policy(args.fixable))
    # Read before any lookup: a bad file is a usage error, and keyless authorities are
    # judged against the same roots as ``check`` and the webhook (offline, from files).
    roots = trusted_roots(getattr(args, "trusted_root", None))
    client = (
        None
        if args.offline
        else RegistryClient(
            load_registry_config(args.registry_config, docker_config=args.docker_config)
        )
    )
    catalog = Catalog()

    def make(view: RegistryClient | None) -> Assessor:
        if view is None:
            return Assessor(None, budget=args.budget)
        return Assessor(
            LineageResolver(view, catalog=catalog),
            budget=args.budget,
            signatures=SignatureChecker(view, roots=roots),
        )

    try:
        auditor = Auditor(
            kube=kube,
            assessors=Assessors(make, client),
            clock=lambda: now,
            pull_secrets=PullSecrets(kube) if args.pull_secrets and client else None,
            namespace=args.namespace,
            budget=args.budget,
            batch=args.batch,
        )
        return await auditor.run(policies), problems
    finally:
        if client is not None:
            await client.close()


# --------------------------------------------------------------------------- output


def _strip_probe(run: AuditRun) -> list[Any]:
    """Workload results without the ``--uses`` probe's findings."""
    from dataclasses import replace

    from controller.operator.audit.uses import PROBE

    out = []
    for _, result in run.pairs:
        images = tuple(
            replace(
                r,
                violations=tuple(v for v in r.violations if v.policy != PROBE),
                policies=tuple(p for p in r.policies if p != PROBE),
            )
            for r in result.results
        )
        out.append(replace(result, results=images))
    return out


def write_uses(
    run: AuditRun, pattern: str, out: TextIO, *, fmt: str, fixable: Sequence[str] = ()
) -> int:
    from controller.operator.audit.uses import UsesPattern, uses

    found = uses(run.pairs, UsesPattern(pattern), fixable=fixable)
    if fmt == "json":
        doc = {
            "uses": pattern,
            "count": len(found),
            "objects": run.objects,
            "workloads": [
                {
                    "kind": u.ref.kind,
                    "namespace": u.ref.namespace,
                    "name": u.ref.name,
                    "container": u.container,
                    "image": u.image,
                    "depth": u.depth,
                    "matched": list(u.matched),
                    **({"fixable": list(u.fixable)} if fixable else {}),
                }
                for u in found
            ],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        rows = [("NAMESPACE", "KIND", "NAME", "CONTAINER", "IMAGE", "VIA")]
        for u in found:
            via = (
                "itself"
                if u.depth == 0
                else f"base, {u.depth} level{'s' if u.depth > 1 else ''} up"
            )
            rows.append(
                (
                    u.ref.namespace or "-",
                    u.ref.kind,
                    u.ref.name,
                    u.container or "-",
                    u.image,
                    f"{via}: {', '.join(u.matched)}"
                    + (f"; fixable in the base: {', '.join(u.fixable)}" if u.fixable else ""),
                )
            )
        if found:
            widths = [max(len(r[i]) for r in rows) for i in range(5)]
            for row in rows:
                out.write(
                    "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5]))
                    + "  "
                    + row[5]
                    + "\n"
                )
        noun = "workload" if len({u.ref for u in found}) == 1 else "workloads"
        out.write(
            f"\n{len({u.ref for u in found})} {noun} ({len(found)} image(s)) of {run.objects} audited use {pattern}\n"
        )
    return ExitCode.DENIED if found else ExitCode.OK


def write_report(
    run: AuditRun,
    problems: Sequence[str],
    out: TextIO,
    *,
    fmt: str,
    colour: bool,
    width: int | None = None,
) -> int:
    from controller.cli.output import check_json, wrap_spans, write_check_text
    from controller.operator.audit.uses import PROBE
    from controller.policy.model import Action

    results = _strip_probe(run)
    counts = {
        k: {"objects": c.objects, "violations": c.violations}
        for k, c in sorted(run.counts.items())
        if PROBE not in k
    }
    if fmt == "json":
        doc = check_json(results, offline=False, skipped=[])
        doc.pop("skipped", None)
        doc["policies"] = counts
        doc["policyErrors"] = list(problems)
        doc["objects"] = run.objects
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        write_check_text(results, out, offline=False, skipped=[], colour=colour, width=width)
        lines = [f"{run.objects} object(s) audited in {run.seconds:.1f}s"]
        for key, c in counts.items():
            lines.append(f"  {key.replace('//', ' ')}: {c['objects']} object(s), {c['violations']} violating")
        lines += [f"  invalid policy, not applied: {line}" for line in problems]
        for line in lines:
            for physical in wrap_spans([(line, None)], width, hang=4):
                out.write(physical + "\n")
    return ExitCode.DENIED if any(r.verdict is Action.DENY for r in results) else ExitCode.OK


def run(args: argparse.Namespace) -> int:
    from controller.operator.kube import Kube, KubeError, is_dns1123_label

    try:
        refuse_with_offline(args, "registry_config", "docker_config")
        now = parse_now(args.now)
        if args.namespace is not None and not is_dns1123_label(args.namespace):
            raise InputError(f"--namespace {args.namespace!r} is not a namespace name")
        pattern = args.uses
        if args.width is not None and (args.format != "text" or pattern is not None):
            shaped = "--uses" if pattern is not None else f"--format {args.format}"
            raise InputError(f"--width shapes the report's text; {shaped} is never wrapped")
        if args.fixable and pattern is None:
            raise InputError("--fixable lists the workloads --uses finds: give --uses BASE-GLOB too")
        if pattern is not None:
            from controller.operator.audit.uses import UsesPattern

            try:
                UsesPattern(pattern)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        kube = Kube.connect(kubeconfig=args.kubeconfig, context=args.context)
        try:
            result, problems = asyncio.run(audit(args, kube, now=now))
        finally:
            kube.close()
    except KubeError as exc:
        print(f"baseguard audit: the cluster did not answer: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except BaseguardError as exc:
        print(f"baseguard audit: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    for line in problems:
        print(f"baseguard audit: invalid policy, not applied: {line}", file=sys.stderr)
    if pattern is not None:
        return write_uses(result, pattern, sys.stdout, fmt=args.format, fixable=args.fixable)
    return write_report(
        result, problems, sys.stdout, fmt=args.format, colour=colour(sys.stdout),
        width=text_width(args, sys.stdout),
    )  # fmt: skip
