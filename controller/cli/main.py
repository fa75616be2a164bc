"""The ``baseguard`` command line: one parser, each command's part from :mod:`controller.cli.commands`.

Start-up is a feature: ``check`` runs in CI loops, so heavy modules (aiohttp,
the registry client, the webhook) are imported inside the command that needs
them, and kopf/kubernetes never by ``check``/``serve``.

Exit codes (:class:`controller.errors.ExitCode`): 0 nothing denied; 1
something denied (or a policy test failed); 2 bad input, bad policy or usage;
3 (``check``) nothing denied, but something could not be judged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from controller.cli.commands import (
    audit,
    check,
    export,
    fix,
    lineage,
    policy,
    run,
    serve,
    test,
    trust,
)
from controller.cli.options import missing_operator_extra
from controller.errors import BaseguardError, ExitCode

#: In the order ``--help`` lists them.
COMMANDS = (check, fix, lineage, policy, test, serve, run, audit, export, trust)


class _Version(argparse.Action):
    """``--version``: several lines, as written (argparse's own action reflows them into one),
    and the commit looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from controller.version import version_text

        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baseguard",
        description="Base image policy for Kubernetes: admission webhook, CI checks, audit.",
        epilog="`baseguard COMMAND --help` for a command's options. Documentation: README.md and "
        "docs/ in the baseguard source tree (docs/cli.md: every command and option). Exit codes: "
        "0 nothing denied, 1 denied (or a test failed), 2 bad input or usage, 3 could not judge "
        "(check: a lookup failed or --offline, and the policy denies that).",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="print the version, the commit it was built from and the CRD API version, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except BaseguardError as exc:
        print(f"baseguard: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ModuleNotFoundError as exc:
        missing = missing_operator_extra(exc, args.command)
        if missing is None:
            raise
        print(f"baseguard {args.command}: {missing}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `baseguard check … | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
