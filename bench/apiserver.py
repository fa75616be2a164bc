"""What a pod create costs through the apiserver, with and without webhooks.

    python bench/apiserver.py [--duration 5] [--concurrency 1,16,64] [--rounds 2]
                              [--cold 40] [--max-load 1.5]

Everything on 127.0.0.1, with the control plane the cluster tests build
(``tests/cluster/build.sh``; ``tests/support/controlplane.py``) and Debian's
``docker-registry``; the load is Apache ``ab`` (C, keep-alive, one process), so
the client takes little of the CPU it measures.

Each configuration gets its own namespace, and every webhook configuration is
narrowed to its namespaces by ``namespaceSelector``: the configurations never
have to be swapped, and the runs interleave (each concurrency, each
configuration in turn, ``--rounds`` times) in one apiserver, one run:

=================  ===================================================================
``none``           no webhook
``bare-V``         a bare Python (aiohttp) TLS webhook answering ``allowed: true``
``bare-V+M``       the same server as validating and mutating webhook (no patch)
``baseguard-V+M``  baseguard as the chart registered it before (``register: Always``)
``baseguard-V``    baseguard as the chart registers it now (``WhenNeeded``, no policy pins)
=================  ===================================================================

baseguard runs with the chart's arguments (``--log-level=INFO``, a decision line per
review, as in production) behind the chart's validating configuration, and a
ClusterBaseImagePolicy that judges lineage; its cache is warmed first. Every request
is a server-side dry-run create (``?dryRun=All``) of one Pod, so nothing is stored.

Printed per configuration and concurrency: completed creates, non-2xx answers,
throughput, p50/p99 latency (from ``ab``), the mean time the apiserver spent in each
webhook (``apiserver_admission_webhook_admission_duration_seconds`` from its
``/metrics``), baseguard's CPU per create (``/proc``; per create the apiserver answered, as counted by its
``apiserver_request_total``, which includes the creates still in flight when ``ab`` stopped), and the 1-minute load average
when the run ended. A figure taken at a load above ``--max-load`` is marked ``*``:
not reportable (the machine was measuring its neighbours). Then registry requests
per never-seen image: ``--cold`` new tags (each its own image on the warm base
chain), one dry-run create each, read from baseguard's ``baseguard_registry_requests``.

Not a test: it prints figures and never fails on them; the exit status is non-zero
only when something did not run (a configuration that did not call the webhooks it
should, a refused create).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

NS_LABEL = "kubernetes.io/metadata.name"
WEBHOOK_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
REGISTRY_METRIC = "baseguard_registry_requests_total"


@dataclass(frozen=True)
class Configuration:
    name: str
    namespace: str
    webhooks: tuple[str, ...]
    """Webhook names the apiserver must call for a pod in ``namespace`` (checked after warm-up)."""
    baseguard: bool = False


BARE_V = "validate.bare.bench"
BARE_M = "mutate.bare.bench"
BG_V = "workloads.validate.baseguard.io"
BG_M = "workloads.mutate.baseguard.io"
CONFIGURATIONS = (
    Configuration("none", "bench-none", ()),
    Configuration("bare-V", "bench-bare-v", (BARE_V,)),
    Configuration("bare-V+M", "bench-bare-vm", (BARE_V, BARE_M)),
    Configuration("baseguard-V+M", "bench-bg-vm", (BG_V, BG_M), baseguard=True),
    Configuration("baseguard-V", "bench-bg-v", (BG_V,), baseguard=True),
)


# --------------------------------------------------------------------------- the bare webhook


def bare_main(port: int, cert: str, key: str) -> None:
    """A bare aiohttp TLS webhook: read, parse, echo the uid, allow; no patch. The least any webhook does."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        review = json.loads(await request.read())
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True},
        }
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/validate", answer)
    app.router.add_post("/mutate", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def selector(*namespaces: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    expressions = list((base or {}).get("matchExpressions") or [])
    expressions.append({"key": NS_LABEL, "operator": "In", "values": list(namespaces)})
    return {"matchExpressions": expressions}


def bare_configurations(port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    def hook(name: str, path: str, *namespaces: str) -> dict[str, Any]:
        return {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}{path}",
                "caBundle": base64.b64encode(ca_pem).decode(),
            },
            "namespaceSelector": selector(*namespaces),
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                }
            ],
        }

    api = "admissionregistration.k8s.io/v1"
    return [
        {
            "apiVersion": api,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "bench-bare"},
            "webhooks": [hook(BARE_V, "/validate", "bench-bare-v", "bench-bare-vm")],
        },
        {
            "apiVersion": api,
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "bench-bare"},
            "webhooks": [{**hook(BARE_M, "/mutate", "bench-bare-vm"), "reinvocationPolicy": "Never"}],
        },
    ]


