"""Honest reviews while a hostile one runs: p99 latency, event-loop stalls and RSS.

    python bench/hostile.py [--seconds 5] [--concurrency 4]

All on 127.0.0.1, in one process, wired as ``baseguard serve`` wires it (the
real aiohttp app over HTTPS, ``MemoAssessor``/``MemoResolver`` with the
settings' bounds, one registry client) in front of Debian's ``docker-registry``
(the test suite's helpers). For each scenario, honest reviews (a Deployment of
an image built on an allowlisted base, ``--concurrency`` at a time) run for
``--seconds`` while one hostile review after another is sent:

* ``baseline``: nothing hostile;
* ``buildinfo-20k``: an image whose config carries ``moby.buildkit.buildinfo.v1``
  listing 20,000 source images (a new image each time, so nothing is cached);
* ``index-5000``: an index of 5,000 platforms (a new index each time);
* ``pod-5000-images``: a Pod naming 5,000 distinct images;
* ``backtracking-glob``: a policy whose tag glob is ``*a*a*a*a*a*a*a*a*a*c``
  (the review's image has a long tag of ``a``s), in force for every review;
* ``slowloris-300``: 300 TLS connections sending their request head a byte
  every half second (the listener closes them at its header timeout).

It prints, per scenario: the honest reviews' p50/p99/max, the longest the event
loop was held (a 1 ms ticker's worst lateness), the hostile reviews answered and
how, and the process's RSS (current and peak). Not a test: figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # support.registry, support.images

QUERY = "?timeout=10s"
DIGEST = "sha256:" + "ab" * 32
BUILDINFO = "moby.buildkit.buildinfo.v1"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def review(obj: dict[str, Any], namespace: str = "prod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "apps" if obj["kind"] != "Pod" else "", "version": "v1", "kind": obj["kind"]},
            "resource": {"group": "", "version": "v1", "resource": obj["kind"].lower() + "s"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": obj,
            "dryRun": False,
        },
    }


def deployment(*images: str, namespace: str = "prod") -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return review(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}},
        },
        namespace,
    )


def pod(images: Sequence[str], namespace: str = "prod") -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return review(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
         "spec": {"containers": containers}},
        namespace,
    )


def bases_policy(host: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "bases": {"allowed": [{"image": f"{host}/bench/python"}]},
            "lineage": {"onLookupFailure": "Deny", "onUnknownBase": "Deny"},
        },
    }


def glob_policy() -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "globs"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": ["*a*a*a*a*a*a*a*a*a*c"]},
        },
    }


@dataclass
class Images:
    honest: str
    buildinfo: list[str]
    indexes: list[str]
    long_tag: str


def push(reg: Any, count: int) -> Images:
    from support.images import layer

    host = reg.host
    os_layer = layer({"etc/os-release": "bench"})
    py_layer = layer({"usr/bin/python3": "3.12 bench"})
    base = reg.push_image("bench/base", "12", [os_layer], annotations={BASE_NAME: "scratch"})
    claim = {BASE_NAME: f"{host}/bench/base:12", BASE_DIGEST: base.digest}
    python = reg.push_image("bench/python", "3.12", [os_layer, py_layer], annotations=claim)
    app_claim = {BASE_NAME: f"{host}/bench/python:3.12", BASE_DIGEST: python.digest}
    reg.push_image("bench/app", "1.0.0", [os_layer, py_layer, layer({"srv/app": "1"})], annotations=app_claim)

    record = {
        "frontend": "dockerfile.v0",
        "sources": [
            {"type": "docker-image", "ref": f"docker.io/library/img{i}:1", "pin": DIGEST} for i in range(20_000)
        ],
    }
    raw = base64.b64encode(json.dumps(record).encode()).decode()
    buildinfo = []
    for i in range(count):
        reg.push_image("bench/buildinfo", f"v{i}", [layer({"srv/app": f"bi{i}"})], config_extra={BUILDINFO: raw})
        buildinfo.append(f"{host}/bench/buildinfo:v{i}")
    one = reg.push_image("bench/wide", None, [layer({"srv/app": "wide"})])
    indexes = []
    for i in range(count):
        platforms = [{"os": "linux", "architecture": "amd64", "variant": f"v{i}x{j}"} for j in range(5_000)]
        reg.push_index("bench/wide", f"v{i}", [(one, p) for p in platforms])
        indexes.append(f"{host}/bench/wide:v{i}")
    return Images(f"{host}/bench/app:1.0.0", buildinfo, indexes, f"{host}/bench/app:{'a' * 120}")


@dataclass
class Result:
    name: str
    honest: list[float] = field(default_factory=list)
    honest_bad: int = 0
    hostile: int = 0
    hostile_says: str = ""
    stall: float = 0.0
    rss: float = 0.0
    peak: float = 0.0


async def ticker(stop: asyncio.Event, result: Result) -> None:
    """The event loop's worst lateness for a 1 ms sleep: how long some step held it."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        result.stall = max(result.stall, time.perf_counter() - started - 0.001)


