"""The leader's warm start against the real registry: after it, a review of a running pod's image
makes no registry request; it keeps its rate; each image is looked up with its own namespace's
pull secrets; and a failing registry is logged and counted, never fatal."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.kube_api import ApiDouble
from support.kube_objects import cluster_policy, pod
from support.redis_server import require_redis, start_redis
from support.registry import RegistryProcess
from support.replicas import StartReplica, admit

from controller.memo import MemoAssessor, MemoResolver
from controller.operator.credentials import PullSecrets
from controller.operator.kube import Kube
from controller.operator.warmstart import WarmStart
from controller.policy.compile import compile_policy
from controller.policy.model import Action
from controller.registry import media
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.sharedcache import SharedCacheConfig, open_tier
from controller.workloads import extract

from .test_registry import pull_secret, push_private


def running(name: str, ns: str, image: str, **extra: Any) -> dict[str, Any]:
    return {**pod(name, ns, image, **extra), "status": {"phase": "Running"}}


def bases_policy(base: str) -> dict[str, Any]:
    return cluster_policy(
        "bases",
        {
            "pinning": {"disallowedTags": []},
            "bases": {"allowed": [{"image": base}]},
            "lineage": {"onLookupFailure": "Deny"},
        },
    )


def push_app(registry: RegistryProcess, repo: str, tag: str = "1.0.0", *, via: str) -> str:
    """``base:1`` ← ``app:<tag>``, the base named through the host ``via``; returns the app's
    repository path."""
    os_layer = layer({"etc/os-release": f"base {repo}"})
    base = registry.push_image(f"{repo}/base", "1", [os_layer], annotations={media.BASE_NAME: "scratch"})
    registry.push_image(
        f"{repo}/app", tag, [os_layer, layer({"app": f"{repo} {tag}"})],
        annotations={media.BASE_NAME: f"{via}/{repo}/base:1", media.BASE_DIGEST: base.digest},
    )  # fmt: skip
    return f"{repo}/app"


@pytest.mark.parametrize("warm", [True, False], ids=["warm-start", "cold"])
async def test_after_the_warm_start_a_running_pods_image_is_judged_without_the_registry(
    double: ApiDouble,
    start_replica: StartReplica,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    unique_repo: str,
    warm: bool,
) -> None:
    app = push_app(registry, unique_repo, via=proxy.host)
    image = f"{proxy.host}/{app}:1.0.0"
    double.apply(bases_policy(f"{proxy.host}/{unique_repo}/base"))
    double.apply(running("web-1", "team-a", image))
    double.apply({**pod("done", "team-a", f"{proxy.host}/{unique_repo}/gone:1"), "status": {"phase": "Succeeded"}})
    replica = await start_replica(
        registry_config=RegistryConfig.of(RegistryHost(proxy.host, insecure=True)),
        warm_start=warm,
        warm_start_rate=50.0,
    )
    operator = replica.operator
    if warm:
        assert operator.warm is not None
        summary = await double.wait_for(lambda: operator.warm and operator.warm.last, what="the warm start")
        assert dict(summary.images) == {"warm": 1}  # the finished pod's image is not looked up
        assert summary.requests > 0
        assert "/gone/" not in " ".join(s.path for s in proxy.seen)
        exposed = generate_latest(replica.started.metrics.registry).decode()
        assert 'baseguard_warm_start_images_total{outcome="warm"} 1.0' in exposed
    else:
        assert operator.warm is None
    proxy.clear()
    # the rollout's next pod: same image, another name
    answer = await admit(replica, double, pod("web-2", "team-a", image))
    assert answer["allowed"] is True, answer
    if warm:
        assert proxy.count() == 0, [s.path for s in proxy.seen]
    else:
        assert proxy.count() > 0


async def test_the_warm_start_keeps_its_rate_and_a_failing_registry_only_counts(
    double: ApiDouble,
    kube: Kube,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    unique_repo: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """N images at R/s take at least (N-1)/R seconds; then, with every registry request
    failing, each image is counted failed, one line is logged, and nothing is raised."""
    n, rate = 6, 10.0
    for i in range(n):
        app = push_app(registry, unique_repo, f"1.0.{i}", via=proxy.host)
        double.apply(running(f"p-{i}", "team-a", f"{proxy.host}/{app}:1.0.{i}"))
    policies = (compile_policy(bases_policy(f"{proxy.host}/{unique_repo}/base")),)
    async with RegistryClient(RegistryConfig.of(RegistryHost(proxy.host, insecure=True))) as client:

        def warm_start(client: RegistryClient) -> WarmStart:
            return WarmStart(
                kube=kube,
                assessor=MemoAssessor(MemoResolver(client)),
                policies=lambda: policies,
                namespace_labels=dict,
                pull_secrets=None,
                rate=rate,
                concurrency=8,
                budget=10.0,
                requests=lambda: client.stats.total,
            )

        began = time.perf_counter()
        summary = await warm_start(client).run()
        took = time.perf_counter() - began
        assert dict(summary.images) == {"warm": n}
        assert took >= (n - 1) / rate, took

    proxy.fault("status", "/v2/", status=503)
    caplog.set_level(logging.INFO, logger="baseguard.operator.warmstart")
    async with RegistryClient(RegistryConfig.of(RegistryHost(proxy.host, insecure=True))) as cold:
        warm = warm_start(cold)
        summary = await warm.run()
    assert dict(summary.images) == {"failed": n}
    assert warm.counts["failed"] == n
    (line,) = [r for r in caplog.records if r.getMessage() == "warm start done"]
    fields = line.__dict__["fields"]
    assert (fields["images"], fields["failed"], fields["warm"]) == (n, n, 0)
    assert fields["requests"] > 0 and fields["seconds"] >= 0


async def test_the_operator_survives_a_failing_registry_during_its_warm_start(
    double: ApiDouble,
    start_replica: StartReplica,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    unique_repo: str,
) -> None:
    app = push_app(registry, unique_repo, via=proxy.host)
    image = f"{proxy.host}/{app}:1.0.0"
    double.apply(bases_policy(f"{proxy.host}/{unique_repo}/base"))
    double.apply(running("web-1", "team-a", image))
    proxy.fault("status", "/v2/", status=503)
    replica = await start_replica(
        registry_config=RegistryConfig.of(RegistryHost(proxy.host, insecure=True)),
        warm_start=True,
        warm_start_rate=50.0,
    )
    warm = replica.operator.warm
    assert warm is not None
    summary = await double.wait_for(lambda: warm.last, what="the warm start")
    assert dict(summary.images) == {"failed": 1}
    assert replica.operator.leading.is_set()  # still running, still leading
    answer = await admit(replica, double, pod("web-2", "team-a", image))
    assert answer["allowed"] is False and "lookup-failed" in answer["status"]["message"]


async def test_each_image_is_warmed_with_its_own_namespaces_pull_secrets(
    double: ApiDouble, kube: Kube, tls_registry: RegistryProcess, unique_repo: str
) -> None:
    """team-b's pod of a private image is looked up as team-b (no secret: it fails), never with
    the secret team-a holds; team-a's pod is looked up with team-a's secret and warms."""
    app, base = push_private(tls_registry, unique_repo)
    double.apply(pull_secret(tls_registry, "team-a"))
    policies = (compile_policy(bases_policy(base)),)
    config = RegistryConfig.of(RegistryHost(tls_registry.host, ca_file=tls_registry.ca_file))

    async def warm_start() -> dict[str, int]:
        async with RegistryClient(config) as client:
            warm = WarmStart(
                kube=kube,
                assessor=MemoAssessor(MemoResolver(client)),
                policies=lambda: policies,
                namespace_labels=dict,
                pull_secrets=PullSecrets(kube),
                rate=0,
            )
            return dict((await warm.run()).images)

    double.apply(running("b", "team-b", app))
    assert await warm_start() == {"failed": 1}
    double.delete("v1", "Pod", "b", "team-b")
    double.apply(running("a", "team-a", app, imagePullSecrets=[{"name": "regcred"}]))
    assert await warm_start() == {"warm": 1}
    assert double.recorded("GET", "/api/v1/namespaces/team-a/secrets/regcred")
    assert not double.recorded("GET", "/api/v1/namespaces/team-b/secrets/regcred")


async def test_what_the_leader_warms_reaches_another_replica_through_the_shared_tier(
    double: ApiDouble,
    kube: Kube,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    """The warm start writes through the registry client, so the shared tier gets what it
    fetched: a replica that never looked the image up judges its pod with 0 registry requests."""
    require_redis()
    server = start_redis(tmp_path / "redis")
    key = tmp_path / "hmac-key"
    key.write_bytes(os.urandom(48).hex().encode())
    host = RegistryConfig.of(RegistryHost(proxy.host, insecure=True))
    app = push_app(registry, unique_repo, via=proxy.host)
    image = f"{proxy.host}/{app}:1.0.0"
    policies = (compile_policy(bases_policy(f"{proxy.host}/{unique_repo}/base")),)
    double.apply(running("web-1", "team-a", image))

    def replica_client() -> tuple[RegistryClient, Any]:
        tier = open_tier(SharedCacheConfig(url=server.url, key_file=str(key)))
        return RegistryClient(host, cache=RegistryCache(shared=tier)), tier

    try:
        leader, leader_tier = replica_client()
        warm = WarmStart(
            kube=kube,
            assessor=MemoAssessor(MemoResolver(leader)),
            policies=lambda: policies,
            namespace_labels=dict,
            pull_secrets=None,
            rate=0,
        )
        assert dict((await warm.run()).images) == {"warm": 1}
        await leader.close()  # its shared-tier writes have landed
        await leader_tier.close()
        proxy.clear()

        other, other_tier = replica_client()
        try:
            (result,) = await MemoAssessor(MemoResolver(other)).assess(
                [*extract(pod("web-2", "team-a", image))], policies, now=dt.datetime.now(dt.UTC)
            )
        finally:
            await other.close()
            await other_tier.close()
        assert result.verdict is Action.ALLOW, result
        assert proxy.count() == 0, [s.path for s in proxy.seen]
    finally:
        server.stop()