# --------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([-+0-9.eE]+|NaN|\+Inf)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out.append((dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, number in samples(text, name):
        key = labels.get(label, "")
        totals[key] = totals.get(key, 0.0) + number
    return totals


@dataclass
class Api:
    """Raw HTTPS calls to the apiserver with a bearer token (cluster-admin)."""

    server: str
    token: str
    context: ssl.SSLContext

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def metrics(self) -> str:
        status, text = self.request("GET", "/metrics")
        if status != 200 or not isinstance(text, str):
            raise RuntimeError(f"apiserver /metrics: HTTP {status}")
        return text


def dry_run_creates(text: str) -> float:
    """``apiserver_request_total`` of dry-run pod creates (whoever sent them, finished or not when ``ab`` stopped)."""
    return sum(
        number
        for labels, number in samples(text, "apiserver_request_total")
        if labels.get("resource") == "pods"
        and labels.get("verb") == "POST"
        and labels.get("dry_run") == "All"
        and not labels.get("subresource")
    )


def webhook_means(before: str, after: str) -> dict[str, tuple[int, float]]:
    """Per webhook name: calls, and mean seconds per call, between two scrapes."""
    out = {}
    c0, c1 = by_label(before, WEBHOOK_METRIC + "_count", "name"), by_label(after, WEBHOOK_METRIC + "_count", "name")
    s0, s1 = by_label(before, WEBHOOK_METRIC + "_sum", "name"), by_label(after, WEBHOOK_METRIC + "_sum", "name")
    for name, count in c1.items():
        calls = int(count - c0.get(name, 0.0))
        if calls > 0:
            out[name] = (calls, (s1.get(name, 0.0) - s0.get(name, 0.0)) / calls)
    return out


@dataclass
class Run:
    config: str
    concurrency: int
    completed: int
    non2xx: int
    rps: float
    p50_ms: float
    p99_ms: float
    webhooks: dict[str, tuple[int, float]]
    served: float
    """Dry-run creates the apiserver answered in the run, those still in flight when ``ab`` stopped included."""
    cpu_ms: float | None
    load: float


def run_ab(url: str, body: Path, token: str, concurrency: int, duration: float, workdir: Path) -> tuple[int, int, float, float, float]:
    """``ab`` for ``duration`` seconds at ``concurrency``: completed, non-2xx, req/s, p50 ms, p99 ms."""
    csv = workdir / "ab.csv"
    command = [
        "ab", "-q", "-k", "-l", "-s", "30",
        "-t", str(duration), "-n", "10000000",
        "-c", str(concurrency),
        "-p", str(body), "-T", "application/json",
        "-H", f"Authorization: Bearer {token}",
        "-e", str(csv),
        url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"ab failed: {done.stderr.strip() or done.stdout[-400:]}")
    out = done.stdout

    def number(pattern: str, default: float = 0.0) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default

    completed = int(number(r"Complete requests:\s+(\d+)"))
    non2xx = int(number(r"Non-2xx responses:\s+(\d+)"))
    rps = number(r"Requests per second:\s+([0-9.]+)")
    percentiles = {}
    for line in csv.read_text().splitlines()[1:]:
        pct, _, ms = line.partition(",")
        percentiles[int(float(pct))] = float(ms)
    return completed, non2xx, rps, percentiles.get(50, 0.0), percentiles.get(99, 0.0)


# --------------------------------------------------------------------------- set-up


@dataclass
class Bench:
    workdir: Path
    args: argparse.Namespace
    cleanups: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # a cleanup failing must not hide the figures
                print(f"cleanup: {exc}", file=sys.stderr)


