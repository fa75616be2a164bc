"""Registry requests per lineage level, single-flight under load, and ``check`` wall time.

    python bench/registry.py [--workloads 100] [--images 10] [--concurrency 200]

The lineage benchmark of issue 3. Everything runs on 127.0.0.1: Debian's
``docker-registry`` (started by the test suite's helpers in a temporary
directory) and, in front of it, the suite's faulty proxy with no faults, used
only to count the requests that reach the registry. It measures:

1. the requests to resolve one image's lineage (app -> python -> base, two
   levels), cold and warm, per level and per kind, counted at the proxy *and*
   by the client's own ``stats`` (the two must agree); the same for a
   two-platform index family, and for an image that is itself a catalog base;
   a tag resolved twice or content fetched twice in one cold lookup is a miss;
2. the requests of N concurrent assessments of one new image through one
   Assessor/client, against those of one cold assessment (single-flight: equal);
3. wall time and peak RSS of ``baseguard check`` over W Deployments using I
   images built on the family, each run a new process (so with empty caches),
   twice, plus ``--offline`` for the start-up floor; and an in-process cold
   then warm assessment with one client, since the CLI keeps no cache between
   runs.

Goals (issue 3): at most 1 tag resolution + 1 manifest + 1 config per level, 0
when cached; N concurrent assessments cost what one does. A miss prints
``GOAL MISSED``; the exit status is non-zero only when something failed to run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import counted_registry

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
TIMEOUT = 60.0  # per subprocess / per async phase: the bench is bounded
PLATFORMS = ("linux/amd64", "linux/arm64")

# Request kinds as the bench counts them at the proxy (the client's stats say only
# "manifest"/"blob"; the path tells a tag from a digest).
HEAD_TAG, GET_TAG, GET_DIGEST, GET_BLOB = "HEAD tag", "GET tag", "GET digest", "GET blob"
KINDS = (HEAD_TAG, GET_TAG, GET_DIGEST, GET_BLOB)
_PATH = re.compile(r"^/v2/(?P<repo>.+?)/(?P<what>manifests|blobs|referrers)/(?P<ref>[^/?]+)")


class BenchError(Exception):
    """Something did not run as the bench needs (not a goal miss)."""


# --------------------------------------------------------------------------- images


@dataclass
class Family:
    """Images pushed for one host name (the proxy's, or the registry's own)."""

    host: str  # the host image names and base annotations use
    prefix: str  # repository prefix
    app: str = ""  # single platform: app -> python -> base
    app_multi: str = ""  # a 2-platform index with the same shape
    services: list[str] = field(default_factory=list)  # the check's images
    legacy: str = ""  # built on the deprecated python
    python: str = ""  # repository of the python level (for the policy)
    burst: str = ""  # a fresh image for the concurrency run

    def name(self, pushed: Any) -> str:
        return f"{self.host}/{pushed.repository}:{pushed.tag}"

    def claim(self, pushed: Any) -> dict[str, str]:
        from controller.registry import media

        return {media.BASE_NAME: self.name(pushed), media.BASE_DIGEST: pushed.digest}


def push_family(reg: Any, *, host: str, prefix: str, images: int, burst: bool = False) -> Family:
    """base 1.0.0 <- python 3.12.3 / 3.8.19 <- app + services; plus a 2-platform index chain."""
    from support.images import layer

    fam = Family(host=host, prefix=prefix, python=f"{host}/{prefix}/python")
    os_layer = layer({"etc/os-release": "ID=benchos\nVERSION_ID=1\n"})
    py312 = layer({"usr/local/bin/python3": "python 3.12.3\n"})
    py38 = layer({"usr/local/bin/python3": "python 3.8.19\n"})
    base = reg.push_image(f"{prefix}/base", "1.0.0", [os_layer])
    python = reg.push_image(
        f"{prefix}/python", "3.12.3", [os_layer, py312], annotations=fam.claim(base)
    )
    python38 = reg.push_image(
        f"{prefix}/python", "3.8.19", [os_layer, py38], annotations=fam.claim(base)
    )
    app = reg.push_image(
        f"{prefix}/app",
        "1.0.0",
        [os_layer, py312, layer({"app/main.py": "print('app')\n"})],
        annotations=fam.claim(python),
    )
    fam.app = fam.name(app)

    # The same shape as indexes: every platform image claims the index one level down
    # (base.digest names an index: the resolver takes the matching child).
    chain: list[Any] = []
    for repo, tag in (("base", "1.0.0-multi"), ("python", "3.12.3-multi"), ("app", "1.0.0-multi")):
        entries = []
        for platform in PLATFORMS:
            arch = platform.split("/")[1]
            layers = [
                layer({f"etc/{arch}/{r}": f"{r} {arch}\n"}) for r in ("base", "python", "app")
            ]
            depth = ("base", "python", "app").index(repo) + 1
            annotations = fam.claim(chain[-1]) if chain else None
            pushed = reg.push_image(
                f"{prefix}/{repo}", None, layers[:depth], arch=arch, annotations=annotations
            )
            entries.append((pushed, platform))
        chain.append(reg.push_index(f"{prefix}/{repo}", tag, entries))
    fam.app_multi = fam.name(chain[-1])

    for i in range(max(images - 2, 1)):
        svc = reg.push_image(
            f"{prefix}/svc-{i}",
            f"2.{i}.0",
            [os_layer, py312, layer({f"srv/svc-{i}.py": f"print({i})\n"})],
            annotations=fam.claim(python),
        )
        fam.services.append(fam.name(svc))
    fam.services.append(fam.app_multi)
    legacy = reg.push_image(
        f"{prefix}/legacy",
        "0.9.0",
        [os_layer, py38, layer({"srv/legacy.py": "print('old')\n"})],
        annotations=fam.claim(python38),
    )
    fam.legacy = fam.name(legacy)
    fam.services.append(fam.legacy)
    if burst:
        fresh = reg.push_image(
            f"{prefix}/burst",
            "1.0.0",
            [os_layer, py312, layer({"srv/burst.py": "print('burst')\n"})],
            annotations=fam.claim(python),
        )
        fam.burst = fam.name(fresh)
    return fam


def deployment(name: str, image: str, namespace: str = "prod") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def policy_yaml(fam: Family) -> str:
    return f"""apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: bench-bases
