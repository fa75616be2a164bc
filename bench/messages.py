"""What writing an answer's words costs: ``clip()``, the warnings and the denial of one review.

    python bench/messages.py [--baseline REV] [--rounds 7] [--budget 0.2]

Under load, the webhook spends part of each review turning findings into the
words of the answer (:mod:`controller.webhook.messages`): the warnings (each at
most 120 characters, shortened from the middle) and the denial. This times,
in microseconds per call, the median of ``--rounds`` rounds of ``--budget``
seconds each:

* ``clip()`` alone on a warning-sized ASCII line, on a line with typography
  (``→``) and on a 600-byte denial line;
* ``warning_lines()`` of a five-container Deployment whose every container has
  three warn-level findings (a moving tag, a deprecated base by lineage with an
  end-of-life reason, a failed lookup), the containers named 3 to 40
  characters;
  once as a review of the same pod template again writes them (remembered since
  the warning caches: each pod of a ReplicaSet, a retried apply), once as the
  first time (the caches emptied before each call);
* ``deny_message()`` of the same findings at deny level.

``--baseline REV`` loads ``controller/webhook/messages.py`` as it was at the git
revision ``REV`` and times it beside the working tree's, so one run prints the
before and the after. The load average is printed with the figures: on a
shared machine every figure grows with it. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import module_at  # noqa: E402

from controller.findings import Finding, grouped_findings  # noqa: E402
from controller.policy.model import Action, RuleCode  # noqa: E402
from controller.policy.verdict import Violation  # noqa: E402
from controller.webhook import messages as current  # noqa: E402
from controller.workloads import ContainerImage  # noqa: E402

MESSAGES = "controller/webhook/messages.py"

#: Rule messages as the rules write them (controller/policy/rules.py), for an image on a private registry.
FINDINGS = (
    (
        RuleCode.DISALLOWED_TAG,
        'image {image} uses the tag "latest", which the policy disallows (a moving tag: what runs '
        "can change without a deploy); pin a version tag or a digest, e.g. {name}@sha256:<digest>",
    ),
    (
        RuleCode.DEPRECATED_BASE,
        "image {image} is built on docker.io/library/python:3.8-slim (deprecated: Python 3.8: end "
        "of life 2024-10-07; source: endoflife.date, snapshot 2026-08-22); use "
        "docker.io/library/python:3.13-slim",
    ),
    (
        RuleCode.LOOKUP_FAILED,
        "the lineage of image {image} could not be looked up: registry 127.0.0.1:5055 did not "
        "answer within 2s (127.0.0.1:5055 GET /v2/shop/app/manifests/latest) "
        "(lineage.onLookupFailure: Deny, a warn under mode: Warn); check the registry and the "
        "pull credentials, then retry",
    ),
)


def review_findings(action: Action) -> list[Finding]:
    """Five containers, three findings each, as one Deployment review finds them."""
    out = []
    for i, length in enumerate((3, 8, 11, 20, 40)):
        name = ("c" * length)[:-1] + str(i)
        repo = f"127.0.0.1:5055/shop/service-{i}"
        image = f"{repo}:latest"
        where = ContainerImage(name, image, f"/spec/template/spec/containers/{i}/image")
        for rule, text in FINDINGS:
            message = text.format(image=image, name=repo)
            out.append(Finding(where, Violation("platform-bases", rule, action, message)))
    return out


def one_round(fn: Callable[[], Any], budget: float) -> float:
    """Microseconds per call over about ``budget`` seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        calls += 20
        spent = time.perf_counter() - start
        if spent >= budget:
            return spent / calls * 1e6


def timed(modules: dict[str, ModuleType], *, rounds: int, budget: float) -> dict[str, dict[str, float]]:
    """Median per call of each case of each module; rounds interleaved, so both see the same load."""
    runs = {label: cases(m) for label, m in modules.items()}
    figures: dict[str, dict[str, list[float]]] = {label: {} for label in modules}
    for _ in range(rounds):
        for label, fns in runs.items():
            for name, fn in fns.items():
                figures[label].setdefault(name, []).append(one_round(fn, budget))
    return {
        label: {name: statistics.median(values) for name, values in per.items()}
        for label, per in figures.items()
    }


def cases(module: ModuleType) -> dict[str, Callable[[], Any]]:
    warn = grouped_findings(review_findings(Action.WARN))
    deny = grouped_findings(review_findings(Action.DENY))
    short = 'disallowed-tag, container "app": image 127.0.0.1:5055/shop/app:latest uses the tag "latest"'
    typography = "image a:1 is built on b:2 → c:3 (deprecated: end of life — see the log)"
    long_line = 'container "app" image "x": policy p, rule r: ' + "word " * 120
    forget = getattr(module, "forget_words", lambda: None)  # no cache before it: always first
    return {
        "clip(), 90-char ASCII warning": lambda: module.clip(short, 120),
        "clip(), line with typography": lambda: module.clip(typography, 120),
        "clip(), 600-byte denial line": lambda: module.clip(long_line, 600, ascii_only=False),
        "warning_lines(), 5 containers x 3": lambda: module.warning_lines(warn),
        "warning_lines(), same, first time": lambda: (forget(), module.warning_lines(warn)),
        "deny_message(), 5 containers x 3": lambda: module.deny_message(deny, uid="u-1"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision to time beside the working tree")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per round")
    args = parser.parse_args(argv)
    modules = {"now": current}
    if args.baseline:
        modules = {args.baseline[:10]: module_at(args.baseline, MESSAGES), **modules}
    before = os.getloadavg()
    table = timed(modules, rounds=args.rounds, budget=args.budget)
    after = os.getloadavg()
    print(f"load average {before[0]:.2f} before, {after[0]:.2f} after; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}")
    print(f"{'us per call':<36}" + "".join(f"{label:>14}" for label in table) + ("       ratio" if len(table) > 1 else ""))
    names = list(next(iter(table.values())))
    for name in names:
        row = [table[label][name] for label in table]
        ratio = f"{row[-1] / row[0]:>12.2f}" if len(row) > 1 else ""
        print(f"{name:<36}" + "".join(f"{v:>14.2f}" for v in row) + ratio)


if __name__ == "__main__":
    main()
