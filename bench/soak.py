"""Soak: 50,000 admissions through the real webhook, with 1 % of registry requests failing.

    python bench/soak.py [--admissions 50000] [--concurrency 16] [--fault-rate 0.01]

All on 127.0.0.1, in one process, as ``baseguard serve`` wires it (the real
aiohttp app over HTTPS, ``MemoAssessor``/``MemoResolver``, one registry
client) with a load generator on the same event loop. Behind it: Debian's
``docker-registry`` (the test suite's helpers) and, in a child process so its
memory is not counted, the suite's faulty proxy turned random: each registry
request fails with probability ``--fault-rate``, with one of resets, 5xx,
429 + Retry-After, a corrupt body, an oversized or trickling body, a stall
past the client's timeout, a redirect loop or an authentication loop.

The caches are set short (tag TTL 2 s, lineage and result memory 0.5 s) so the
registry is asked again and again through the run and the faults keep landing;
with the defaults (30 s / 5 s) almost every review would be answered from
memory and the soak would test nothing.

Every answer is checked against what the same review got in a fault-free
calibration pass. It counts:

* ``unexpected``: a transport error, an HTTP status other than 200, an answer
  that is not a well-formed AdmissionReview for the request's uid, an internal
  error, an answer later than the apiserver would wait, a verdict that differs
  from calibration with no ``lookup-failed`` to explain it, or an ERROR log
  record. Goal: 0.
* ``degraded``: a different verdict explained by a ``lookup-failed`` finding (a
  fault hit that review's lookups; ``onLookupFailure: Warn`` turns it into a
  warning). Expected, about as often as faults land.

It prints p50/p99/max latency and the process's RSS every ``--sample`` admissions,
with the least-squares slope of RSS after the warm-up (the first 20 %).
Goal: 0 unexpected, RSS flat after warm-up. Not a test: it prints figures and
exits non-zero only when something could not run, or an unexpected error occurred.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import logging
import math
import random
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # support.registry, support.images, support.faulty_proxy

QUERY = "?timeout=10s"  # the apiserver's timeoutSeconds: 10 (its default)
DEADLINE = 10.0
CLIENT_TIMEOUT = 1.0
TEAMS = 50


# --------------------------------------------------------------------------- the faulty proxy (child)


def proxy_main(upstream: str, rate: float, seed: int) -> None:
    """Run the suite's faulty proxy with random faults until stdin closes; print the port first."""
    from aiohttp import web
    from support.faulty_proxy import Fault, FaultyProxy

    faults = [
        Fault("reset"),
        Fault("status", status=500),
        Fault("status", status=502),
        Fault("status", status=503, body=b'{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}'),
        Fault("status", status=429, headers={"Retry-After": "1"}),
        Fault("corrupt"),
        Fault("oversized"),
        Fault("trickle", seconds=0.05),
        Fault("delay", seconds=CLIENT_TIMEOUT * 2),
        Fault("redirect_loop"),
        Fault("unauthorized_loop"),
    ]

    class RandomFaults(FaultyProxy):
        def __init__(self) -> None:
            super().__init__(upstream)
            self.rng = random.Random(seed)
            self.rate = rate
            self.requests = 0
            self.injected: Counter[str] = Counter()

        def _take_fault(self, method: str, path: str) -> Fault | None:
            with self._lock:
                self.requests += 1
                if self.rng.random() >= self.rate:
                    return None
                fault = self.rng.choice(faults)
                self.injected[f"{fault.kind} {fault.status}" if fault.kind == "status" else fault.kind] += 1
                return fault

        async def _dispatch(self, request: web.Request) -> web.StreamResponse:
            if request.path == "/_stats":
                return web.json_response({"requests": self.requests, "injected": dict(self.injected)})
            if request.path == "/_rate":  # counting starts again with the new rate
                with self._lock:
                    self.rate = float(request.query["value"])
                    self.requests = 0
                    self.injected.clear()
                return web.json_response({"rate": self.rate})
            with self._lock:
                self._seen.clear()  # a soak keeps no history
            return await super()._dispatch(request)

    proxy = RandomFaults().start()
    print(json.dumps({"port": proxy.port}), flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    proxy.stop()


# --------------------------------------------------------------------------- images and policies


@dataclass
class Pool:
    host: str
    images: list[str] = field(default_factory=list)


def push(reg: Any, host: str) -> Pool:
    """debian ← python:3.12 / python:3.8 / node:20 ← apps; a few without a base; two indexes."""
    from support.images import layer

    from controller.registry import media

    def claim(pushed: Any, name: str) -> dict[str, str]:
        return {media.BASE_NAME: f"{host}/soak/{name}", media.BASE_DIGEST: pushed.digest}

    debian = layer({"etc/os-release": "ID=debian\n"})
    base = reg.push_image("soak/debian", "12", [debian], annotations={media.BASE_NAME: "scratch"})
    bases = {}
    for name, tag in (("python", "3.12.3"), ("python", "3.8.19"), ("node", "20.11.1")):
        bases[f"{name}:{tag}"] = reg.push_image(
            f"soak/{name}", tag, [debian, layer({f"usr/bin/{name}": tag})], annotations=claim(base, "debian:12")
        )
    pool = Pool(host)
    plan = [("python:3.12.3", 24), ("python:3.8.19", 4), ("node:20.11.1", 4)]
    n = 0
    for base_name, count in plan:
        parent = bases[base_name]
        for _ in range(count):
            app = layer({"srv/app": f"app {n}"})
            reg.push_image(
                f"soak/app-{n}", f"1.0.{n}", [*_layers(parent), app], annotations=claim(parent, base_name)
            )
            pool.images.append(f"{host}/soak/app-{n}:1.0.{n}")
            n += 1
    for k in range(3):  # nothing claimed, no catalog match: unknown-base
        reg.push_image(f"soak/mystery-{k}", "1.0.0", [layer({"m": str(k)})])
        pool.images.append(f"{host}/soak/mystery-{k}:1.0.0")
    for k in range(2):  # two-platform indexes on python:3.12
        parent = bases["python:3.12.3"]
        entries = []
        for arch in ("amd64", "arm64"):
            pushed = reg.push_image(
                f"soak/multi-{k}", None, [*_layers(parent), layer({"srv/app": f"multi {k} {arch}"})],
                annotations=claim(parent, "python:3.12.3"), arch=arch,
            )
            entries.append((pushed, f"linux/{arch}"))
        reg.push_index(f"soak/multi-{k}", "2.0.0", entries)
        pool.images.append(f"{host}/soak/multi-{k}:2.0.0")
    # no lookup at all: an invalid reference, and a name on a private address (refused at once)
    pool.images += ["Not/A:Valid@ref", "10.0.0.1/internal/app:1.0.0", f"{host}/soak/gone:1.0.0"]
    return pool


#: The layers of each pushed image, by digest, so a child can be built on them.
_LAYERS: dict[str, list[Any]] = {}


def _layers(pushed: Any) -> list[Any]:
    return _LAYERS[pushed.digest]


def policies(host: str) -> list[dict[str, Any]]:
    api = "baseguard.io/v1alpha1"
    python = f"{host}/soak/python"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": api,
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "bases"},
            "spec": {
                "mode": "Enforce",
                "bases": {
                    "allowed": [{"image": python, "tags": ["3.12*"]}],
                    "deprecated": [{"image": python, "tags": ["3.8*"], "reason": "end of life",
                                    "replacement": f"{python}:3.12.3"}],
                },
                "lineage": {"onLookupFailure": "Warn", "onUnknownBase": "Deny"},
            },
        },
        {
            "apiVersion": api,
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "pinning"},
            "spec": {"mode": "Warn", "pinning": {"require": "Version"}},
        },
    ]
    for t in range(TEAMS):  # the index earns its keep: one policy per team namespace
        docs.append({
            "apiVersion": api,
            "kind": "BaseImagePolicy",
            "metadata": {"name": "team", "namespace": f"team-{t}"},
            "spec": {"mode": "Audit", "registries": {"allowed": [f"{host}/soak/*"]}},
        })
    return docs


