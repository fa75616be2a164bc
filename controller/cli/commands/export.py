"""``baseguard export vap``: policies as ValidatingAdmissionPolicy objects, for GitOps.

The string rules of each policy (registry allowlist, disallowed tags, tagless
images, ``pinning.require``) judged by the apiserver itself, so they hold while
the webhook is unreachable under ``failurePolicy: Ignore``. What a policy holds
beyond them is named on stderr and in the objects' annotations; docs/vap.md has
the whole story.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from controller.cli.options import add_now_option, docs, parse_now
from controller.errors import ExitCode, InputError

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export policies for the apiserver: vap",
        epilog=docs("vap.md"),
    )
    psub = p.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    v = psub.add_parser(
        "vap",
        help="print a ValidatingAdmissionPolicy and its binding per policy (the string rules)",
        description="Print, for each policy, a ValidatingAdmissionPolicy and its "
        "ValidatingAdmissionPolicyBinding (admissionregistration.k8s.io/v1) that judge the "
        "policy's registry-free rules inside the apiserver: invalid-reference, "
        "registry-not-allowed, disallowed-tag, unpinned. Exceptions that have expired by --now "
        "are left out; the objects carry the first day a kept exception expires "
        "(baseguard.io/regenerate-by): regenerate by then. Rules that need the registry are "
        "left out and listed on stderr and in baseguard.io/not-exported.",
        epilog="Exit codes: 0 printed, 2 bad policy or usage. " + docs("vap.md"),
    )
    v.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        required=True,
        metavar="POLICY",
        help="policy file or folder (repeatable)",
    )
    v.add_argument(
        "--exclude-namespace",
        action="append",
        default=None,
        metavar="NAMESPACE",
        help="a namespace the objects never judge (repeatable; default: kube-system, as the "
        "chart's webhook; give --exclude-namespace= to exclude none)",
    )
    v.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="yaml (default) or json (a List)",
    )
    add_now_option(v)
    v.set_defaults(func=vap)


def _excluded(values: list[str] | None) -> list[str]:
    from controller.vap.generate import DEFAULT_EXCLUDED_NAMESPACES

    if values is None:
        return list(DEFAULT_EXCLUDED_NAMESPACES)
    out = []
    for value in values:
        if value == "":
            continue
        if not _NAMESPACE.match(value):
            raise InputError(
                f"--exclude-namespace {value!r}: not a namespace name (lower case letters, digits "
                "and '-', at most 63)"
            )
        out.append(value)
    return out


def vap(args: argparse.Namespace) -> int:
    import yaml

    from controller.policyfiles import load_policies
    from controller.vap.generate import export

    today = parse_now(args.now).date()
    excluded = _excluded(args.exclude_namespace)
    policies = sorted(load_policies(args.policy), key=lambda p: (p.kind, p.key))
    objects: list[dict[str, Any]] = []
    for policy in policies:
        result = export(policy, today=today, exclude_namespaces=excluded)
        objects += result.objects
        for part in result.not_exported:
            print(f"baseguard export vap: {policy.key}: not exported: {part}", file=sys.stderr)
        expired = len(policy.waivers) - len([w for w in policy.waivers if today <= w.until])
        if expired:
            print(
                f"baseguard export vap: {policy.key}: {expired} expired exception(s) left out",
                file=sys.stderr,
            )
        if result.regenerate_by is not None:
            print(
                f"baseguard export vap: {policy.key}: an exception expires: regenerate by "
                f"{result.regenerate_by.isoformat()}",
                file=sys.stderr,
            )
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=1 << 16))
    return ExitCode.OK