async def run(
    name: str,
    post: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    honest: str,
    hostile: Callable[[int], Any] | None,
    *,
    seconds: float,
    concurrency: int,
) -> Result:
    result = Result(name)
    stop = asyncio.Event()

    async def honest_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await post(deployment(honest, honest))
            result.honest.append(time.perf_counter() - started)
            if answer.get("allowed") is not True:
                result.honest_bad += 1

    async def hostile_loop() -> None:
        assert hostile is not None
        i = 0
        while not stop.is_set():
            made = hostile(i)
            answer = await made if asyncio.iscoroutine(made) else await post(made)
            i += 1
            result.hostile += 1
            message = answer.get("status", {}).get("message", "") or "; ".join(answer.get("warnings", []))
            verdict = {False: "denied: ", True: "allowed: "}.get(answer.get("allowed"), "")
            result.hostile_says = verdict + message

    tasks = [asyncio.ensure_future(honest_loop()) for _ in range(concurrency)]
    tasks.append(asyncio.ensure_future(ticker(stop, result)))
    if hostile is not None:
        tasks.append(asyncio.ensure_future(hostile_loop()))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    result.rss, result.peak = rss_mib(), peak_rss_mib()
    return result


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bench(args: argparse.Namespace, reg: Any, workdir: Path) -> list[Result]:
    import aiohttp

    from controller.memo import MemoAssessor, MemoResolver
    from controller.policy.compile import compile_policy
    from controller.policy.store import PolicyStore, policy_key
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.tls.serving import CertReloader, self_signed
    from controller.webhook.app import make_app
    from controller.webhook.listener import listen
    from controller.webhook.metrics import Metrics
    from controller.webhook.settings import Settings

    images = push(reg, args.distinct)
    store = PolicyStore()

    def policies(*docs: dict[str, Any]) -> None:
        compiled = [compile_policy(doc) for doc in docs]
        store.replace({policy_key(p.kind, p.namespace, p.name): p for p in compiled})

    policies(bases_policy(reg.host))
    settings = Settings(host="127.0.0.1", port=0)
    client = RegistryClient(RegistryConfig.of(RegistryHost(reg.host, insecure=True)))
    resolver = MemoResolver(client, ttl=settings.cache_ttl)
    assessor = MemoAssessor(resolver, budget=settings.budget, bounds=settings.bounds, ttl=settings.cache_ttl)
    app = make_app(store=store, assessor=assessor, settings=settings, metrics=Metrics(snapshot=lambda: store.snapshot))
    ca, cert, key = self_signed(["127.0.0.1"]).write(workdir / "tls")
    runner, port = await listen(app, settings, CertReloader(cert, key).context)
    url = f"https://127.0.0.1:{port}/validate{QUERY}"
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)), limit=0)
    )

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as resp:
            answer: dict[str, Any] = (await resp.json())["response"]
            return answer

    gone = [f"{reg.host}/bench/gone{i}:1" for i in range(5_000)]
    client_tls = ssl.create_default_context(cafile=str(ca))

    async def slowloris(i: int) -> dict[str, Any]:
        """300 TLS connections sending their request head a byte every 0.5 s, until closed."""

        async def trickle() -> None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
            except OSError:
                return
            try:
                for byte in b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.5)
            except (OSError, ConnectionError):
                return
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(trickle() for _ in range(300)))
        return {"allowed": None, "warnings": [f"300 slow connections closed after {time.perf_counter() - started:.1f} s"]}

    scenarios: list[tuple[str, Callable[[int], Any] | None, Callable[[], None] | None]] = [
        ("baseline", None, None),
        ("buildinfo-20k", lambda i: deployment(images.buildinfo[i % len(images.buildinfo)]), None),
        ("index-5000", lambda i: deployment(images.indexes[i % len(images.indexes)]), None),
        ("pod-5000-images", lambda i: pod(gone), None),
        (
            "backtracking-glob",
            lambda i: deployment(images.long_tag),
            lambda: policies(bases_policy(reg.host), glob_policy()),
        ),
        ("slowloris-300", slowloris, lambda: policies(bases_policy(reg.host))),
    ]
    results = []
    try:
        await post(deployment(images.honest, images.honest))  # warm
        for name, hostile, setup in scenarios:
            if args.only and name not in args.only:
                continue
            if setup is not None:
                setup()
            results.append(
                await run(name, post, images.honest, hostile, seconds=args.seconds, concurrency=args.concurrency)
            )
            print(line(results[-1]), flush=True)
    finally:
        await session.close()
        await runner.cleanup()
        await client.close()
    return results


def line(r: Result) -> str:
    ms = [x * 1000 for x in r.honest]
    text = (
        f"{r.name:18} honest n={len(ms):5}  p50 {quantile(ms, 0.5):6.1f} ms  p99 {quantile(ms, 0.99):7.1f} ms  "
        f"max {max(ms, default=float('nan')):7.1f} ms  loop held ≤ {r.stall * 1000:6.1f} ms  "
        f"RSS {r.rss:5.0f} MiB (peak {r.peak:5.0f})  hostile answered {r.hostile}"
    )
    if r.honest_bad:
        text += f"  HONEST NOT ALLOWED: {r.honest_bad}"
    if r.hostile_says:
        text += f"\n{'':18} hostile: {r.hostile_says[:220]}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario")
    parser.add_argument("--concurrency", type=int, default=4, help="honest reviews in flight")
    parser.add_argument("--distinct", type=int, default=4, help="distinct hostile images/indexes pushed")
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    args = parser.parse_args(argv)

    from support.registry import registry_binary, start_registry

    if registry_binary() is None:
        print("docker-registry is not installed (apt-get install docker-registry); nothing to measure")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="baseguard-hostile-"))
    reg = start_registry(workdir / "registry")
    try:
        asyncio.run(bench(args, reg, workdir))
    finally:
        reg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