# --------------------------------------------------------------------------- load


def review(images: Sequence[str], namespace: str, kind: str) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    if kind == "Pod":
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": containers}}
        gvk = {"group": "", "version": "v1", "kind": "Pod"}
    else:
        obj = {"apiVersion": "apps/v1", "kind": "Deployment",
               "spec": {"template": {"spec": {"containers": containers}}}}
        gvk = {"group": "apps", "version": "v1", "kind": "Deployment"}
    obj["metadata"] = {"name": "soak", "namespace": namespace}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "", "kind": gvk, "operation": "CREATE", "namespace": namespace,
                    "name": "soak", "object": obj, "userInfo": {"username": "soak"}},
    }


class Histogram:
    """Latencies in 1 % log buckets from 10 µs to 100 s: constant memory, whatever the count."""

    LOW, RATIO = 1e-5, 1.01

    def __init__(self) -> None:
        self.edges = [self.LOW * self.RATIO**i for i in range(int(math.log(1e7) / math.log(self.RATIO)) + 2)]
        self.counts = [0] * (len(self.edges) + 1)
        self.total = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.edges, seconds)] += 1
        self.total += 1
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float:
        want, seen = q * self.total, 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= want:
                return self.edges[min(i, len(self.edges) - 1)]
        return self.max


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trimmed_rss_mib() -> float | None:
    """RSS after a full collection and glibc's ``malloc_trim(0)``; ``None`` off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    gc.collect()
    trim(0)
    return rss_mib()


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


@dataclass(frozen=True)
class Sample:
    done: int  # admissions so far
    rss: float  # MiB
    blocks: int  # live Python allocations (sys.getallocatedblocks): a leak of objects grows this


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}")


@dataclass
class Tally:
    latency: Histogram = field(default_factory=Histogram)
    verdicts: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    degraded: int = 0
    done: int = 0

    def bad(self, what: str, detail: str) -> None:
        self.unexpected[what] += 1
        if len(self.examples) < 8:
            self.examples.append(f"{what}: {detail[:300]}")


def verdict_of(response: dict[str, Any]) -> str:
    if not response.get("allowed"):
        return "deny"
    if response.get("warnings"):
        return "warn"
    if response.get("auditAnnotations"):
        return "audit"
    return "allow"


def lookup_failed(response: dict[str, Any]) -> bool:
    text = json.dumps(response)
    return "lookup-failed" in text


async def _soak(args: argparse.Namespace, reg: Any, proxy_host: str, workdir: Path) -> int:
    import aiohttp
    from aiohttp import web

    from controller.memo import MemoAssessor, MemoResolver
    from controller.policy.compile import compile_policy
    from controller.policy.store import PolicyStore, policy_key
    from controller.registry.cache import RegistryCache
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.tls.serving import CertReloader, self_signed
    from controller.webhook.app import make_app
    from controller.webhook.metrics import Metrics
    from controller.webhook.settings import Settings

    _remember_layers(reg)
    pool = push(reg, proxy_host)
    store = PolicyStore()
    compiled = [compile_policy(doc) for doc in policies(proxy_host)]
    store.replace({policy_key(p.kind, p.namespace, p.name): p for p in compiled})

    settings = Settings(host="127.0.0.1", port=0, cache_ttl=0.5)
    client = RegistryClient(
        RegistryConfig.of(RegistryHost(proxy_host, insecure=True), timeout=CLIENT_TIMEOUT),
        cache=RegistryCache(tag_ttl=2.0),
    )
    resolver = MemoResolver(client, ttl=settings.cache_ttl)
    assessor = MemoAssessor(resolver, budget=settings.budget, ttl=settings.cache_ttl)
    metrics = Metrics(snapshot=lambda: store.snapshot)
    app = make_app(store=store, assessor=assessor, settings=settings, metrics=metrics)
    ca, cert, key = self_signed(["127.0.0.1"]).write(workdir / "tls")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=CertReloader(cert, key).context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/validate{QUERY}"
    errors = Errors()
    logging.getLogger().addHandler(errors)
    logging.getLogger().setLevel(logging.WARNING)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)), limit=args.concurrency)
    )
    stats_url = f"http://{proxy_host}/_stats"
    try:
        return await _drive(args, pool, session, url, stats_url, client, errors)
    finally:
        await session.close()
        await runner.cleanup()
        await client.close()
        logging.getLogger().removeHandler(errors)


def _remember_layers(reg: Any) -> None:
    """Wrap the pusher so each pushed image's layers can be reused by its children."""
    pusher = reg.pusher
    original = pusher.push_image

    def push_image(repository: str, tag: str | None, layers: Any, **kwargs: Any) -> Any:
        pushed = original(repository, tag, layers, **kwargs)
        _LAYERS[pushed.digest] = list(layers)
        return pushed

    pusher.push_image = push_image


