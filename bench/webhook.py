"""Webhook throughput and latency: ``baseguard serve`` against a bare aiohttp TLS floor.

    python bench/webhook.py [--duration 10] [--connections 32] [--moderate 2] [--repeat 1]
                            [--log-level WARNING|INFO]

What it does, all on 127.0.0.1:

1. starts Debian's ``docker-registry`` (the test suite's helpers) and pushes a
   small family: a debian-like base, a python-like base built on it, and five
   application images built on that, each annotated with its base;
2. writes a policy that needs lineage for every image (``bases.allowed``,
   ``bases.deprecated``, ``pinning``) and starts the real ``baseguard serve``
   process with it (TLS, JSON logs at ``--log-level``: WARNING by default, so
   the log is not measured);
3. warms the cache with one review of a 5-container Deployment and checks the
   answer really came from the lineage (allowed, nothing "not evaluated");
4. starts the *floor*: a bare aiohttp TLS server that reads the body, parses the
   JSON, and answers a fixed allow with the uid echoed — the least any webhook
   must do;
5. drives both with ``wrk`` (one thread, keep-alive) at saturation
   (``--connections``) and at moderate load (``--moderate`` connections),
   ``--repeat`` times each, the two servers taking turns (the fastest run of
   each is shown: on a shared machine the slow ones measure the neighbours), and
   prints requests/s, the ratio, p50/p99 latency, the servers' peak RSS, and
   the server CPU time per request (read from /proc: the same ratio, but far
   less sensitive to whatever else the machine is running); where Linux
   ``perf`` can count them, also the user-space instructions per request,
   which other processes on a shared machine do not disturb at all.

By default ``serve`` logs at INFO, as in production: a JSON decision line for
every review (to a file); ``--log-level WARNING`` leaves the log out.

Goals, with the log on: serve at >= 0.8 of the floor's throughput, its p99 at
saturation <= 1.5x the floor's, p99 < 5 ms at moderate load. Both ratios and
both p99s are printed.
Without ``docker-registry`` it runs ``serve --offline`` (reference rules only)
and says so. Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # support.registry / support.images, if present

LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "socket_errors": %d, "bad_status": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# --------------------------------------------------------------------------- the floor


def floor_main(port: int, cert: str, key: str) -> None:
    """A bare aiohttp TLS endpoint: read, parse, echo the uid, allow. Nothing else."""
    from aiohttp import web

    async def validate(request: web.Request) -> web.Response:
        review = json.loads(await request.read())
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True},
        }
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/validate", validate)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


# --------------------------------------------------------------------------- set-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push_images(workdir: Path) -> tuple[Any, list[str], str] | None:
    """Start a registry and push the family; ``None`` when docker-registry is missing."""
    try:
        from support.images import layer
        from support.registry import registry_binary, start_registry
    except ImportError:
        return None
    if registry_binary() is None:
        return None
    from controller.registry import media

    reg = start_registry(workdir / "registry")
    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    debian = layer({"etc/os-release": "ID=debian\n"})
    python = layer({"usr/bin/python3": "python 3.12\n"})
    base = reg.push_image(
        "bench/debian", "12-slim", [debian], annotations={media.BASE_NAME: "scratch"}
    )
    py = reg.push_image("bench/python", "3.12.3-slim", [debian, python], annotations=claim(base))
    images = []
    for name in ("api", "worker", "scheduler", "metrics-sidecar", "log-shipper"):
        app = layer({f"app/{name}.py": f"print({name!r})\n"})
        pushed = reg.push_image(
            f"bench/{name}", "1.4.2", [debian, python, app], annotations=claim(py)
        )
        images.append(pushed.tagged)
    return reg, images, f"{reg.host}/bench/python"


def policy_yaml(python: str | None) -> str:
    lineage = ""
    if python is not None:
        lineage = f"""
  bases:
    allowed:
      - image: "{python}"
        tags: ["3.12*", "3.13*"]
    deprecated:
      - image: "{python}"
        tags: ["3.8*"]
        reason: "end of life"
        replacement: "{python}:3.12.3-slim"
  lineage:
    maxDepth: 4
    onUnknownBase: Deny
    onLookupFailure: Deny
"""
    return f"""apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: bench
