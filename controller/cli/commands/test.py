"""``baseguard test``: policy tests (``baseguard-test.yaml``), see :mod:`controller.cli.testing`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller.cli.options import add_registry_options, colour, docs


def register(sub: Any) -> None:
    p = sub.add_parser(
        "test",
        help="run policy tests (baseguard-test.yaml files)",
        description="Run policy tests: policies over resources, compared with expected verdicts.",
        epilog="Exit codes: 0 all passed, 1 a test failed, 2 a bad test file. " + docs("policy-tests.md"),
    )
    p.add_argument(
        "dirs", nargs="+", metavar="DIR", help="folders searched for baseguard-test.yaml (or the files)"
    )
    p.add_argument(
        "--format",
        choices=("text", "junit"),
        default="text",
        help="text (default) or junit (JUnit XML, for CI test reports)",
    )
    add_registry_options(p, offline=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.cli.testing import (
        Registries,
        exit_code,
        run_all,
        unused_registry_options,
        write_text,
    )

    registries = Registries(args.registry_config, args.docker_config)
    outcomes = run_all(args.dirs, registries)
    note = unused_registry_options(registries, outcomes)
    if note:
        print(f"baseguard test: {note}", file=sys.stderr)
    if args.format == "junit":
        from controller.cli.junit import policy_tests_junit

        sys.stdout.write(policy_tests_junit(outcomes))
    else:
        write_text(outcomes, sys.stdout, colour=colour(sys.stdout))
    return exit_code(outcomes)