async def _drive(
    args: argparse.Namespace, pool: Pool, session: Any, url: str, stats_url: str, client: Any, errors: Errors
) -> int:
    rng = random.Random(args.seed)

    def draw() -> tuple[tuple[str, ...], str, str]:
        images = tuple(rng.choice(pool.images) for _ in range(rng.choice((1, 1, 2, 3))))
        namespace = f"team-{rng.randrange(TEAMS)}" if rng.random() < 0.8 else "default"
        return images, namespace, rng.choice(("Pod", "Deployment"))

    async def post(body: dict[str, Any]) -> tuple[int, Any, float]:
        started = time.perf_counter()
        async with session.post(url, json=body) as resp:
            raw = await resp.read()
        took = time.perf_counter() - started
        try:
            return resp.status, json.loads(raw), took
        except ValueError:
            return resp.status, raw[:200], took

    # calibration: every image alone and every review shape once, with no faults
    await _set_rate(session, stats_url, 0.0)
    expected: dict[tuple[tuple[str, ...], str, str], str] = {}
    started = time.perf_counter()
    combos = {draw() for _ in range(3000)}
    for combo in sorted(combos):
        body = review(*combo)
        body["request"]["uid"] = str(uuid.uuid4())
        status, answer, _ = await post(body)
        if status != 200:
            print(f"calibration failed: HTTP {status}: {answer}")
            return 2
        expected[combo] = verdict_of(answer["response"])
    print(f"calibration: {len(expected)} review shapes, verdicts {dict(Counter(expected.values()))} "
          f"({time.perf_counter() - started:.1f} s)")
    rng.seed(args.seed + 1)
    shapes = sorted(expected)
    await _set_rate(session, stats_url, args.fault_rate)

    tally = Tally()
    samples: list[Sample] = []
    sample_every = args.sample
    gc.collect()
    samples.append(Sample(0, rss_mib(), sys.getallocatedblocks()))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.admissions):
        queue.put_nowait(i)
    requests_before = client.stats.total
    t0 = time.perf_counter()

    async def worker() -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            combo = rng.choice(shapes)
            body = review(*combo)
            uid = str(uuid.uuid4())
            body["request"]["uid"] = uid
            try:
                status, answer, took = await post(body)
            except Exception as exc:  # transport: the server refused, reset or hung up
                tally.bad("transport", f"{type(exc).__name__}: {exc}")
                _count(tally, samples, sample_every)
                continue
            tally.latency.add(took)
            _judge(tally, combo, expected[combo], uid, status, answer, took)
            _count(tally, samples, sample_every)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall = time.perf_counter() - t0
    if errors.count:
        tally.unexpected["error log"] += errors.count
        tally.examples += errors.first
    async with session.get(stats_url) as resp:
        proxy_stats = await resp.json()
    return _report(args, tally, samples, wall, client.stats.total - requests_before, proxy_stats)