def push_family(reg: Any) -> tuple[Any, Any]:
    """debian-like base ← python-like base; returns (python, app) pushed images."""
    from support.images import layer

    from controller.registry import media

    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    debian = layer({"etc/os-release": "ID=debian\n"})
    python = layer({"usr/bin/python3": "python 3.12\n"})
    base = reg.push_image("bench/debian", "12-slim", [debian], annotations={media.BASE_NAME: "scratch"})
    py = reg.push_image("bench/python", "3.12.3-slim", [debian, python], annotations=claim(base))
    app = reg.push_image(
        "bench/api", "1.4.2", [debian, python, layer({"app/api.py": "print('api')\n"})], annotations=claim(py)
    )
    return py, app


def cluster_policy(python_repo: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"require": "Version", "disallowedTags": ["latest"]},
            "bases": {"allowed": [{"image": python_repo, "tags": ["3.12*"]}]},
            "lineage": {"maxDepth": 4, "onUnknownBase": "Deny", "onLookupFailure": "Deny"},
        },
    }


def pod_body(image: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def fmt_load(load: float, limit: float) -> str:
    return f"{load:.2f}*" if load > limit else f"{load:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--cold", type=int, default=40, help="never-seen tags for the registry figure")
    parser.add_argument("--max-load", type=float, default=1.5, help="above this, figures are marked not reportable")
    parser.add_argument("--bare-webhook", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_webhook:
        port, cert, key = args.bare_webhook
        bare_main(int(port), cert, key)
        return 0
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]

    from support.controlplane import ControlPlane, binaries_dir
    from support.registry import registry_binary, start_registry

    where, ready = binaries_dir()
    missing = [
        what
        for what, ok in (
            (f"the control plane in {where} (tests/cluster/build.sh)", ready),
            ("docker-registry", registry_binary() is not None),
            ("ab (apache2-utils)", shutil.which("ab") is not None),
        )
        if not ok
    ]
    if missing:
        print("cannot run without: " + ", ".join(missing), file=sys.stderr)
        return 2
    bench = Bench(Path(tempfile.mkdtemp(prefix="baseguard-bench-apiserver-")), args)
    try:
        return measure(bench, ControlPlane, where, start_registry, concurrencies)
    finally:
        bench.close()
        shutil.rmtree(bench.workdir, ignore_errors=True)


