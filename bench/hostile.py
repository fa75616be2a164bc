"""Honest reviews while a hostile one runs: p99 latency, event-loop stalls and RSS.

    python bench/hostile.py [--seconds 5] [--concurrency 4] [--settle 1.0]

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
  every half second (the listener closes them at its header timeout);
* ``index-flood``: a Pod in namespace ``tenant`` naming 256 images on 4 hostile
  registries (``bench/flood_registry.py``, a process of its own), each tag a
  distinct index of ~4 MB and 18,900 entries; ``index-flood-x4``: four such
  reviews at once, each of other tags;
* ``huge-policy``: a 1 MB Audit-mode ``BaseImagePolicy`` in namespace ``tenant``
  with 20,000 globs in ``registries.allowed``, ``exclude.images`` and
  ``pinning.disallowedTags`` (whatever the policy store makes of it: refused, or in
  force), and a 256-image Pod in that namespace;
* ``credential-fanout``: 256 images on a registry that a kubelet credential
  provider plugin (0.2 s per run) covers, in one review; the plugin's runs and
  their most at once are counted from its log;
* ``credential-300mb``: the same plugin printing 300 MB;
* ``together``: every hostile input above at once.

The honest review is a Deployment in namespace ``prod`` whose answer is cached
after the first: any delay it sees is time another tenant's work took from it.
It prints, per scenario: the honest reviews' p50/p99/max, the slowest
``/healthz``, the longest the event loop was held (a 1 ms ticker's worst
lateness), the hostile reviews answered and how, and the process's RSS (current
and peak, against the chart's 384 MiB limit), with the load average. Not a test:
figures only; a figure taken at a load average above 1.5 is marked as such.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import ssl
import subprocess
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
#: The chart's memory limit for a replica (charts/baseguard/values.yaml, resources.limits.memory).
CHART_LIMIT_MIB = 384
FLOOD_HOSTS = 4
FLOOD_IMAGES = 256


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


def huge_tenant_policy(globs: int = 20_000) -> dict[str, Any]:
    """A ~1 MB namespaced policy: ``globs`` patterns in each of three lists (Audit mode)."""
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicy",
        "metadata": {"name": "huge", "namespace": "tenant"},
        "spec": {
            "mode": "Audit",
            "registries": {"allowed": [f"reg{i}.example.com/team-*/app-{i}-*" for i in range(globs)]},
            "exclude": {"images": [f"excluded{i}.example.com/*/x-{i}*" for i in range(globs)]},
            "pinning": {"disallowedTags": [f"*-rc{i}*" for i in range(globs)]},
        },
    }


PLUGIN = """#!{python}
import json, os, sys, time
with open({log!r}, "a") as log:
    log.write(f"start {{time.time()}}\\n")
request = json.loads(sys.stdin.read())
time.sleep(0.2)
if os.path.exists({chatty!r}):
    chunk = "x" * (1 << 20)
    for _ in range(300):
        sys.stdout.write(chunk)
else:
    print(json.dumps({{"apiVersion": request["apiVersion"], "kind": "CredentialProviderResponse",
                      "cacheKeyType": "Registry", "cacheDuration": "10m",
                      "auth": {{{host!r}: {{"username": "robot", "password": "secret"}}}}}}))
with open({log!r}, "a") as log:
    log.write(f"end {{time.time()}}\\n")
