"""The background audit at cluster scale, against the real apiserver the cluster suite builds.

    python bench/audit_scale.py [--pods 10000] [--namespaces 500] [--replicas 2]
                                [--write-rate 20] [--settle-timeout 1800]

Everything on 127.0.0.1: the control plane of ``tests/cluster`` (etcd, kube-apiserver,
kube-controller-manager; no scheduler, so every pod stays Pending) and Debian's
``docker-registry``. ``--namespaces`` namespaces get ``--pods / --namespaces`` Pending
pods each, from Deployments of ``--replicas`` replicas (the controller-manager makes the
ReplicaSets and the pods); a quarter of the Deployments run ``app:latest`` (a
``disallowed-tag`` failure), the rest version-pinned images built on an allowed base
(lineage lookups in the registry). The wgpolicyk8s.io report CRDs and baseguard's CRDs
are installed, and one ClusterBaseImagePolicy.

Then the audit the leader runs (:class:`~controller.operator.audit.runner.Auditor`, built
as ``baseguard run`` builds it: throttled lookups, paced writes) runs twice in this
process, the second time with nothing changed. Printed for each pass: wall time,
apiserver requests by verb (counted at the client: every request the audit sent, list
pages included), registry requests, report objects written / unchanged / deleted and
the bytes written, Events and status patches, and the process's RSS; each with
``os.getloadavg()`` at the time it was taken (a 2-core machine shared with others: a
figure taken at a high load measures the neighbours too).

Not a test: it prints figures and fails only when something did not run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB."""
    current = 0.0
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def deployment(name: str, namespace: str, image: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def policy(python_repo: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": ["latest"]},
            "bases": {"allowed": [{"image": python_repo, "tags": ["3.12*"]}]},
            "lineage": {"maxDepth": 4, "onUnknownBase": "Deny", "onLookupFailure": "Deny"},
        },
    }


def push_images(reg: Any) -> tuple[str, list[str]]:
    """A base chain; returns (the allowed base's repository, the app images the Deployments run)."""
    from support.images import layer

    from controller.registry import media

    def claim(p: Any) -> dict[str, str]:
        return {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}

    debian = layer({"etc/os-release": "ID=debian\n"})
    python = layer({"usr/bin/python3": "python 3.12\n"})
    base = reg.push_image(
        "bench/debian", "12-slim", [debian], annotations={media.BASE_NAME: "scratch"}
    )
    py = reg.push_image("bench/python", "3.12.3-slim", [debian, python], annotations=claim(base))
    images = []
    for i in range(8):
        app = reg.push_image(
            f"bench/app{i}", "1.4.2", [debian, python, layer({"app/main.py": f"print({i})\n"})],
            annotations=claim(py),
        )  # fmt: skip
        images.append(app.tagged)
    latest = reg.push_image("bench/legacy", "latest", [debian, layer({"app": "old"})])
    return f"{reg.host}/bench/python", [latest.tagged, *images]