spec:
  mode: Enforce
  bases:
    allowed:
      - image: "{fam.python}"
        tags: ["3.12*"]
    deprecated:
      - image: "{fam.python}"
        tags: ["3.8*"]
        reason: "Python 3.8 reached end of life on 2024-10-07"
        replacement: "{fam.python}:3.12.3"
  lineage:
    maxDepth: 4
    catalog: ["{fam.host}/{fam.prefix}/base:1.0.0", "{fam.python}:3.12.3"]
    onUnknownBase: Deny
    onLookupFailure: Deny
"""


@dataclass(frozen=True)
class Inputs:
    manifests: Path
    policy: Path
    registry_config: Path


def write_inputs(directory: Path, fam: Family, workloads: int) -> Inputs:
    import yaml

    manifests = directory / "manifests"
    manifests.mkdir(parents=True)
    for i in range(workloads):
        image = fam.services[i % len(fam.services)]
        name = f"svc-{i:03d}"
        (manifests / f"{name}.yaml").write_text(yaml.safe_dump(deployment(name, image)))
    policy = directory / "policy.yaml"
    policy.write_text(policy_yaml(fam))
    config = directory / "registries.yaml"
    config.write_text(f'registries:\n  - host: "{fam.host}"\n    insecure: true\n')
    return Inputs(manifests, policy, config)


# --------------------------------------------------------------------------- counting


@dataclass
class Count:
    """Requests between two points, as the proxy saw them and as the client counted them."""

    proxy: Counter[tuple[str, str]]  # (repository, kind) -> n
    client: Counter[tuple[str, str]] | None  # (method, kind) -> n, from RequestStats
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, path) -> n

    def repeats(self) -> list[str]:
        """The same tag resolved twice (HEAD or GET), or the same content fetched twice."""
        tags: Counter[str] = Counter()
        methods: dict[str, set[str]] = {}
        out = []
        for (method, path), n in sorted(self.paths.items()):
            m = _PATH.match(path)
            if m is None:
                continue
            if m["what"] == "manifests" and ":" not in m["ref"]:
                key = f"{m['repo']}:{m['ref']}"
                tags[key] += n
                methods.setdefault(key, set()).add(method)
            elif n > 1:
                out.append(f"{method} {path} sent {n} times")
        out += [
            f"tag {key} resolved {n} times ({' + '.join(sorted(methods[key]))})"
            for key, n in tags.items()
            if n > 1
        ]
        return out

    @property
    def total(self) -> int:
        return sum(self.proxy.values())

    def kind(self, kind: str, repo: str | None = None) -> int:
        return sum(n for (r, k), n in self.proxy.items() if k == kind and repo in (None, r))

    def repo(self, repo: str) -> int:
        return sum(n for (r, _), n in self.proxy.items() if r == repo)

    def agreement(self) -> str:
        """Whether the client's own count matches the proxy's, per method and kind."""
        if self.client is None:
            return ""
        mine: Counter[tuple[str, str]] = Counter()
        for (_, kind), n in self.proxy.items():
            method, _, what = kind.partition(" ")
            mine[
                (
                    method,
                    "blob" if what == "blob" else "manifest" if what in ("tag", "digest") else what,
                )
            ] += n
        theirs = +self.client
        if +mine == theirs:
            return f"client stats agree ({sum(theirs.values())})"
        return f"COUNT MISMATCH: proxy {dict(+mine)} vs client {dict(theirs)}"


def classify(method: str, path: str) -> tuple[str, str]:
    """(repository, kind): a manifest by tag or by digest, a blob, a referrers call."""
    m = _PATH.match(path)
    if m is None:
        return "", f"{method} {path.split('?')[0]}"
    if m["what"] == "blobs":
        return m["repo"], f"{method} blob"
    if m["what"] == "referrers":
        return m["repo"], f"{method} referrers"
    by = "digest" if ":" in m["ref"] else "tag"
    return m["repo"], f"{method} {by}"


class Meter:
    """Counts at the proxy, and (when given) diffs a client's ``RequestStats``."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy

    @contextmanager
    def measure(self, client: Any = None) -> Iterator[list[Count]]:
        self.proxy.clear()
        before = Counter(client.stats.by_kind) if client is not None else None
        out: list[Count] = []
        yield out
        requests = self.proxy.seen
        seen = Counter(classify(s.method, s.path) for s in requests)
        paths = Counter((s.method, s.path.split("?")[0]) for s in requests)
        after = Counter(client.stats.by_kind) if client is not None else None
        diff = after - before if after is not None and before is not None else None
        out.append(Count(seen, diff, paths))


