"""``baseguard lineage``: an image's base chain, verified against its layers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from controller.cli.options import add_budget_option, add_registry_options, docs
from controller.errors import ExitCode, LookupFailed


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lineage",
        help="print an image's base chain, verified against its layers",
        description="Resolve an image as the webhook does and print its chain (image, base, "
        "base's base), per platform of an index: each level's digest, how it was found "
        "(annotation, label, layers, provenance) and whether its layers confirm it. "
        "--format json keeps every level of every platform, with its platform.",
        epilog="Exit codes: 0 resolved, 1 the lookup failed, 2 bad input (the command's, or a "
        "registry document refused for a bound: too large or nested too deep). " + docs("cli.md"),
    )
    p.add_argument("image", help="the image reference, e.g. docker.io/library/python:3.12-slim")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (a tree, default) or json"
    )
    p.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="only this platform of an index"
    )
    p.add_argument(
        "--max-depth",
        type=max_depth,
        default=4,
        metavar=f"0..{MAX_DEPTH}",
        help=f"how many base levels to follow (default 4; at most {MAX_DEPTH}, as a policy's "
        "lineage.maxDepth)",
    )
    p.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="IMAGE",
        help="a known base for detection by layers (repeatable)",
    )
    p.add_argument(
        "-p",
        "--policy",
        action="append",
        default=[],
        metavar="PATH",
        help="policy files or folders: every level is checked against the spec.trust "
        "authorities they name and shows who signed it (keyless needs --trusted-root)",
    )
    add_registry_options(p, offline=False)
    add_budget_option(p)
    p.set_defaults(func=run)


#: The policy schema's cap on ``lineage.maxDepth``: a deeper walk costs requests nobody asked for.
MAX_DEPTH = 10


def max_depth(text: str) -> int:
    """``--max-depth``: an integer within what a policy may ask for."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range: 0..{MAX_DEPTH} (a policy's lineage.maxDepth has the same cap)"
        )
    return value


def run(args: argparse.Namespace) -> int:
    from controller.cli.output import lineage_dict, write_lineage_text
    from controller.lineage.resolve import LineageResolver
    from controller.reference import parse
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config
    from controller.registry.jsonread import is_refusal

    ref = parse(args.image)
    config = load_registry_config(args.registry_config, docker_config=args.docker_config)
    catalog = [parse(c) for c in args.catalog]

    authorities = _authorities(args.policy) if args.policy else None

    async def work_and_sign() -> tuple[Any, Any]:
        async with RegistryClient(config) as client:
            resolver = LineageResolver(client)
            lineage = await asyncio.wait_for(
                resolver.resolve(
                    ref,
                    max_depth=args.max_depth,
                    platforms=[args.platform] if args.platform else None,
                    catalog=catalog,
                ),
                timeout=args.budget,
            )
            if authorities is None:
                return lineage, None
            return lineage, await _signers(lineage, authorities, args, client)

    try:
        lineage, signers = asyncio.run(work_and_sign())
    except TimeoutError:
        print(
            f"baseguard: lookup of {ref.normalized} did not finish within {args.budget}s",
            file=sys.stderr,
        )
        return ExitCode.DENIED
    except LookupFailed as exc:  # the resolver reports trouble as data; this is the last net
        print(f"baseguard: lookup of {ref.normalized} failed: {exc}", file=sys.stderr)
        return ExitCode.DENIED
    if args.format == "json":
        json.dump(lineage_dict(lineage, signers), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_lineage_text(lineage, sys.stdout, signers)
    failures = [lineage.failure, *(p.failure for p in lineage.platforms)]
    refused = [text for text in failures if text is not None and is_refusal(text)]
    if refused:
        # What the registry sent is not a document baseguard reads: bad input, said plainly.
        for text in refused:
            print(f"baseguard: {ref.normalized}: {text}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.DENIED if lineage.failure else ExitCode.OK


def _authorities(paths: list[str]) -> Any:
    """The spec.trust authorities of the policies at ``paths``, each once (by fingerprint)."""
    from controller.policyfiles import compile_documents, load_policy_documents

    found: dict[str, Any] = {}
    for policy in compile_documents(load_policy_documents(paths)):
        for authority in policy.trust.authorities if policy.trust is not None else ():
            found.setdefault(authority.fingerprint, authority)
    if not found:
        from controller.errors import InputError

        raise InputError(f"no spec.trust authorities in {', '.join(paths)}: nothing to check signatures with")
    return tuple(found.values())


async def _signers(lineage: Any, authorities: Any, args: argparse.Namespace, client: Any) -> Any:
    """Who signed each level: every level, every authority, through the one registry client."""
    import datetime as dt

    from controller.assess import trust_requests
    from controller.cli.options import trusted_roots
    from controller.lineage.budget import ReviewBudget
    from controller.lineage.signatures import SignatureChecker
    from controller.policy.trustrules import signed_by
    from controller.policy.trustspec import AppliesTo, TrustPolicy, subjects

    trust = TrustPolicy(authorities, applies_to=AppliesTo.ALL)
    checker = SignatureChecker(client, roots=trusted_roots(args.trusted_root))
    asked = trust_requests(checker, trust, subjects(trust, lineage))
    answers = await asyncio.wait_for(
        checker.check([w for _, w in asked], budget=ReviewBudget(), now=dt.datetime.now(dt.UTC)),
        timeout=args.budget,
    )
    return signed_by({key: answer for (key, _), answer in zip(asked, answers, strict=True)})