def measure(bench: Bench, control_plane: Any, where: Path, start_registry: Any, concurrencies: Sequence[int]) -> int:
    from cluster.cluster_support import install
    from support.controlplane import wait_for
    from support.registry import free_port

    from controller.operator.mutation import TEMPLATE_ANNOTATION
    from controller.tls.issuing import issue_ca, issue_serving

    args, workdir = bench.args, bench.workdir
    started = time.monotonic()
    plane = control_plane(workdir / "control-plane", where).start()
    bench.cleanups.append(plane.stop)
    reg = start_registry(workdir / "registry")
    bench.cleanups.append(reg.stop)
    python, app = push_family(reg.pusher)
    for config in CONFIGURATIONS:
        plane.namespace(config.namespace)
    plane.namespace("bench")
    plane.kubectl("create", "serviceaccount", "load", "-n", "bench")
    plane.kubectl("create", "clusterrolebinding", "bench-load", "--clusterrole=cluster-admin", "--serviceaccount=bench:load")
    token = plane.kubectl("create", "token", "load", "-n", "bench", "--duration=2h").stdout.strip()
    api = Api(plane.server, token, ssl.create_default_context(cadata=plane.ca_pem.decode()))

    # the bare webhook
    now = dt.datetime.now(dt.UTC)
    ca_cert, ca_key = issue_ca(now=now, validity=dt.timedelta(days=1))
    cert, key = issue_serving(ca_cert=ca_cert, ca_key=ca_key, hosts=["127.0.0.1"], now=now, validity=dt.timedelta(days=1))
    (workdir / "bare.crt").write_bytes(cert)
    (workdir / "bare.key").write_bytes(key)
    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, __file__, "--bare-webhook", str(bare_port), str(workdir / "bare.crt"), str(workdir / "bare.key")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bench.cleanups.append(lambda: (bare.terminate(), bare.wait(10)))
    plane.apply(bare_configurations(bare_port, ca_cert))

    # baseguard, as the chart installs it (WhenNeeded), judging the two baseguard namespaces
    port = free_port()
    (workdir / "baseguard").mkdir()
    installation = install(
        plane,
        workdir / "baseguard",
        port,
        registry_config={"registries": [{"host": reg.host, "insecure": True}], "timeout": 3},
        values={"webhook": {"namespaceSelector": selector("bench-bg-v", "bench-bg-vm")}},
    )
    process = installation.process("bench", port).start()
    bench.cleanups.append(process.stop)
    installation.wait_until_served(process)
    plane.apply([cluster_policy(f"{reg.host}/bench/python")])
    plane.kubectl("wait", "--for=condition=Ready", "clusterbaseimagepolicy/bench", "--timeout=60s")
    # "before": the chart's mutating entry registered at all times (register: Always),
    # here for bench-bg-vm only; the chart's own configuration stays empty (no policy pins)
    mutating = plane.get_json("mutatingwebhookconfiguration", installation.release)
    assert not mutating.get("webhooks"), "a policy pins: baseguard-V would not be V only"
    entry = json.loads(mutating["metadata"]["annotations"][TEMPLATE_ANNOTATION])
    validating = plane.get_json("validatingwebhookconfiguration", installation.release)
    entry["clientConfig"]["caBundle"] = validating["webhooks"][0]["clientConfig"]["caBundle"]
    entry["namespaceSelector"] = selector("bench-bg-vm", base=entry.get("namespaceSelector"))
    plane.apply(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "bench-baseguard-always"},
                "webhooks": [entry],
            }
        ]
    )

    bodies = {}
    for config in CONFIGURATIONS:
        path = workdir / f"{config.namespace}.json"
        path.write_text(json.dumps(pod_body(app.tagged, config.namespace)))
        bodies[config.name] = path

    def url(config: Configuration) -> str:
        return f"{plane.server}/api/v1/namespaces/{config.namespace}/pods?dryRun=All"

    # warm-up: every configuration calls exactly its webhooks, every create is admitted
    failures = []
    for config in CONFIGURATIONS:
        path = f"/api/v1/namespaces/{config.namespace}/pods?dryRun=All"

        def called(config: Configuration = config, path: str = path) -> bool:
            before = api.metrics()
            status, _ = api.request("POST", path, pod_body(app.tagged, config.namespace))
            return status == 201 and set(webhook_means(before, api.metrics())) == set(config.webhooks)

        try:
            wait_for(f"{config.name} to call {config.webhooks or 'no webhook'}", called, timeout=60, interval=0.5)
        except TimeoutError as exc:
            failures.append(str(exc))
        run_ab(url(config), bodies[config.name], token, 4, 1.0, workdir)
    if failures:
        print("set-up failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    setup_seconds = time.monotonic() - started

    # the interleaved runs
    runs: list[Run] = []
    for _ in range(args.rounds):
        for concurrency in concurrencies:
            for config in CONFIGURATIONS:
                before = api.metrics()
                cpu0 = cpu_seconds(process.popen.pid) if process.popen else 0.0
                completed, non2xx, rps, p50, p99 = run_ab(
                    url(config), bodies[config.name], token, concurrency, args.duration, workdir
                )
                time.sleep(1.0)  # the creates still in flight when ab stopped finish
                cpu1 = cpu_seconds(process.popen.pid) if process.popen else 0.0
                load = os.getloadavg()[0]
                after = api.metrics()
                served = dry_run_creates(after) - dry_run_creates(before)
                runs.append(
                    Run(
                        config.name,
                        concurrency,
                        completed,
                        non2xx,
                        rps,
                        p50,
                        p99,
                        webhook_means(before, after),
                        served,
                        (cpu1 - cpu0) * 1000 / served if config.baseguard and served else None,
                        load,
                    )
                )
    print_table(runs, concurrencies, args)

    # registry requests per never-seen image
    cold = cold_images(reg.pusher, python, args.cold)
    ca = installation.ca_bundle()
    from cluster.cluster_support import scrape

    before = by_label(scrape(process, ca), REGISTRY_METRIC, "kind")
    refused = 0
    t0 = time.monotonic()
    for image in cold:
        status, _ = api.request("POST", "/api/v1/namespaces/bench-bg-v/pods?dryRun=All", pod_body(image, "bench-bg-v"))
        refused += status != 201
    elapsed = time.monotonic() - t0
    after = by_label(scrape(process, ca), REGISTRY_METRIC, "kind")
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    total = sum(delta.values())
    print()
    print(
        f"Registry requests per never-seen image ({len(cold)} new tags on the warm base chain, "
        f"one dry-run create each, {elapsed / max(len(cold), 1) * 1000:.0f} ms per create, "
        f"load {fmt_load(os.getloadavg()[0], args.max_load)}):"
    )
    print(f"  {total / max(len(cold), 1):.2f} per image ({int(total)} in all): " + ", ".join(
        f"{kind} {value / max(len(cold), 1):.2f}" for kind, value in sorted(delta.items()) if value
    ))
    if refused:
        print(f"  {refused} creates were refused (expected every one admitted)")
    print(f"\n(set-up {setup_seconds:.0f} s, total {time.monotonic() - started:.0f} s)")
    return 1 if refused else 0


def cold_images(pusher: Any, python: Any, count: int) -> list[str]:
    from support.images import layer

    from controller.registry import media

    claim = {media.BASE_NAME: python.tagged, media.BASE_DIGEST: python.digest}
    out = []
    for i in range(count):
        pushed = pusher.push_image(
            "bench/cold",
            f"1.0.{i}",
            [*python_layers(), layer({"app/cold.py": f"print({i})\n"})],
            annotations=claim,
        )
        out.append(pushed.tagged)
    return out


def python_layers() -> list[Any]:
    from support.images import layer

    return [layer({"etc/os-release": "ID=debian\n"}), layer({"usr/bin/python3": "python 3.12\n"})]


def print_table(runs: Iterable[Run], concurrencies: Sequence[int], args: argparse.Namespace) -> None:
    grouped: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.concurrency, run.config), []).append(run)
    print(
        f"Dry-run pod creates through kube-apiserver, {args.rounds} interleaved round(s) of "
        f"{args.duration:g} s per figure (median of the rounds; load = the highest 1-min load "
        f"average at the end of a round, * above {args.max_load:g}: not reportable)\n"
    )
    print("| conc | configuration | creates | non-2xx | req/s | p50 ms | p99 ms | webhooks (calls/create, mean ms) | baseguard CPU ms/create | load |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for concurrency in concurrencies:
        for config in CONFIGURATIONS:
            found = grouped.get((concurrency, config.name), [])
            if not found:
                continue
            completed = sum(r.completed for r in found)
            served = sum(r.served for r in found)
            hooks: dict[str, list[tuple[int, float]]] = {}
            for r in found:
                for name, figure in r.webhooks.items():
                    hooks.setdefault(name, []).append(figure)
            hook_text = "; ".join(
                f"{name.split('.')[0]}.{name.split('.')[1]} {sum(c for c, _ in figs) / max(served, 1):.2f}, "
                f"{statistics.median(m for _, m in figs) * 1000:.2f}"
                for name, figs in sorted(hooks.items())
            ) or "-"
            cpu = [r.cpu_ms for r in found if r.cpu_ms is not None]
            load = max(r.load for r in found)
            print(
                f"| {concurrency} | {config.name} | {completed} | {sum(r.non2xx for r in found)} | "
                f"{statistics.median(r.rps for r in found):.0f} | "
                f"{statistics.median(r.p50_ms for r in found):.1f} | "
                f"{statistics.median(r.p99_ms for r in found):.1f} | {hook_text} | "
                f"{(f'{statistics.median(cpu):.2f}' if cpu else '-')} | {fmt_load(load, args.max_load)} |"
            )
    by = {(r.concurrency, r.config): r for r in runs}
    ratios = []
    for concurrency in concurrencies:
        pairs = [("bare-V+M", "bare-V"), ("baseguard-V+M", "baseguard-V"), ("baseguard-V", "none")]
        parts = []
        for a, b in pairs:
            ra = statistics.median(r.rps for r in runs if (r.concurrency, r.config) == (concurrency, a)) if (concurrency, a) in by else None
            rb = statistics.median(r.rps for r in runs if (r.concurrency, r.config) == (concurrency, b)) if (concurrency, b) in by else None
            if ra and rb:
                parts.append(f"{a} / {b} = {ra / rb:.2f}")
        ratios.append(f"  concurrency {concurrency}: " + ", ".join(parts))
    print("\nThroughput ratios:\n" + "\n".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
