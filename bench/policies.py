"""Policy scale: evaluation time per review with 1 … 1,000 policies and a 10,000-digest catalog.

    python bench/policies.py [--reviews 2000] [--catalog 10000]

Pure and in-process (no registry, no HTTP): this measures what grows with the
number of policies and the size of the catalog, which the webhook bench's
fixed policy set cannot show. For each policy count it builds a realistic mix,

* 3 cluster-wide policies that apply everywhere (an EOL catalog, a pinning
  rule, an allowlist for a namespace glob that matches every team),
* the rest one per team: ``BaseImagePolicy`` in ``team-N`` (40 %), a cluster
  policy matching the literal namespace ``team-N`` (30 %), or a glob
  ``team-N-*`` (30 %), each with an allowlist, a deprecated entry and pinning,

compiles them as the store would, and judges one Deployment review (3
containers, lineage facts already resolved) in a random team namespace:

* ``applicable``: which policies cover the object: the linear scan
  (``evaluate.applicable``) against the index (``evaluate.applicable_indexed``);
* ``review``: scope + every rule for every image (``evaluate.evaluate`` given the
  scoped policies), linear and indexed; the results must be identical;
* ``catalog``: ``Catalog.longest_prefix`` for an image whose base is not
  annotated (layer detection), in a catalog of ``--catalog`` digests that all
  share their distribution's first layer: the old index (bucket by first
  diff_id, then scan) against the layer-list index.

Goal (issue 5): near-constant time per review from 1 to 1,000 policies, by
indexing policies by namespace rather than scanning them all. Not a test: it
prints figures and fails only when the indexed answer differs from the scan.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.lineage.catalog import Catalog, CatalogEntry, is_prefix  # noqa: E402
from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source  # noqa: E402
from controller.policy.compile import compile_policy  # noqa: E402
from controller.policy.evaluate import applicable, applicable_indexed, evaluate  # noqa: E402
from controller.policy.facts import ImageFacts, ObjectFacts  # noqa: E402
from controller.policy.index import PolicyIndex  # noqa: E402
from controller.policy.model import CompiledPolicy  # noqa: E402
from controller.reference import parse  # noqa: E402

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
COUNTS = (1, 10, 100, 1000)
API = "baseguard.io/v1alpha1"


# --------------------------------------------------------------------------- policies


def _spec(i: int) -> dict[str, Any]:
    return {
        "mode": "Enforce" if i % 3 else "Warn",
        "registries": {"allowed": [f"ghcr.io/team-{i}/*", "docker.io/library/*"]},
        "pinning": {"require": "Version"},
        "bases": {
            "allowed": [{"image": "docker.io/library/python", "tags": ["3.12*", "3.13*"]}],
            "deprecated": [
                {"image": "docker.io/library/python", "tags": ["3.8*"], "reason": "EOL 2024-10-07"}
            ],
        },
        "lineage": {"onLookupFailure": "Warn"},
    }


def team_policy(i: int) -> dict[str, Any]:
    kind, namespace, match = "ClusterBaseImagePolicy", None, None
    if i % 10 < 4:
        kind, namespace = "BaseImagePolicy", f"team-{i}"
    elif i % 10 < 7:
        match = {"namespaces": [f"team-{i}"]}
    else:
        match = {"namespaces": [f"team-{i}-*"]}
    spec = _spec(i)
    if match:
        spec["match"] = match
    meta: dict[str, Any] = {"name": f"team-{i}"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def everywhere() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API,
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "eol"},
            "spec": {
                "bases": {
                    "deprecated": [
                        {"image": "docker.io/library/python", "tags": [f"3.{m}*"], "reason": "EOL"}
                        for m in range(0, 9)
                    ]
                }
            },
        },
        {
            "apiVersion": API,
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "no-latest"},
            "spec": {"mode": "Warn", "match": {"excludeNamespaces": ["kube-system"]}, "pinning": {}},
        },
        {
            "apiVersion": API,
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "teams"},
            "spec": {"match": {"namespaces": ["team-*"]}, "bases": {"allowed": [{"image": "docker.io/library/*"}]}},
        },
    ]


def policy_set(count: int) -> tuple[CompiledPolicy, ...]:
    docs = everywhere()[:count] + [team_policy(i) for i in range(max(0, count - 3))]
    compiled = [compile_policy(d) for d in docs]
    return tuple(sorted(compiled, key=lambda p: (p.kind, p.namespace or "", p.name)))


# --------------------------------------------------------------------------- facts


def lineage_of(image: str, base: str) -> Lineage:
    ref, base_ref = parse(image), parse(base)
    digest = "sha256:" + format(abs(hash(image)), "x").rjust(64, "0")[:64]
    levels = (
        Level(ref, digest, Source.IMAGE, None),
        Level(base_ref, "sha256:" + "b" * 64, Source.ANNOTATION, True),
    )
    return Lineage(ref, digest, (PlatformLineage("linux/amd64", levels, End.KNOWN_BASE),))


def review_facts(team: int) -> tuple[ObjectFacts, list[ImageFacts]]:
    namespace = f"team-{team}" if team % 10 < 7 else f"team-{team}-prod"
    obj = ObjectFacts(kind="Deployment", name="web", namespace=namespace, labels={"app": "web"})
    images = [
        (f"ghcr.io/team-{team}/web:1.4.2", "docker.io/library/python:3.12-slim"),
        (f"ghcr.io/team-{team}/worker:2.0.0", "docker.io/library/python:3.8-slim"),
        ("docker.io/library/nginx:latest", "docker.io/library/debian:12"),
    ]
    facts = [
        ImageFacts(image=i, container=f"c{n}", reference=parse(i), lineage=lineage_of(i, b))
        for n, (i, b) in enumerate(images)
    ]
    return obj, facts


# --------------------------------------------------------------------------- catalog


def fill_catalog(size: int, rng: random.Random) -> tuple[Catalog, list[tuple[str, ...]]]:
    """``size`` digests over ``size / 20`` tags (20 historic digests each), one shared first layer.

    Returns the catalog and the layer lists of images to detect (built on random entries).
    """
    tags = max(1, size // 20)
    cat = Catalog(digests_per_tag=20, max_tags=tags + 1)
    shared = "sha256:" + "0" * 64
    entries: list[tuple[str, ...]] = []
    for t in range(tags):
        ref = parse(f"docker.io/library/base{t % 50}:{t}")
        for d in range(20):
            n = t * 20 + d
            depth = 2 + n % 6
            diff_ids = (shared, *(f"sha256:{n:032x}{k:032x}" for k in range(1, depth)))
            cat.remember(ref, "linux/amd64", f"sha256:{n:064x}", diff_ids)
            entries.append(diff_ids)
    images = [(*rng.choice(entries), f"sha256:{'f' * 60}{k:04x}") for k in range(200)]
    return cat, images


def bucket_scan(by_first: dict[str, list[CatalogEntry]], diff_ids: tuple[str, ...]) -> int:
    """The old lookup: every entry sharing the first diff_id, scanned for the longest prefix."""
    best = 0
    for entry in by_first.get(diff_ids[0], ()):
        if entry.platform == "linux/amd64" and is_prefix(entry.diff_ids, diff_ids):
            best = max(best, len(entry.diff_ids))
    return best


# --------------------------------------------------------------------------- timing


def per_call_us(fn: Callable[[], object], *, budget: float = 0.5, at_least: int = 250) -> float:
    """The best of 7 rounds of the mean µs per call (the least disturbed by whatever else runs).

    A warm-up of at least ``at_least`` calls first: every review of the rotation
    is seen once, so lazily compiled globs are compiled before anything is timed.
    """
    started, calls = time.perf_counter(), 0
    while calls < at_least or time.perf_counter() - started < budget / 7:
        fn()
        calls += 1
    rounds = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t) / calls * 1e6)
    return min(rounds)


def same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return [id(p) for p in a] == [id(p) for p in b]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=200, help="distinct reviews per policy count")
    parser.add_argument("--catalog", type=int, default=10_000, help="catalog digests")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    failures = 0

    print(f"catalog: {args.catalog:,} digests, one shared first layer")
    cat, images = fill_catalog(args.catalog, rng)
    by_first: dict[str, list[CatalogEntry]] = {}
    for entry in cat:
        by_first.setdefault(entry.diff_ids[0], []).append(entry)
    for diff_ids in images[:50]:
        match = cat.longest_prefix(diff_ids, platform="linux/amd64")
        if match is None or len(match.diff_ids) != bucket_scan(by_first, diff_ids):
            print(f"MISMATCH: catalog answers differ for {diff_ids[-1]}")
            failures += 1
    it = iter(range(10**9))
    scan_us = per_call_us(lambda: bucket_scan(by_first, images[next(it) % len(images)]), at_least=20)
    index_us = per_call_us(lambda: cat.longest_prefix(images[next(it) % len(images)], platform="linux/amd64"))
    print(f"  longest_prefix: first-layer bucket + scan {scan_us:9.1f} µs   layer-list index {index_us:6.1f} µs"
          f"   ({scan_us / index_us:,.0f}x)\n")

    header = (f"{'policies':>8}  {'cover':>5}  {'index build':>11}  {'applicable: scan':>16}  {'indexed':>8}"
              f"  {'review: scan':>12}  {'indexed':>8}  {'+ catalog':>9}")
    print(header)
    print("-" * len(header))
    rows = []
    for count in COUNTS:
        policies = policy_set(count)
        build_us = per_call_us(lambda policies=policies: PolicyIndex.of(policies), budget=0.2, at_least=3)
        index = PolicyIndex.of(policies)
        teams = max(1, count - 3)
        reviews = [review_facts(rng.randrange(teams)) for _ in range(args.reviews)]
        covering = []
        for obj, facts in reviews:
            scanned, indexed = applicable(policies, obj), applicable_indexed(index, obj)
            if not same(scanned, indexed):
                print(f"MISMATCH: {count} policies, {obj.namespace}: scan and index disagree")
                failures += 1
            covering.append(len(indexed))
            if evaluate(scanned, obj, facts, now=NOW) != evaluate(indexed, obj, facts, now=NOW):
                print(f"MISMATCH: {count} policies, {obj.namespace}: results differ")
                failures += 1
        k = iter(range(10**9))

        def pick(k: Any = k, reviews: Any = reviews) -> tuple[ObjectFacts, list[ImageFacts]]:
            return reviews[next(k) % len(reviews)]

        def scan_scope(policies: Any = policies) -> object:
            return applicable(policies, pick()[0])

        def index_scope(index: Any = index) -> object:
            return applicable_indexed(index, pick()[0])

        def scan_review(policies: Any = policies) -> object:
            obj, facts = pick()
            return evaluate(applicable(policies, obj), obj, facts, now=NOW)

        def index_review(index: Any = index) -> object:
            obj, facts = pick()
            return evaluate(applicable_indexed(index, obj), obj, facts, now=NOW)

        row = (count, statistics.mean(covering), build_us, per_call_us(scan_scope), per_call_us(index_scope),
               per_call_us(scan_review), per_call_us(index_review))
        rows.append(row)
        total = row[6] + index_us
        print(f"{row[0]:>8}  {row[1]:>5.1f}  {row[2]:>9.0f}µs  {row[3]:>14.1f}µs  {row[4]:>6.1f}µs"
              f"  {row[5]:>10.1f}µs  {row[6]:>6.1f}µs  {total:>7.1f}µs")

    ten, last = rows[1], rows[-1]  # the same 4 policies cover the review in both
    print(f"\n{last[0]} vs {ten[0]} policies, same coverage: applicable {last[4] / ten[4]:.2f}x indexed, "
          f"{last[3] / ten[3]:.0f}x scanned; whole review {last[6] / ten[6]:.2f}x indexed, "
          f"{last[5] / ten[5]:.2f}x scanned")
    goal = last[6] / ten[6] < 2.0
    print(("goal met" if goal else "GOAL MISSED") + ": an indexed review with 1,000 policies costs < 2x one with 10")
    if failures:
        print(f"{failures} mismatches between the index and the scan")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
