"""What reading a review and writing its answer cost, and their share of one answer.

    python bench/review_parse.py [--baseline REV] [--rounds 7] [--budget 0.2] [--answers 3000]

A profile of ``serve`` under load once had the review's ``json.loads`` at 6% and
the warning shortener ``clip()`` at 5.8% of the process's own time. This measures
both where they stand now, in two parts:

1. **per call**, microseconds (median of ``--rounds`` rounds of ``--budget`` s):
   the stdlib's ``json.loads``, ``orjson.loads``, :func:`review.loads` (what the
   webhook uses) and :func:`review.parse_review` of three bodies as the apiserver
   sends them: the suite's recorded pod create (6.6 kB, managed fields and all),
   a five-container Deployment, and a pod of 100 containers; then
   :func:`review.memo_key` and :func:`review.dumps` of an answer with warnings;
2. **a profile of whole answers**: ``--answers`` reviews of the recorded pod
   (``nginx:latest`` denied and warned, an image volume audited) go through the webhook's
   own path in process — parse, :class:`~controller.webhook.handlers.Admission`
   with a remembering assessor (``serve``'s warm cache), the answer's words,
   ``dumps`` — under :mod:`cProfile`; printed: microseconds per answer, and the
   share of its own time spent in JSON reading, in ``clip()`` and in all of
   :mod:`controller.webhook.messages`. No HTTP, no TLS: the transport's cost is
   ``bench/webhook.py``'s to measure.

``--baseline REV`` times ``controller/webhook/review.py`` as it was at the git
revision ``REV`` beside the working tree's (part 1). The load average is printed
with the figures: on a shared machine every figure grows with it. Not a test: it
prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import module_at  # noqa: E402

from controller.memo import MemoAssessor  # noqa: E402
from controller.policy.compile import compile_policy  # noqa: E402
from controller.policy.model import policy_key  # noqa: E402
from controller.policy.store import PolicyStore  # noqa: E402
from controller.webhook import review as current  # noqa: E402
from controller.webhook.handlers import Admission, Endpoint  # noqa: E402

REVIEW = "controller/webhook/review.py"
DATA = ROOT / "tests" / "data" / "admission"


def bodies() -> dict[str, bytes]:
    """The recorded pod create, the recorded Deployment (five containers), a 100-container pod."""
    pod = json.loads((DATA / "pod-create.json").read_text())
    deployment = json.loads((DATA / "deployment-create.json").read_text())
    spec = deployment["request"]["object"]["spec"]["template"]["spec"]
    spec["containers"] = [
        {**spec["containers"][0], "name": f"c{i}", "image": f"registry.example.com/shop/svc-{i}:1.2.{i}"}
        for i in range(5)
    ]
    big = copy.deepcopy(pod)
    template = big["request"]["object"]["spec"]["containers"][0]
    big["request"]["object"]["spec"]["containers"] = [
        {**template, "name": f"c{i}", "image": f"registry.example.com/shop/svc-{i}:1.2.{i}"}
        for i in range(100)
    ]
    return {
        f"pod ({len(json.dumps(pod)) / 1000:.1f} kB)": json.dumps(pod).encode(),
        f"deployment x5 ({len(json.dumps(deployment)) / 1000:.1f} kB)": json.dumps(deployment).encode(),
        f"pod x100 ({len(json.dumps(big)) / 1000:.1f} kB)": json.dumps(big).encode(),
    }


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


def cases(module: ModuleType, answer: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    out: dict[str, Callable[[], Any]] = {}
    for label, body in bodies().items():
        out[f"json.loads, {label}"] = lambda body=body: json.loads(body)
        out[f"orjson.loads, {label}"] = lambda body=body: orjson.loads(body)
        if hasattr(module, "loads"):
            out[f"review.loads, {label}"] = lambda body=body: module.loads(body)
        out[f"parse_review, {label}"] = lambda body=body: module.parse_review(body)
    pod = next(iter(bodies().values()))
    parsed = module.parse_review(pod)
    if hasattr(module, "memo_key"):
        out["memo_key, pod"] = lambda: module.memo_key(parsed)
    if hasattr(module, "dumps"):
        out["dumps, answer with warnings"] = lambda: module.dumps(answer)
    return out


def timed(modules: dict[str, ModuleType], answer: dict[str, Any], *, rounds: int, budget: float) -> dict[str, dict[str, float]]:
    """Median per call of each case of each module; rounds interleaved, so both see the same load."""
    runs = {label: cases(m, answer) for label, m in modules.items()}
    figures: dict[str, dict[str, list[float]]] = {label: {} for label in modules}
    for _ in range(rounds):
        for label, fns in runs.items():
            for name, fn in fns.items():
                if name.startswith(("json.loads", "orjson.loads")) and label != next(iter(runs)):
                    continue  # the libraries do not change with the revision: timed once
                figures[label].setdefault(name, []).append(one_round(fn, budget))
    return {
        label: {name: statistics.median(values) for name, values in per.items()}
        for label, per in figures.items()
    }


def admission() -> Admission:
    """The webhook's decision path as ``serve --offline`` builds it, with the suite's three policies."""
    import yaml

    store = PolicyStore()
    policies = {}
    for path in sorted((DATA / "policies").glob("*.yaml")):
        p = compile_policy(yaml.safe_load(path.read_text()))
        policies[policy_key(p.kind, p.namespace, p.name)] = p
    store.replace(policies)
    return Admission(store=store, assessor=MemoAssessor(None))


def answers(reviewer: Admission, body: bytes, n: int) -> float:
    """Seconds for ``n`` whole answers: parse, judge (remembered after the first), words, dumps."""

    async def go() -> float:
        start = time.perf_counter()
        for _ in range(n):
            review = current.parse_review(body)
            answer = await reviewer(review, endpoint=Endpoint.VALIDATE, budget=5.0)
            current.dumps(answer)
        return time.perf_counter() - start

    return asyncio.run(go())


def shares(stats: pstats.Stats) -> tuple[float, dict[str, float]]:
    """Total own time, and the share of it in JSON reading, ``clip()`` and ``messages``."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    groups = {"JSON reading (orjson/json loads)": 0.0, "clip() and its helpers": 0.0, "webhook/messages.py, all": 0.0}
    for (filename, _, name), (_, _, own, _, _) in raw.items():
        if "orjson.loads" in name or (filename.endswith(("json/__init__.py", "json/decoder.py"))):
            groups["JSON reading (orjson/json loads)"] += own
        if filename.endswith("webhook/messages.py"):
            groups["webhook/messages.py, all"] += own
            if name in ("clip", "_one_line", "_cut"):
                groups["clip() and its helpers"] += own
    return total, {k: v / total for k, v in groups.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision of review.py to time beside the working tree")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per round")
    parser.add_argument("--answers", type=int, default=3000, help="whole answers profiled (part 2)")
    args = parser.parse_args(argv)
    reviewer = admission()
    pod = next(iter(bodies().values()))
    answer = asyncio.run(reviewer(current.parse_review(pod), endpoint=Endpoint.VALIDATE, budget=5.0))
    assert answer["response"].get("warnings"), answer  # the words are part of what is measured
    modules: dict[str, ModuleType] = {"now": current}
    if args.baseline:
        modules = {args.baseline[:10]: module_at(args.baseline, REVIEW), **modules}

    before = os.getloadavg()
    table = timed(modules, answer, rounds=args.rounds, budget=args.budget)
    answers(reviewer, pod, 200)  # warm
    plain = min(answers(reviewer, pod, args.answers) for _ in range(3)) / args.answers * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    answers(reviewer, pod, args.answers)
    profiler.disable()
    after = os.getloadavg()

    print(f"load average {before[0]:.2f} before, {after[0]:.2f} after; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}; orjson {orjson.__version__}")
    labels = list(table)
    print(f"\n{'us per call':<46}" + "".join(f"{label:>12}" for label in labels)
          + ("       ratio" if len(labels) > 1 else ""))  # fmt: skip
    for name in table[labels[-1]]:
        row = [table[label].get(name) for label in labels]
        cells = "".join(f"{v:>12.2f}" if v is not None else f"{'-':>12}" for v in row)
        ratio = f"{row[-1] / row[0]:>12.2f}" if len(row) > 1 and row[0] else ""
        print(f"{name:<46}{cells}{ratio}")
    total, share = shares(pstats.Stats(profiler))
    print(f"\nwhole answers of the recorded pod (parse, judge remembered, words, dumps): {plain:.1f} us each "
          f"without the profiler; of the profiled own time ({total / args.answers * 1e6:.1f} us each):")  # fmt: skip
    for name, value in share.items():
        print(f"  {name:<40}{value:>7.1%}")


if __name__ == "__main__":
    main()