def _count(tally: Tally, samples: list[Sample], every: int) -> None:
    tally.done += 1
    if tally.done % every == 0:
        samples.append(Sample(tally.done, rss_mib(), sys.getallocatedblocks()))


def _judge(tally: Tally, combo: Any, expected: str, uid: str, status: int, answer: Any, took: float) -> None:
    if status != 200 or not isinstance(answer, dict):
        tally.bad(f"http {status}", str(answer))
        return
    response = answer.get("response")
    if (
        answer.get("apiVersion") != "admission.k8s.io/v1"
        or not isinstance(response, dict)
        or response.get("uid") != uid
    ):
        tally.bad("malformed", json.dumps(answer))
        return
    if (response.get("status") or {}).get("code") == 500 or "internal error" in json.dumps(response):
        tally.bad("internal error", json.dumps(response))
        return
    if took > DEADLINE:
        tally.bad("too late", f"{took:.2f}s")
    verdict = verdict_of(response)
    tally.verdicts[verdict] += 1
    if verdict == expected:
        return
    if lookup_failed(response):
        tally.degraded += 1
        return
    tally.bad("verdict", f"{combo}: expected {expected}, got {verdict}: {json.dumps(response)}")


async def _set_rate(session: Any, stats_url: str, rate: float) -> None:
    async with session.get(stats_url.replace("/_stats", f"/_rate?value={rate}")) as resp:
        await resp.read()