# --------------------------------------------------------------------------- report


class Report:
    def __init__(self) -> None:
        self.misses: list[str] = []
        self.rows: list[tuple[str, str, str]] = []

    def goal(self, ok: bool, what: str) -> None:
        if not ok:
            self.misses.append(what)
            print(f"  GOAL MISSED: {what}")

    def no_repeats(self, count: Count, what: str) -> None:
        """Goal: within one cold lookup nothing is asked twice (1 tag resolution per level)."""
        for repeat in count.repeats():
            self.goal(False, f"{what}: {repeat}")

    def row(self, figure: str, measured: str, goal: str = "") -> None:
        self.rows.append((figure, measured, goal))


def level_table(
    count: Count, repos: Sequence[str], labels: Sequence[str], goals: Sequence[int]
) -> None:
    head = (
        f"    {'level':<28} " + " ".join(f"{k:>10}" for k in KINDS) + f" {'total':>6} {'goal':>5}"
    )
    print(head)
    for repo, label, goal in zip(repos, labels, goals, strict=True):
        cells = " ".join(f"{count.kind(k, repo):>10}" for k in KINDS)
        print(f"    {label:<28} {cells} {count.repo(repo):>6} {goal:>5}")
    other = count.total - sum(count.repo(r) for r in repos)
    cells = " ".join(f"{count.kind(k):>10}" for k in KINDS)
    print(f"    {'all':<28} {cells} {count.total:>6} {sum(goals):>5}")
    if other:
        print(f"    (+{other} requests outside these repositories: {dict(count.proxy)})")


def _repo_of(ref: Any) -> str:
    return str(ref.repository)


def _labels(levels: Sequence[Any]) -> list[str]:
    """``0: app:1.0.0``, ``1: python:3.12.3``, ... from a platform's levels."""
    return [
        f"{i}: {lv.reference.repository.split('/')[-1]}:{lv.reference.tag}"
        for i, lv in enumerate(levels)
    ]


# --------------------------------------------------------------------------- 1. lineage


