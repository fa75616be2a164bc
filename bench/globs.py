"""Glob matching under hostile patterns: the linear matcher against a backtracking regex.

    python bench/globs.py [--length 100000]

A tenant's ``BaseImagePolicy`` may carry any glob. Translated to a regular
expression (``*`` → ``.*``), ``*a*a*a*a*a*a*c`` backtracks polynomially with a
high degree, and ten stars never finish, holding the event loop for every
namespace. This prints the time per match of the matcher baseguard uses
(:class:`controller.globs.GlobSet`) for hostile and ordinary patterns against
names of growing length, and what the old translation took on short names
(it cannot be run on long ones). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.globs import GlobSet  # noqa: E402

HOSTILE = {
    "six stars": "*a*a*a*a*a*a*c",
    "ten stars": "*a" * 10 + "*c",
    "ten ?*": "*?" * 10 + "c",
}
ORDINARY = {"tag glob": "3.12*-slim*", "repository glob": "docker.io/library/*"}


def _per_call(fn: Callable[[str], bool], value: str, *, budget: float = 0.2) -> float:
    """Seconds per call, in batches of 10 until ``budget`` seconds have passed."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            fn(value)
        calls += 10
        spent = time.perf_counter() - start
        if spent >= budget:
            return spent / calls


def _old_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(rf"^(?:{body})$", re.DOTALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=100_000, help="longest name tried")
    args = parser.parse_args()
    lengths = [n for n in (100, 1_000, 10_000, args.length) if n <= args.length]
    print("time per match; names 'bbb…bc' (the star patterns scan the whole name, then fail)")
    print(f"{'pattern':<16} " + " ".join(f"{f'n={n}':>12}" for n in lengths))
    for label, pattern in {**HOSTILE, **ORDINARY}.items():
        globs = GlobSet((pattern,))
        cells = []
        for n in lengths:
            name = "b" * (n - 1) + "c"
            cells.append(f"{_per_call(globs.matches, name) * 1e6:>10.1f}µs")
        print(f"{label:<16} " + " ".join(cells))
    print("\nold regex translation (backtracking), short names only:")
    for label, pattern in HOSTILE.items():
        regex = _old_regex(pattern)
        cells = []
        for n in (16, 24, 32):
            start = time.perf_counter()
            regex.match("a" * n)
            cells.append(f"n={n}: {(time.perf_counter() - start) * 1e3:.1f}ms")
            if time.perf_counter() - start > 2:
                cells.append("(stopped: grows without bound)")
                break
        print(f"{label:<16} " + ", ".join(cells))


if __name__ == "__main__":
    main()