class Counted:
    """Wraps :class:`~controller.operator.kube.Kube`: every request it sends, counted by verb."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube
        self.verbs: Counter[str] = Counter()
        original = kube.request

        async def request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            params = kwargs.get("params") or {}
            verb = {"GET": "list" if path.rsplit("/", 1)[-1] in LISTED or "limit" in params else "get",
                    "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]  # fmt: skip
            self.verbs[verb] += 1
            return await original(method, path, **kwargs)

        kube.request = request


LISTED = {
    "deployments", "statefulsets", "daemonsets", "cronjobs", "jobs", "replicasets",
    "replicationcontrollers", "pods", "namespaces", "policyreports", "clusterpolicyreports",
}  # fmt: skip


async def populate(
    kube: Any, namespaces: int, pods: int, replicas: int, images: Sequence[str]
) -> int:
    """Namespaces and Deployments through the API (8 at a time); returns the pods expected."""
    per_ns = max(pods // namespaces, 1)
    deployments = max(per_ns // replicas, 1)
    gate = asyncio.Semaphore(8)

    async def create(path: str, body: Mapping[str, Any]) -> None:
        async with gate:
            try:
                await kube.create(path, body)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise

    names = [f"bench-{i:04d}" for i in range(namespaces)]
    await asyncio.gather(
        *(
            create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}},
            )
            for n in names
        )
    )
    bodies = []
    for i, ns in enumerate(names):
        for d in range(deployments):
            image = images[0] if (i + d) % 4 == 0 else images[1 + (i + d) % (len(images) - 1)]
            bodies.append(
                (
                    f"/apis/apps/v1/namespaces/{ns}/deployments",
                    deployment(f"app-{d:03d}", ns, image, replicas),
                )
            )
    await asyncio.gather(*(create(p, b) for p, b in bodies))
    return namespaces * deployments * replicas


async def wait_for_pods(kube: Any, expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    count = 0
    while time.monotonic() < deadline:
        count = len(await kube.list("/api/v1/pods"))
        print(f"  pods: {count} of {expected} ({load()})", flush=True)
        if count >= expected:
            return count
        await asyncio.sleep(10)
    return count


async def audit_passes(
    args: argparse.Namespace, kubeconfig: Path, registry_host: str, policy_body: dict[str, Any]
) -> int:
    from controller.assess import Assessor
    from controller.lineage.catalog import Catalog
    from controller.operator.audit.events import EventLedger
    from controller.operator.audit.runner import Assessors, Auditor, AuditResolver, Throttle
    from controller.operator.kube import Kube, load_configuration
    from controller.operator.policies import PolicyBook
    from controller.operator.running import AUDIT_MEMO_TTL
    from controller.policy.store import PolicyStore
    from controller.registry.client import RegistryClient
    from controller.registry.config import parse_registry_config

    kube = Kube(load_configuration(kubeconfig=str(kubeconfig)), timeout=60)
    counted = Counted(kube)
    store = PolicyStore()
    book = PolicyBook(store)
    book.apply(
        await kube.get("/apis/baseguard.io/v1alpha1/clusterbaseimagepolicies/bench"),
        kind="ClusterBaseImagePolicy",
    )
    store.mark_loaded()
    policies = store.snapshot.policies
    assert policies, "the bench policy did not compile"
    config = parse_registry_config(
        f"registries:\n  - host: {registry_host}\n    insecure: true\ntimeout: 5\n"
    )
    client = RegistryClient(config)
    catalog = Catalog()
    throttle = Throttle(10.0)

    def make(view: RegistryClient | None) -> Assessor:
        assert view is not None
        return Assessor(
            AuditResolver(view, catalog=catalog, ttl=AUDIT_MEMO_TTL, throttle=throttle), budget=60.0
        )

    auditor = Auditor(
        kube=kube,
        assessors=Assessors(make, client),
        clock=lambda: dt.datetime.now(dt.UTC),
        ledger=EventLedger(dt.timedelta(hours=1)),
        writes=Throttle(args.write_rate, burst=max(int(args.write_rate), 1)),
    )
    rows = []
    try:
        for label in ("first pass", "second pass (nothing changed)"):
            counted.verbs.clear()
            before = client.stats.total
            started = time.perf_counter()
            run = await auditor.run(policies)
            judged = time.perf_counter() - started
            await auditor.publish(run, book)
            wall = time.perf_counter() - started
            writes = auditor.last_writes
            current, peak = rss_mib()
            rows.append(
                (
                    label,
                    run,
                    judged,
                    wall,
                    dict(counted.verbs),
                    client.stats.total - before,
                    writes,
                    auditor.status_writes,
                    auditor.events_posted,
                    current,
                    peak,
                    load(),
                )
            )
            # the leader sees its own status write before the next pass, as the watch does
            book.apply(
                await kube.get("/apis/baseguard.io/v1alpha1/clusterbaseimagepolicies/bench"),
                kind="ClusterBaseImagePolicy",
            )
    finally:
        await client.close()
        kube.close()
    print()
    for (
        label,
        run,
        judged,
        wall,
        verbs,
        registry,
        writes,
        status,
        posted,
        current,
        peak,
        at,
    ) in rows:
        print(f"== {label}")
        print(f"  objects judged            {run.objects:>10}            ({at})")
        print(
            f"  audit wall time           {wall:>10.1f} s          (judging {judged:.1f} s, writing {wall - judged:.1f} s)"
        )
        print(
            f"  apiserver requests        {sum(verbs.values()):>10}            "
            + ", ".join(f"{v} {n}" for v, n in sorted(verbs.items()))
        )
        print(f"  registry requests         {registry:>10}")
        print(
            f"  reports written           {writes.written:>10}            ({writes.bytes / 1024:.0f} KiB; {writes.unchanged} unchanged, {writes.deleted} deleted)"
        )
        print(f"  status.audit patches      {status:>10}")
        print(
            f"  Events posted             {posted:>10}            (at most 200 per audit; the rest follow)"
        )
        print(f"  RSS                       {current:>10.0f} MiB        (peak {peak:.0f} MiB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pods", type=int, default=10000, help="Pending pods in all (default 10000)"
    )
    parser.add_argument("--namespaces", type=int, default=500, help="namespaces (default 500)")
    parser.add_argument("--replicas", type=int, default=2, help="pods per Deployment (default 2)")
    parser.add_argument(
        "--write-rate", type=float, default=20.0, help="the audit's writes per second (default 20)"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=1800.0, help="seconds to wait for the pods"
    )
    args = parser.parse_args(argv)
    if args.pods < 1 or args.namespaces < 1 or args.replicas < 1:
        print(
            "audit_scale: --pods, --namespaces and --replicas must be at least 1", file=sys.stderr
        )
        return 2

    from cluster.cluster_support import CRDS, POLICY_REPORT_CRDS, load_documents
    from support.controlplane import ControlPlane, binaries_dir
    from support.registry import registry_binary, start_registry

    where, ready = binaries_dir()
    if not ready or registry_binary() is None:
        print(
            f"audit_scale: needs the control plane in {where} (tests/cluster/build.sh) and docker-registry",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="baseguard-bench-audit-"))
    plane = reg = None
    try:
        print(f"start: {load()}", flush=True)
        plane = ControlPlane(workdir / "control-plane", where).start()
        reg = start_registry(workdir / "registry")
        python_repo, images = push_images(reg.pusher)
        crds = [d for path in CRDS for d in load_documents(path)] + [
            d
            for path in (
                POLICY_REPORT_CRDS,
                POLICY_REPORT_CRDS.with_name("wgpolicyk8s.io_clusterpolicyreports.yaml"),
            )
            for d in load_documents(path)
        ]
        plane.apply(crds)
        for crd in crds:
            plane.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{crd['metadata']['name']}",
            )
        plane.apply([policy(python_repo)])

        async def setup() -> int:
            from controller.operator.kube import Kube, load_configuration

            kube = Kube(load_configuration(kubeconfig=str(plane.admin_kubeconfig)), timeout=60)
            try:
                started = time.perf_counter()
                expected = await populate(kube, args.namespaces, args.pods, args.replicas, images)
                print(
                    f"created {args.namespaces} namespaces and their Deployments in {time.perf_counter() - started:.0f} s ({load()})",
                    flush=True,
                )
                found = await wait_for_pods(kube, expected, args.settle_timeout)
                print(
                    f"{found} Pending pods after {time.perf_counter() - started:.0f} s ({load()})",
                    flush=True,
                )
                return found
            finally:
                kube.close()

        if asyncio.run(setup()) < 1:
            print("audit_scale: no pod was created", file=sys.stderr)
            return 1
        return asyncio.run(
            audit_passes(args, plane.admin_kubeconfig, reg.host, policy(python_repo))
        )
    finally:
        if reg is not None:
            reg.stop()
        if plane is not None:
            plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
