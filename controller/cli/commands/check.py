"""``baseguard check``: manifests and Dockerfiles against policies, in CI or before a commit.

Never a green run that judged nothing: paths with nothing to judge are exit 2
(unless ``--allow-empty``), every input says which policies applied, and what
was skipped is listed with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.cli.options import (
    add_budget_option,
    add_now_option,
    add_registry_options,
    add_width_option,
    colour,
    docs,
    parse_now,
    refuse_with_offline,
    text_width,
    with_assessor,
)
from controller.errors import ExitCode, InputError

if TYPE_CHECKING:
    from controller.assess import Assessor, WorkloadResult
    from controller.cli.loaders import Loaded
    from controller.policy.model import CompiledPolicy

FORMATS = ("text", "json", "sarif", "junit")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check manifests and Dockerfiles against policies",
        description="Check Kubernetes manifests and Dockerfiles against base image policies.",
        epilog="Exit codes (stable): 0 nothing denied (warnings pass, unless --warn-exit-code); "
        "1 a policy denied an image; 2 bad input, bad policy or usage; 3 nothing denied, but an "
        "image could not be judged (a registry lookup failed, or --offline) and its policy's "
        "lineage.onLookupFailure denies that. " + docs("cli.md"),
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="manifests (YAML/JSON), Dockerfiles or folders; - reads YAML from stdin "
        "(helm template CHART | baseguard check - -p POLICY)",
    )
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
        help="no registry lookups: rules that need the registry are not evaluated, and each "
        "policy's lineage.onLookupFailure decides what that means (Deny by default)",
    )
    p.add_argument(
        "--allow-unevaluated",
        action="store_true",
        help="with --offline: list the rules not evaluated without counting them against the "
        "verdict (an allowlist then enforces nothing offline)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default); json; sarif (SARIF 2.1.0, for code scanning); "
        "junit (JUnit XML, for CI test reports)",
    )
    add_now_option(p)
    p.add_argument(
        "--namespace",
        metavar="NS",
        help="judge what names no namespace as if in NS: manifests without metadata.namespace "
        "(default: default) and Dockerfiles (default: none, so only cluster-wide policies "
        "judge them), so NS's BaseImagePolicies apply",
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Dockerfile build argument, as docker build takes it (repeatable)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 when the paths hold nothing to judge (by default that is exit 2: "
        "a mistyped path must not pass)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="YAML that is not a Kubernetes object (docker-compose.yml, values.yaml) and Helm "
        "chart folders are errors instead of being skipped",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="text: only what fails (denied and not judged images; warned ones too with a "
        "nonzero --warn-exit-code) and the summary",
    )
    add_width_option(p)
    p.add_argument(
        "--warn-exit-code",
        type=warn_exit_code,
        default=ExitCode.OK,
        metavar="N",
        help="exit N when the worst verdict is warn (default 0: warnings do not fail a build; "
        "1 fails on them too); not 2 or 3, which mean bad input and could not judge",
    )
    add_registry_options(p, offline=False)
    add_budget_option(p)
    p.set_defaults(func=run, budget=None)  # None: not given (refused with --offline)


def warn_exit_code(text: str) -> int:
    """``--warn-exit-code``: 0..125, and never a code that already means something else."""
    try:
        code = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (0..125)") from None
    if not 0 <= code <= 125:
        raise argparse.ArgumentTypeError(f"{code} is out of range: use 0..125")
    if code in (ExitCode.USAGE, ExitCode.UNJUDGED):
        raise argparse.ArgumentTypeError(
            f"{code} already means {'bad input' if code == ExitCode.USAGE else 'could not judge'}; "
            "use 1 to fail on warnings, or a code of your own from 4 to 125"
        )
    return code


def exit_code(results: Sequence[WorkloadResult], *, warn_code: int) -> int:
    """Denied (1) over could not judge (3) over warned (``--warn-exit-code``) over OK (0).

    An image denied by a rule is denied, even if another of its rules could not be
    judged; one denied only because it could not be judged is :attr:`ExitCode.UNJUDGED`.
    """
    from controller.cli.unjudged import could_not_judge
    from controller.policy.model import Action

    images = [r for wr in results for r in wr.results]
    denied = [r for r in images if r.verdict is Action.DENY]
    if any(not could_not_judge(r) for r in denied):
        return ExitCode.DENIED
    if denied:
        return ExitCode.UNJUDGED
    if any(r.verdict is Action.WARN for r in images):
        return warn_code
    return ExitCode.OK


def judged_platforms(policies: Sequence[CompiledPolicy]) -> tuple[str, ...]:
    """The platforms a Dockerfile is read for: those the policies' ``lineage.platforms`` name,
    and the default (``linux/amd64``) when a policy names none (it judges every platform)."""
    from controller.dockerfile import DEFAULT_PLATFORM
    from controller.platforms import key

    named = [key(p) for policy in policies for p in policy.lineage.platforms or ()]
    every = not named or any(policy.lineage.platforms is None for policy in policies)
    return tuple(dict.fromkeys([DEFAULT_PLATFORM] if every else []) | dict.fromkeys(named))


def build_args(pairs: Sequence[str]) -> dict[str, str]:
    """``--build-arg NAME=VALUE`` (as ``docker build`` takes it) → ``{NAME: VALUE}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise InputError(
                f"--build-arg {pair!r}: expected NAME=VALUE (e.g. --build-arg BASE=python:3.12-slim)"
            )
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    from controller.cli.loaders import load_inputs
    from controller.cli.output import check_json, not_evaluated_notes, write_check_text
    from controller.policy.model import Action
    from controller.policyfiles import compile_documents, load_policies

    now = parse_now(args.now)
    if args.quiet and args.format != "text":
        raise InputError(
            f"--quiet shapes the text output; --format {args.format} always holds every result"
        )
    if args.width is not None and args.format != "text":
        raise InputError(f"--width shapes the text output; --format {args.format} is never wrapped")
    if args.allow_unevaluated and not args.offline:
        raise InputError(
            "--allow-unevaluated needs --offline: online, a rule the registry could not answer "
            "for is decided by the policy's lineage.onLookupFailure"
        )
    refuse_with_offline(args, "registry_config", "docker_config", "budget")
    given = load_policies(args.policy, today=now.date()) if args.policy else None

    def load(platforms: Sequence[str]) -> Loaded:
        return load_inputs(
            args.paths,
            default_namespace=args.namespace or "default",
            dockerfile_namespace=args.namespace,
            build_args=build_args(args.build_arg),
            strict=args.strict,
            platforms=platforms,
        )

    platforms = judged_platforms(given or ())
    loaded = load(platforms)
    if given is not None:
        policies = given
    elif loaded.policies:
        policies = compile_documents(loaded.policies, today=now.date())
        if judged_platforms(policies) != platforms:  # policies among the inputs name others
            loaded = load(judged_platforms(policies))
    else:
        raise InputError("no policies: pass -p POLICY (a file or a folder, e.g. -p policies/)")
    if not any(w.images for w in loaded.workloads) and not args.allow_empty:
        skipped = "".join(f"\n  skipped: {s}" for s in loaded.skipped)
        raise InputError(
            f"nothing to judge in {', '.join(args.paths)}: no container image and no Dockerfile "
            f"found (a mistyped path?); --allow-empty accepts that{skipped}"
        )

    async def work(assessor: Assessor) -> Any:
        return await assessor.assess(
            loaded.workloads, policies, now=now, namespace_labels=loaded.namespaces
        )

    results = asyncio.run(with_assessor(args, work))
    if args.offline and not args.allow_unevaluated:
        from controller.cli.unjudged import judge_unevaluated

        results = judge_unevaluated(results, policies, now=now)
    if args.format == "json":
        from controller.cli.unjudged import could_not_judge

        doc = check_json(results, offline=args.offline, skipped=loaded.skipped)
        doc["summary"]["notJudged"] = sum(1 for wr in results for r in wr.results if could_not_judge(r))
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "sarif":
        from controller.cli.sarif import check_sarif

        notes = not_evaluated_notes((r for wr in results for r in wr.results), offline=args.offline)
        note = "; ".join(notes) or None
        log = check_sarif(results, lines=loaded.lines, not_evaluated_note=note)
        json.dump(log, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "junit":
        from controller.cli.junit import check_junit

        sys.stdout.write(check_junit(results, skipped=loaded.skipped))
    else:
        failing = {Action.DENY} | ({Action.WARN} if args.warn_exit_code else set())
        write_check_text(
            results,
            sys.stdout,
            offline=args.offline,
            skipped=loaded.skipped,
            colour=colour(sys.stdout),
            failing=failing if args.quiet else None,
            width=text_width(args, sys.stdout),
        )
    return exit_code(results, warn_code=args.warn_exit_code)