"""


@dataclass
class Plugin:
    """A kubelet credential provider plugin the bench writes, and what its log says."""

    config: Path
    bin_dir: Path
    log: Path
    chatty: Path

    @classmethod
    def write(cls, workdir: Path, host: str) -> Plugin:
        bin_dir = workdir / "plugins"
        bin_dir.mkdir(parents=True)
        log, chatty = workdir / "plugin.log", workdir / "plugin.chatty"
        program = bin_dir / "bench-credential-provider"
        program.write_text(PLUGIN.format(python=sys.executable, log=str(log), chatty=str(chatty), host=host))
        program.chmod(0o755)
        config = workdir / "credential-provider-config.json"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1",
                    "kind": "CredentialProviderConfig",
                    "providers": [
                        {
                            "name": "bench-credential-provider",
                            "matchImages": [host],
                            "defaultCacheDuration": "10m",
                            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                        }
                    ],
                }
            )
        )
        return cls(config, bin_dir, log, chatty)

    def runs(self) -> tuple[int, int]:
        """(runs started, most running at once), from the plugin's own log."""
        if not self.log.exists():
            return 0, 0
        events = sorted(
            (float(stamp), 1 if what == "start" else -1)
            for what, stamp in (line.split() for line in self.log.read_text().splitlines() if line.strip())
        )
        running = most = started = 0
        for _, change in events:
            running += change
            started += change > 0
            most = max(most, running)
        return started, most

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


def load_average() -> float:
    return os.getloadavg()[0]