def _report(
    args: argparse.Namespace, tally: Tally, samples: list[Sample], wall: float,
    registry_requests: int, proxy_stats: dict[str, Any],
) -> int:
    injected = proxy_stats.get("injected", {})
    print(f"\nadmissions: {tally.done:,} in {wall:.1f} s ({tally.done / wall:,.0f}/s, "
          f"{args.concurrency} concurrent)")
    seen = proxy_stats.get("requests", 0)
    faults = sum(injected.values())
    print(f"registry requests: {registry_requests:,} from the client, {seen:,} at the proxy; "
          f"faults injected: {faults} ({faults / max(seen, 1):.2%}: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(injected.items()))})")
    print(f"verdicts: {dict(tally.verdicts)}; degraded by a lookup failure: {tally.degraded}")
    total_bad = sum(tally.unexpected.values())
    print(f"unexpected errors: {total_bad} {dict(tally.unexpected) if total_bad else ''}(goal 0)")
    for line in tally.examples:
        print(f"  {line}")
    lat = tally.latency
    print(f"latency: p50 {lat.quantile(0.5) * 1000:.2f} ms, p99 {lat.quantile(0.99) * 1000:.2f} ms, "
          f"p99.9 {lat.quantile(0.999) * 1000:.1f} ms, max {lat.max * 1000:.0f} ms")
    warm = max(1, len(samples) // 5)
    after, late = samples[warm:], samples[len(samples) // 2 :]
    print(f"RSS (MiB) every {args.sample:,} admissions: " + " ".join(f"{x.rss:.0f}" for x in samples))
    print("Python heap (thousand live blocks): " + " ".join(f"{x.blocks / 1000:.0f}" for x in samples))
    rss_10k = slope([(x.done, x.rss) for x in after]) * 10_000
    blocks_10k = slope([(x.done, x.blocks) for x in after]) * 10_000
    print(f"after warm-up ({after[0].done:,} admissions on): RSS {after[0].rss:.1f} -> {after[-1].rss:.1f} MiB, "
          f"slope {rss_10k:+.2f} MiB per 10,000; live blocks {after[0].blocks:,} -> {after[-1].blocks:,}, "
          f"slope {blocks_10k:+,.0f} per 10,000")
    print(f"second half ({late[0].done:,} on): RSS slope "
          f"{slope([(x.done, x.rss) for x in late]) * 10_000:+.2f} MiB per 10,000, live blocks "
          f"{slope([(x.done, x.blocks) for x in late]) * 10_000:+,.0f} per 10,000")
    now = rss_mib()
    trimmed = trimmed_rss_mib()
    if trimmed is not None:
        print(f"load stopped: RSS {now:.1f} MiB; after gc + malloc_trim {trimmed:.1f} MiB "
              "(what the allocator kept but was not live)")
    flat = abs(rss_10k) < 1.0
    print(("goal met" if flat else "GOAL MISSED") + ": RSS flat after warm-up (|slope| < 1 MiB per 10k)")
    print(("goal met" if not total_bad else "GOAL MISSED") + ": 0 unexpected errors")
    return 1 if total_bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--proxy-child"]:
        proxy_main(argv[1], float(argv[2]), int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admissions", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument("--sample", type=int, default=2_500, help="sample RSS every N admissions")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from support.registry import registry_binary, start_registry

    if registry_binary() is None:
        print("docker-registry is not installed (apt-get install docker-registry); nothing to soak")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="baseguard-soak-"))
    reg = start_registry(workdir / "registry")
    child = subprocess.Popen(
        [sys.executable, __file__, "--proxy-child", reg.url, str(args.fault_rate), str(args.seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        port = json.loads(child.stdout.readline())["port"]
        return asyncio.run(_soak(args, reg, f"127.0.0.1:{port}", workdir))
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
        reg.stop()


if __name__ == "__main__":
    sys.exit(main())