spec:
  mode: Enforce
  match:
    excludeNamespaces: ["kube-system"]
  pinning:
    require: Version
    disallowedTags: ["latest"]{lineage}"""


def deployment_review(images: list[str]) -> dict[str, Any]:
    review = json.loads((ROOT / "tests/data/admission/deployment-create.json").read_text())
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    template = spec["containers"][0]
    spec["containers"] = [
        {**template, "name": image.rsplit("/", 1)[1].split(":")[0], "image": image}
        for image in images
    ]
    return review


def post(url: str, body: bytes, context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def wait_ready(url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server not ready:\n{log.read_text()}")


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    to_mib = lambda v: int(v.split()[0]) / 1024  # noqa: E731
    return to_mib(fields.get("VmRSS", "0 kB")), to_mib(fields.get("VmHWM", "0 kB"))


def perf_works() -> bool:
    """Whether ``perf stat`` can count user-space instructions here (not in every VM or container)."""
    if shutil.which("perf") is None:
        return False
    done = subprocess.run(
        ["perf", "stat", "-x,", "-e", "instructions:u", "true"], capture_output=True, text=True
    )
    return done.returncode == 0 and _instructions(done.stderr) is not None


def _instructions(perf_output: str) -> int | None:
    for line in perf_output.splitlines():
        value, _, rest = line.partition(",")
        if "instructions" in rest and value.isdigit():
            return int(value)
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, lua: Path, body: Path, *, connections: int, duration: int, pid: int, perf: bool
) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(lua), url]
    counter = None
    if perf:
        counter = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", "instructions:u", "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body)}, check=True
    ).stdout
    used = cpu_seconds(pid) - cpu
    instructions = None
    if counter is not None:
        counter.send_signal(signal.SIGINT)
        instructions = _instructions(counter.communicate(timeout=10)[1])
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    result: dict[str, Any] = json.loads(line[len("BENCH ") :])
    requests = max(result["requests"], 1)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_us"] = used / requests * 1e6
    result["kinstr"] = None if instructions is None else instructions / requests / 1000
    return result


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--connections", type=int, default=32, help="connections at saturation (default 32)"
    )
    parser.add_argument(
        "--moderate", type=int, default=2, help="connections at moderate load (default 2)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per server and load, taking turns; the fastest is shown (default 1)",
    )
    parser.add_argument("--offline", action="store_true", help="no registry: reference rules only")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("INFO", "WARNING"),
        help="serve's log level (default INFO, as in production: a decision line per review)",
    )
    parser.add_argument("--floor", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(int(args.floor[0]), args.floor[1], args.floor[2])
        return 0
    if shutil.which("wrk") is None:
        print("bench/webhook.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    from controller.tls.serving import self_signed

    workdir = Path(tempfile.mkdtemp(prefix="baseguard-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    registry = None
    try:
        pushed = None if args.offline else push_images(workdir)
        if pushed is None:
            mode = "offline (no docker-registry): reference rules only, no lineage"
            images = [
                f"docker.io/library/{n}:1.4.2"
                for n in ("api", "worker", "scheduler", "metrics", "logs")
            ]
            python = None
        else:
            registry, images, python = pushed
            mode = f"lineage via docker-registry at {registry.host}, warm cache"
        pair = self_signed(["localhost", "127.0.0.1"])
        ca, cert, key = pair.write(workdir / "tls")
        context = ssl.create_default_context(cafile=str(ca))
        (workdir / "policy.yaml").write_text(policy_yaml(python))
        review = deployment_review(images)
        body = workdir / "review.json"
        body.write_text(json.dumps(review))
        lua = workdir / "post.lua"
        lua.write_text(LUA)

        serve_port, floor_port = free_port(), free_port()
        serve_cmd = [
            sys.executable, "-m", "controller", "serve", "-p", str(workdir / "policy.yaml"),
            "--tls-cert", str(cert), "--tls-key", str(key), "--host", "127.0.0.1",
            "--port", str(serve_port), "--log-level", args.log_level,
        ]  # fmt: skip
        if registry is None:
            serve_cmd.append("--offline")
        else:
            config = workdir / "registries.yaml"
            config.write_text(f'registries:\n  - host: "{registry.host}"\n    insecure: true\n')
            serve_cmd += ["--registry-config", str(config)]
        serve_log = workdir / "serve.log"
        with serve_log.open("wb") as log:
            procs.append(
                subprocess.Popen(serve_cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            )
        floor_log = workdir / "floor.log"
        with floor_log.open("wb") as log:
            floor_cmd = [sys.executable, __file__, "--floor", str(floor_port), str(cert), str(key)]
            procs.append(subprocess.Popen(floor_cmd, stdout=log, stderr=subprocess.STDOUT))
        serve_url = f"https://127.0.0.1:{serve_port}/validate?timeout=10s"
        floor_url = f"https://127.0.0.1:{floor_port}/validate?timeout=10s"
        wait_ready(f"https://127.0.0.1:{serve_port}/readyz", context, procs[0], serve_log)

        warm = post(serve_url, body.read_bytes(), context)["response"]
        if not warm["allowed"] or warm.get("warnings"):
            raise SystemExit(
                f"the warm-up review was not a clean allow: {warm}\n{serve_log.read_text()}"
            )
        for _ in range(50):  # a few more, so every lookup path is cached and the code is warm
            post(serve_url, body.read_bytes(), context)
        deadline = time.monotonic() + 10
        while True:
            try:
                post(floor_url, body.read_bytes(), context)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

        perf = perf_works()
        results: dict[str, dict[str, Any]] = {}
        servers = (("floor", floor_url, procs[1].pid), ("serve", serve_url, procs[0].pid))
        for load, conns in (("saturated", args.connections), ("moderate", args.moderate)):
            for _ in range(args.repeat):  # floor and serve take turns, so drift hits both
                for name, url, pid in servers:
                    run = run_wrk(
                        url,
                        lua,
                        body,
                        connections=conns,
                        duration=args.duration,
                        pid=pid,
                        perf=perf,
                    )
                    run["rss"], run["peak_rss"] = rss_mib(pid)
                    best = results.get(f"{name}/{load}")
                    if best is None or run["rps"] > best["rps"]:
                        results[f"{name}/{load}"] = run

        print(
            f"baseguard webhook bench: a 5-container Deployment review ({body.stat().st_size} bytes), {mode}"
        )
        print(
            f"wrk -t1, {args.duration} s per run, best of {args.repeat}; saturated = "
            f"{args.connections} connections, moderate = {args.moderate}; serve logs at {args.log_level}"
        )
        print()
        print(
            f"{'':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} "
            f"{'RSS MiB':>8} {'CPU us/req':>11} {'k instr/req':>12}"
        )
        for key_, run in results.items():
            errors = run["socket_errors"] + run["bad_status"]
            kinstr = "-" if run["kinstr"] is None else f"{run['kinstr']:.0f}"
            print(
                f"{key_:24} {run['rps']:>9.0f} {run['p50_us'] / 1000:>8.2f} {run['p99_us'] / 1000:>8.2f} "
                f"{run['max_us'] / 1000:>8.2f} {errors:>7} {run['peak_rss']:>8.1f} {run['cpu_us']:>11.0f} "
                f"{kinstr:>12}"
            )
        ratio = results["serve/saturated"]["rps"] / results["floor/saturated"]["rps"]
        p99 = results["serve/moderate"]["p99_us"] / 1000
        print()
        cpu_ratio = results["floor/saturated"]["cpu_us"] / results["serve/saturated"]["cpu_us"]
        print(f"throughput ratio serve/floor: {ratio:.2f} (goal >= 0.80)")
        print(f"server CPU per request, floor/serve: {cpu_ratio:.2f} (the same ratio, less noisy)")
        if results["serve/saturated"]["kinstr"] and results["floor/saturated"]["kinstr"]:
            instr_ratio = (
                results["floor/saturated"]["kinstr"] / results["serve/saturated"]["kinstr"]
            )
            print(
                f"instructions per request, floor/serve: {instr_ratio:.2f} (not disturbed by load)"
            )
        p99_serve = results["serve/saturated"]["p99_us"] / 1000
        p99_floor = results["floor/saturated"]["p99_us"] / 1000
        print(
            f"p99 at saturation: serve {p99_serve:.2f} ms, floor {p99_floor:.2f} ms, "
            f"ratio serve/floor {p99_serve / p99_floor:.2f} (goal <= 1.50)"
        )
        print(f"serve p99 at moderate load: {p99:.2f} ms (goal < 5 ms)")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
