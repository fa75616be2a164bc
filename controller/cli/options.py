"""Options several commands share, defined once so ``check``, ``lineage``, ``serve``,
``run`` and ``audit`` spell and explain them the same way. Cheap to import: argparse only."""

from __future__ import annotations

import argparse
import datetime as dt

from controller.errors import InputError

# An ArgumentParser or an argument group: argparse's own common base.
_Adder = argparse._ActionsContainer


def add_registry_options(parser: _Adder, *, offline: bool = True) -> None:
    """``--registry-config``, ``--docker-config`` and (unless ``offline=False``) ``--offline``."""
    parser.add_argument(
        "--registry-config",
        metavar="FILE",
        help="registries YAML (hosts, insecure, CA, mirrors, credentials)",
    )
    parser.add_argument(
        "--docker-config", metavar="FILE", help="a Docker config.json to read credentials from"
    )
    if offline:
        parser.add_argument(
            "--offline",
            action="store_true",
            help="no registry lookups: the lineage rules are not evaluated (the output says so)",
        )


def add_now_option(parser: _Adder) -> None:
    parser.add_argument(
        "--now", metavar="YYYY-MM-DD", help="judge dates (exceptions, enforceAfter) as of this day"
    )


def parse_now(text: str | None) -> dt.datetime:
    """``--now``: noon UTC of that day (dates are judged by day), else the current time."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--now {text!r}: expected a date YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
