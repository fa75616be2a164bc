"""``baseguard test``: policy tests (``baseguard-test.yaml``), see :mod:`controller.cli.testing`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller.cli.options import colour


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="run policy tests (baseguard-test.yaml files)")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.cli.testing import run_tests

    return run_tests(args.dirs, sys.stdout, colour=colour(sys.stdout))