class Clock:
    """``time.monotonic`` plus an offset, so the tag TTL can expire without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def _check_lineage(lineage: Any, platforms: int, depth: int, what: str) -> None:
    if lineage.failure or len(lineage.platforms) != platforms:
        raise BenchError(f"{what}: lineage failed: {lineage.failure or lineage.platforms}")
    for plat in lineage.platforms:
        ok = len(plat.levels) == depth and all(lv.verified for lv in plat.levels[1:])
        if not ok or plat.failure:
            raise BenchError(f"{what}: unexpected lineage for {plat.platform}: {plat}")


async def lineage_requests(meter: Meter, fam: Family, report: Report) -> None:
    from controller.lineage.resolve import LineageResolver
    from controller.reference import parse
    from controller.registry.cache import DEFAULT_TAG_TTL, RegistryCache
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost

    config = RegistryConfig.of(RegistryHost(fam.host, insecure=True))
    print("1. Requests to resolve one image's lineage (2 levels: app -> python -> base)")
    print("   goal per level: 1 tag resolution + 1 manifest + 1 config = 3; 0 when cached")
    print(
        "   kinds: HEAD/GET tag = manifest by tag; GET digest = manifest by digest; "
        "GET blob = image config\n"
    )

    clock = Clock()
    async with RegistryClient(config, cache=RegistryCache(clock=clock)) as client:
        resolver = LineageResolver(client)
        ref = parse(fam.app)
        with meter.measure(client) as got:
            lineage = await resolver.resolve(ref, max_depth=4)
        _check_lineage(lineage, 1, 3, fam.app)
        levels = lineage.platforms[0].levels
        print(f"   cold, single platform ({fam.app})")
        report_levels(report, got[0], levels, 3, "cold lineage, 1 platform, image + 2 bases")

        with meter.measure(client) as got:
            again = await resolver.resolve(ref, max_depth=4)
        warm = got[0]
        _check_lineage(again, 1, 3, fam.app)
        print(
            f"\n   warm, same client, tag TTL ({DEFAULT_TAG_TTL:g} s) still running: "
            f"{warm.total} requests  ({warm.agreement()})"
        )
        report.goal(warm.total == 0, f"warm lineage within the tag TTL: {warm.total} requests")
        report.row("warm lineage, tag TTL live", str(warm.total), "0")

        clock.offset += DEFAULT_TAG_TTL + 1
        with meter.measure(client) as got:
            expired = await resolver.resolve(ref, max_depth=4)
        late = got[0]
        _check_lineage(expired, 1, 3, fam.app)
        content = late.kind(GET_DIGEST) + late.kind(GET_BLOB)
        tags = late.kind(HEAD_TAG) + late.kind(GET_TAG)
        print(f"   warm, same client, tag TTL expired: {late.total} requests  ({late.agreement()})")
        level_table(late, [_repo_of(lv.reference) for lv in levels], _labels(levels), [1] * 3)
        report.goal(content == 0, f"warm lineage after the tag TTL re-fetched {content} items")
        report.goal(tags <= len(levels), f"warm lineage after the tag TTL: {tags} tag checks")
        report.row(
            "warm lineage, tag TTL expired",
            f"{late.total} ({late.kind(HEAD_TAG)} HEAD tag, {late.kind(GET_TAG)} GET tag, "
            f"{content} content)",
            "1 tag check per level, 0 content",
        )

    per = 2 + 2 * len(PLATFORMS)
    async with RegistryClient(config) as client:
        resolver = LineageResolver(client)
        with meter.measure(client) as got:
            lineage = await resolver.resolve(parse(fam.app_multi), max_depth=4)
        _check_lineage(lineage, len(PLATFORMS), 3, fam.app_multi)
        print(f"\n   cold, {len(PLATFORMS)}-platform index ({fam.app_multi})")
        print(
            f"   goal per level: 1 tag + 1 index + {len(PLATFORMS)} x (manifest + config) = {per}"
        )
        title = f"cold lineage, {len(PLATFORMS)}-platform index, image + 2 bases"
        report_levels(report, got[0], lineage.platforms[0].levels, per, title)
        with meter.measure(client) as got:
            await resolver.resolve(parse(fam.app_multi), max_depth=4)
        report.goal(got[0].total == 0, f"warm index lineage: {got[0].total} requests, goal 0")
        print(f"   warm, same client: {got[0].total} requests")

    # A workload may run a base itself (python:3.12-slim), which policies also list in
    # lineage.catalog: the catalog refresh and the image lookup then meet on one tag.
    image = f"{fam.python}:3.12.3"
    catalog = [parse(f"{fam.host}/{fam.prefix}/base:1.0.0"), parse(image)]
    async with RegistryClient(config) as client:
        resolver = LineageResolver(client)
        with meter.measure(client) as got:
            lineage = await resolver.resolve(parse(image), max_depth=4, catalog=catalog)
        _check_lineage(lineage, 1, 2, image)
        print(
            f"\n   cold, an image that is itself a catalog entry ({image}; catalog: base, python)"
        )
        title = "cold lineage of a catalog image (python -> base)"
        report_levels(report, got[0], lineage.platforms[0].levels, 3, title)


def report_levels(
    report: Report, count: Count, levels: Sequence[Any], goal: int, title: str
) -> None:
    """The per-level table, the goal per level, no repeated request, and a summary row."""
    repos = [_repo_of(lv.reference) for lv in levels]
    labels = _labels(levels)
    level_table(count, repos, labels, [goal] * len(levels))
    print(f"    {count.agreement()}")
    for repo, label in zip(repos, labels, strict=True):
        n = count.repo(repo)
        report.goal(n <= goal, f"{title}, level {label}: {n} requests > {goal}")
    report.no_repeats(count, title)
    per_level = ", ".join(str(count.repo(r)) for r in repos)
    report.row(title, f"{count.total} ({per_level} per level)", f"<= {goal} per level, none twice")


# --------------------------------------------------------------------------- 2. single-flight


async def concurrent_assessments(
    meter: Meter, fam: Family, image: str, policy_path: Path, n: int, report: Report
) -> None:
    from controller.assess import Assessor
    from controller.lineage.resolve import LineageResolver
    from controller.policy.model import Action
    from controller.policyfiles import load_policies
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.workloads import extract

    policies = load_policies([str(policy_path)])
    workloads = extract(deployment("burst", image))
    config = RegistryConfig.of(RegistryHost(fam.host, insecure=True))

    def verdicts(results: Sequence[Any]) -> set[str]:
        return {r.verdict.value for r in results}

    print(f"\n2. {n} concurrent assessments of one new image ({image}), one Assessor/client")
    print("   (policy: bases.allowed + deprecated + lineage catalog of 2 bases)")
    async with RegistryClient(config) as client:
        assessor = Assessor(LineageResolver(client), budget=TIMEOUT)
        with meter.measure(client) as got:
            started = time.perf_counter()
            single = await assessor.assess(workloads, policies, now=NOW)
            single_s = time.perf_counter() - started
        one = got[0]
    if verdicts(single) != {Action.ALLOW.value}:
        raise BenchError(f"the single assessment of {image} was not an allow: {single}")
    async with RegistryClient(config) as client:
        assessor = Assessor(LineageResolver(client), budget=TIMEOUT)
        with meter.measure(client) as got:
            started = time.perf_counter()
            many = await asyncio.gather(
                *(assessor.assess(workloads, policies, now=NOW) for _ in range(n))
            )
            burst_s = time.perf_counter() - started
        burst = got[0]
        coalesced = client.stats.coalesced
    if {v for results in many for v in verdicts(results)} != {Action.ALLOW.value}:
        raise BenchError(f"some of the {n} concurrent assessments of {image} were not an allow")
    print(
        f"   one cold assessment:   {one.total:>4} requests  {single_s * 1000:7.1f} ms  ({one.agreement()})"
    )
    print(
        f"   {n} concurrent:      {burst.total:>4} requests  {burst_s * 1000:7.1f} ms  "
        f"({burst.agreement()}; {coalesced} lookups joined one in flight)"
    )
    print("   " + ", ".join(f"{k}: {one.kind(k)} vs {burst.kind(k)}" for k in KINDS))
    report.no_repeats(one, "one cold assessment")
    report.no_repeats(burst, f"{n} concurrent assessments")
    report.goal(
        burst.total == one.total,
        f"{n} concurrent assessments made {burst.total} requests, one makes {one.total}",
    )
    report.row(
        f"{n} concurrent assessments of one new image", f"{burst.total} (one: {one.total})", "= one"
    )


# --------------------------------------------------------------------------- 3. check


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mib: float
    exit_code: int
    stdout: str
    stderr: str


def run_process(cmd: Sequence[str], workdir: Path) -> Run:
    """Run ``cmd``, timing it and reading its own peak RSS from ``wait4`` (= RUSAGE_CHILDREN of this child)."""
    out, err = workdir / "stdout", workdir / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, cwd=ROOT)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read_text(), err.read_text())


def baseguard_command() -> list[str]:
    """The installed console script next to this interpreter (not a pyenv shim), else ``-m``."""
    script = Path(sys.executable).parent / "baseguard"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "controller"]


def verify_check(run: Run, fam: Family, workloads: int, what: str) -> dict[str, int]:
    """The check really resolved lineage: no lookup failures, the legacy image denied for its base."""
    if run.exit_code not in (0, 1):
        raise BenchError(f"{what}: exit {run.exit_code}\n{run.stderr}")
    try:
        doc = json.loads(run.stdout)
    except ValueError:
        raise BenchError(
            f"{what}: output is not JSON:\n{run.stdout[:2000]}\n{run.stderr}"
        ) from None
    results = doc["results"]
    if len(results) != workloads:
        raise BenchError(f"{what}: {len(results)} results for {workloads} workloads")
    for r in results:
        rules = {v["rule"] for v in r["violations"]}
        if rules & {"lookup-failed", "unknown-base", "lineage-mismatch"} or len(r["lineage"]) < 3:
            raise BenchError(f"{what}: lineage was not resolved for {r['image']}: {r}")
        legacy = r["image"] == fam.legacy
        if legacy != ("deprecated-base" in rules) or (r["verdict"] == "deny") != legacy:
            raise BenchError(f"{what}: unexpected verdict for {r['image']}: {r}")
    summary: dict[str, int] = doc["summary"]
    return summary


async def in_process(inputs: Inputs) -> tuple[float, float, int, int, Any]:
    """Cold then warm assessment of the same inputs with one client, as ``check`` builds it."""
    from controller.assess import Assessor
    from controller.cli.loaders import load_inputs
    from controller.lineage.resolve import LineageResolver
    from controller.policyfiles import load_policies
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    loaded = load_inputs([str(inputs.manifests)])
    policies = load_policies([str(inputs.policy)])
    config = load_registry_config(str(inputs.registry_config))
    async with RegistryClient(config) as client:
        assessor = Assessor(LineageResolver(client), budget=TIMEOUT)
        started = time.perf_counter()
        await assessor.assess(loaded.workloads, policies, now=NOW)
        cold_s = time.perf_counter() - started
        cold_n = client.stats.total
        started = time.perf_counter()
        results = await assessor.assess(loaded.workloads, policies, now=NOW)
        warm_s = time.perf_counter() - started
        warm_n = client.stats.total - cold_n
    return cold_s, warm_s, cold_n, warm_n, results


def check_timing(
    meter: Meter, direct: Family, proxied: Family, workdir: Path, workloads: int, report: Report
) -> None:
    from controller.policy.model import Action

    images = len(direct.services)
    print(
        f"\n3. baseguard check over {workloads} Deployments, {images} unique images, new process per run"
    )
    print(
        f"   ({images - 2} on python 3.12, one {len(PLATFORMS)}-platform index, "
        f"one on deprecated python 3.8: 1 in {images} denied)"
    )
    d_inputs = write_inputs(workdir / "direct", direct, workloads)
    p_inputs = write_inputs(workdir / "proxied", proxied, workloads)
    base = baseguard_command()

    def cmd(inputs: Inputs, *extra: str) -> list[str]:
        return [
            *base, "check", str(inputs.manifests), "-p", str(inputs.policy),
            "--format", "json", "--now", NOW.date().isoformat(), *extra,
        ]  # fmt: skip

    def online(inputs: Inputs) -> list[str]:
        return cmd(inputs, "--registry-config", str(inputs.registry_config))

    print(f"   command: {' '.join(online(d_inputs))}")
    runs: list[Run] = []
    for i in (1, 2):
        run = run_process(online(d_inputs), workdir)
        summary = verify_check(run, direct, workloads, f"cold check #{i}")
        runs.append(run)
        print(
            f"   cold #{i} (direct to the registry): {run.seconds:6.3f} s wall, peak RSS "
            f"{run.max_rss_mib:5.1f} MiB, exit {run.exit_code}, {summary}"
        )
    offline = run_process(cmd(d_inputs, "--offline"), workdir)
    if offline.exit_code not in (0, 1):
        raise BenchError(f"offline check: exit {offline.exit_code}\n{offline.stderr}")
    print(
        f"   --offline (start-up, parsing, no lookups): {offline.seconds:6.3f} s wall, "
        f"peak RSS {offline.max_rss_mib:5.1f} MiB"
    )
    with meter.measure() as got:
        counted = run_process(online(p_inputs), workdir)
    verify_check(counted, proxied, workloads, "counted check")
    requests = got[0]
    report.no_repeats(requests, "cold check")
    kinds = ", ".join(f"{k}: {requests.kind(k)}" for k in KINDS)
    print(
        f"   cold through the counting proxy: {counted.seconds:6.3f} s wall, {requests.total} requests "
        f"= {requests.total / images:.1f} per unique image ({kinds})"
    )

    cold_s, warm_s, cold_n, warm_n, results = asyncio.run(_bounded(in_process(d_inputs)))
    denied = sum(1 for r in results if r.verdict is Action.DENY)
    print(
        f"   in process, one client: cold assessment {cold_s * 1000:7.1f} ms ({cold_n} requests), "
        f"warm {warm_s * 1000:7.1f} ms ({warm_n} requests), {denied} denied"
    )
    print(
        "   note: the CLI keeps no cache between processes, so every `baseguard check` is cold;\n"
        "   'warm' is a second assessment in the same process with the same client (as in the webhook)."
    )
    report.goal(warm_n == 0, f"warm in-process assessment made {warm_n} requests, goal 0")
    report.row(
        f"`check`, {workloads} workloads / {images} images, cold (new process)",
        " / ".join(f"{r.seconds:.2f} s" for r in runs),
    )
    report.row("`check --offline` (start-up + parsing floor)", f"{offline.seconds:.2f} s")
    report.row(
        "requests, cold `check` (counted at the proxy)",
        f"{requests.total} ({requests.total / images:.1f} per unique image)",
    )
    report.row(
        "in-process assessment, cold / warm", f"{cold_s * 1000:.0f} ms / {warm_s * 1000:.1f} ms"
    )
    report.row("requests, warm in-process assessment", str(warm_n), "0")
    report.row("peak RSS of `check`", f"{max(r.max_rss_mib for r in runs):.0f} MiB")


async def _bounded(coro: Any) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return await coro


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workloads", type=int, default=100, help="Deployments for check (default 100)"
    )
    parser.add_argument(
        "--images", type=int, default=10, help="unique images for check (default 10, >= 3)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=200, help="concurrent assessments (default 200)"
    )
    args = parser.parse_args(argv)
    if args.images < 3 or args.workloads < args.images or args.concurrency < 1:
        parser.error("need --images >= 3, --workloads >= --images, --concurrency >= 1")

    sys.path.insert(0, str(ROOT / "tests"))  # support.images


    started = time.perf_counter()
    report = Report()
    try:
        with counted_registry("registry") as counted:
            workdir, registry, proxy = counted.workdir, counted.registry, counted.proxy
            meter = Meter(proxy)
            proxied = push_family(
                registry, host=proxy.host, prefix="proxied", images=args.images, burst=True
            )
            direct = push_family(registry, host=registry.host, prefix="direct", images=args.images)
            print(
                f"baseguard registry bench: docker-registry {registry.host}, counting proxy {proxy.host} "
                f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n"
            )
            asyncio.run(_bounded(lineage_requests(meter, proxied, report)))
            policy = workdir / "burst-policy.yaml"
            policy.write_text(policy_yaml(proxied))
            asyncio.run(
                _bounded(
                    concurrent_assessments(
                        meter, proxied, proxied.burst, policy, args.concurrency, report
                    )
                )
            )
            check_timing(meter, direct, proxied, workdir, args.workloads, report)
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1

    print("\nSummary (paste into bench/README.md):\n")
    print("| figure | measured | goal |")
    print("| --- | --- | --- |")
    for figure, measured, goal in report.rows:
        print(f"| {figure} | {measured} | {goal} |")
    print()
    for miss in report.misses:
        print(f"GOAL MISSED: {miss}")
    print(
        f"{'all goals met' if not report.misses else f'{len(report.misses)} goal(s) missed'}; bench took {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
