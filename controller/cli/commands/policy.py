"""``baseguard policy validate`` and ``baseguard policy crds``: policy tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller.errors import ExitCode, InputError


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    v = psub.add_parser(
        "validate", help="validate policies against the CRD schema and semantically"
    )
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.set_defaults(func=validate)
    c = psub.add_parser("crds", help="print the CustomResourceDefinitions")
    c.set_defaults(func=crds)


def validate(args: argparse.Namespace) -> int:
    from controller.policy.compile import check_policy
    from controller.policyfiles import load_policy_documents

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
    return ExitCode.USAGE if bad else ExitCode.OK


def crds(args: argparse.Namespace) -> int:
    import yaml

    from controller.policy.schema import crd_manifests

    sys.stdout.write(yaml.safe_dump_all(crd_manifests(), sort_keys=False))
    return ExitCode.OK