async def settle(below: float, most: float = 120.0) -> None:
    """Wait (up to ``most`` seconds) for the load average to fall below ``below``.

    The flood scenarios load the machine themselves (the hostile registries are
    processes on the same cores); without a pause the next scenario starts on a
    machine its predecessor left busy, and its figures say so.
    """
    for _ in range(int(most // 2)):
        if load_average() < below:
            return
        await asyncio.sleep(2)


@dataclass
class Images:
    honest: str
    buildinfo: list[str]
    indexes: list[str]
    long_tag: str
    app: Any
    app_layers: list[Any]
    app_claim: dict[str, str]


def push(reg: Any, count: int) -> Images:
    from support.images import layer

    host = reg.host
    os_layer = layer({"etc/os-release": "bench"})
    py_layer = layer({"usr/bin/python3": "3.12 bench"})
    base = reg.push_image("bench/base", "12", [os_layer], annotations={BASE_NAME: "scratch"})
    claim = {BASE_NAME: f"{host}/bench/base:12", BASE_DIGEST: base.digest}
    python = reg.push_image("bench/python", "3.12", [os_layer, py_layer], annotations=claim)
    app_claim = {BASE_NAME: f"{host}/bench/python:3.12", BASE_DIGEST: python.digest}
    app_layers = [os_layer, py_layer, layer({"srv/app": "1"})]
    app = reg.push_image("bench/app", "1.0.0", app_layers, annotations=app_claim)

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
    return Images(
        f"{host}/bench/app:1.0.0", buildinfo, indexes, f"{host}/bench/app:{'a' * 120}", app, app_layers, app_claim
    )


@dataclass
class Result:
    name: str
    honest: list[float] = field(default_factory=list)
    honest_bad: int = 0
    hostile: int = 0
    hostile_says: str = ""
    stall: float = 0.0
    healthz: float = 0.0
    rss: float = 0.0
    peak: float = 0.0
    load: float = 0.0
    load_start: float = 0.0
    extra: str = ""


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
    healthz: Callable[[], Awaitable[None]],
    hostiles: int = 1,
) -> Result:
    result = Result(name)
    stop = asyncio.Event()

    async def healthz_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await healthz()
            result.healthz = max(result.healthz, time.perf_counter() - started)
            await asyncio.sleep(0.05)

    async def honest_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await post(deployment(honest, honest))
            result.honest.append(time.perf_counter() - started)
            if answer.get("allowed") is not True:
                result.honest_bad += 1

    async def hostile_loop(lane: int) -> None:
        assert hostile is not None
        i = lane
        while not stop.is_set():
            made = hostile(i)
            answer = await made if asyncio.iscoroutine(made) else await post(made)
            i += hostiles
            result.hostile += 1
            message = answer.get("status", {}).get("message", "") or "; ".join(answer.get("warnings", []))
            verdict = {False: "denied: ", True: "allowed: "}.get(answer.get("allowed"), "")
            result.hostile_says = verdict + message

    tasks = [asyncio.ensure_future(honest_loop()) for _ in range(concurrency)]
    tasks.append(asyncio.ensure_future(ticker(stop, result)))
    tasks.append(asyncio.ensure_future(healthz_loop()))
    if hostile is not None:
        tasks.extend(asyncio.ensure_future(hostile_loop(lane)) for lane in range(hostiles))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    result.rss, result.peak, result.load = rss_mib(), peak_rss_mib(), load_average()
    return result


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bench(
    args: argparse.Namespace, reg: Any, cred_reg: Any, flood_ports: Sequence[int], workdir: Path
) -> list[Result]:
    import aiohttp

    from controller.memo import MemoAssessor, MemoResolver
    from controller.policy.compile import compile_policy
    from controller.policy.store import PolicyStore, policy_key
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.registry.helpers import CredentialProviders
    from controller.tls.serving import CertReloader, self_signed
    from controller.webhook.app import make_app
    from controller.webhook.listener import listen
    from controller.webhook.metrics import Metrics
    from controller.webhook.settings import Settings

    images = push(reg, args.distinct)
    cred_host = cred_reg.host
    app = images.app
    cred_app = cred_reg.push_image("bench/cred", "t", images.app_layers, annotations=images.app_claim)
    cred_images = []
    for i in range(FLOOD_IMAGES):
        cred_reg.push_manifest("bench/cred", f"t{i}", cred_app.body, cred_app.media_type)
        cred_images.append(f"{cred_host}/bench/cred:t{i}")
    tenant_images = []
    for i in range(FLOOD_IMAGES):
        reg.push_manifest("bench/app", f"t{i}", app.body, app.media_type)
        tenant_images.append(f"{reg.host}/bench/app:t{i}")
    plugin = Plugin.write(workdir, cred_host)
    store = PolicyStore()
    refusals: list[str] = []

    def policies(*docs: dict[str, Any]) -> None:
        compiled = []
        for doc in docs:
            try:
                compiled.append(compile_policy(doc))
            except Exception as exc:  # the bench reports whatever the compiler said
                refusals.append(f"{doc['metadata']['name']}: {exc}"[:300])
        store.replace({policy_key(p.kind, p.namespace, p.name): p for p in compiled})

    policies(bases_policy(reg.host))
    settings = Settings(host="127.0.0.1", port=0)
    flood_hosts = [RegistryHost(f"127.0.0.1:{port}", insecure=True) for port in flood_ports]
    providers = CredentialProviders.load(plugin.config, plugin.bin_dir)
    client = RegistryClient(
        RegistryConfig.of(
            RegistryHost(reg.host, insecure=True),
            RegistryHost(cred_host, insecure=True),
            *flood_hosts,
            credential_providers=providers,
        )
    )
    resolver = MemoResolver(client, ttl=settings.cache_ttl)
    assessor = MemoAssessor(resolver, budget=settings.budget, bounds=settings.bounds, ttl=settings.cache_ttl)
    web = make_app(store=store, assessor=assessor, settings=settings, metrics=Metrics(snapshot=lambda: store.snapshot))
    ca, cert, key = self_signed(["127.0.0.1"]).write(workdir / "tls")
    runner, port = await listen(web, settings, CertReloader(cert, key).context)
    url = f"https://127.0.0.1:{port}/validate{QUERY}"
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)), limit=0)
    )

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as resp:
            answer: dict[str, Any] = (await resp.json())["response"]
            return answer

    async def healthz() -> None:
        async with session.get(f"https://127.0.0.1:{port}/healthz") as resp:
            await resp.read()

    def flood(i: int) -> dict[str, Any]:
        """256 images, a distinct ~4 MB index each, spread over the hostile hosts; review i names new tags."""
        return pod(
            [
                f"{flood_hosts[j % len(flood_hosts)].host}/flood/app:r{i}-{j}"
                for j in range(FLOOD_IMAGES)
            ],
            namespace="tenant",
        )

    async def credential_fanout(i: int) -> dict[str, Any]:
        plugin.chatty.unlink(missing_ok=True)
        return await post(pod(cred_images, namespace="tenant"))

    async def credential_chatty(i: int) -> dict[str, Any]:
        plugin.chatty.touch()
        return await post(pod(cred_images, namespace="tenant"))

    async def together(i: int) -> dict[str, Any]:
        answers = await asyncio.gather(
            post(flood(10_000 + i)),
            post(pod(tenant_images, namespace="tenant")),
            credential_fanout(i),
            post(deployment(images.buildinfo[i % len(images.buildinfo)], namespace="tenant")),
            post(deployment(images.indexes[i % len(images.indexes)], namespace="tenant")),
        )
        said = [a.get("status", {}).get("message", "")[:60] for a in answers]
        return {"allowed": None, "warnings": [" | ".join(said)]}

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
        ("index-flood", flood, None),
        ("index-flood-x4", lambda i: flood(1_000 + i), None),
        ("huge-policy", lambda i: pod(tenant_images, namespace="tenant"),
         lambda: policies(bases_policy(reg.host), huge_tenant_policy())),
        ("credential-fanout", credential_fanout, lambda: policies(bases_policy(reg.host))),
        ("credential-300mb", credential_chatty, None),
        ("together", together, lambda: policies(bases_policy(reg.host), huge_tenant_policy())),
    ]
    lanes = {"index-flood-x4": 4}
    results = []
    try:
        await post(deployment(images.honest, images.honest))  # warm
        for name, hostile, setup in scenarios:
            if args.only and name not in args.only:
                continue
            if setup is not None:
                refusals.clear()
                setup()
            plugin.reset()
            if args.settle:
                await settle(args.settle)
            load_start = load_average()
            results.append(
                await run(
                    name, post, images.honest, hostile, seconds=args.seconds, concurrency=args.concurrency,
                    healthz=healthz, hostiles=lanes.get(name, 1),
                )
            )
            results[-1].load_start = load_start
            started, most = plugin.runs()
            if started:
                results[-1].extra += f"plugin runs {started}, at most {most} at once; "
            if refusals:
                results[-1].extra += "policy refused: " + "; ".join(refusals)
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
        f"max {max(ms, default=float('nan')):7.1f} ms  /healthz max {r.healthz * 1000:7.1f} ms  "
        f"loop held ≤ {r.stall * 1000:6.1f} ms  RSS {r.rss:5.0f} MiB (peak {r.peak:5.0f} of {CHART_LIMIT_MIB})  "
        f"hostile answered {r.hostile}  load {r.load_start:.2f}→{r.load:.2f}"
        f"{' (NOT QUIET: do not report)' if max(r.load, r.load_start) > 1.5 else ''}"
    )
    if r.extra:
        text += f"\n{'':18} {r.extra}"
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
    parser.add_argument("--settle", type=float, default=0.0, metavar="LOAD",
                        help="before each scenario, wait (up to 2 min) for the load average to fall below LOAD")
    args = parser.parse_args(argv)

    from support.registry import free_port, registry_binary, start_registry

    if registry_binary() is None:
        print("docker-registry is not installed (apt-get install docker-registry); nothing to measure")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="baseguard-hostile-"))
    print(f"load average at start: {load_average():.2f}", flush=True)
    reg = start_registry(workdir / "registry")
    cred_reg = start_registry(workdir / "cred-registry")
    flood_ports = [free_port() for _ in range(FLOOD_HOSTS)]
    floods = [
        subprocess.Popen([sys.executable, str(Path(__file__).with_name("flood_registry.py")), str(p)],
                         stdout=subprocess.DEVNULL)
        for p in flood_ports
    ]
    try:
        wait_for_ports(flood_ports)
        asyncio.run(bench(args, reg, cred_reg, flood_ports, workdir))
    finally:
        for process in floods:
            process.terminate()
        reg.stop()
        cred_reg.stop()
    return 0


def wait_for_ports(ports: Sequence[int], timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
