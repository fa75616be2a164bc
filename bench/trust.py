"""Registry requests and milliseconds of ``spec.trust``, cold and warm.

    python bench/trust.py [--rounds 20] [--shared-cache [--restart-after SECONDS]]

Everything on 127.0.0.1: Debian's ``docker-registry`` (started with the test
suite's helpers in a temporary directory) and the suite's faulty proxy in front
of it, used without faults to count the requests that reach the registry. It
pushes a base signed with cosign's simple signing (the ``.sig`` tag), an app
built on it, signed too, and a Sigstore bundle referrer on the app; then judges
the app under a policy that requires the platform key's signature on the image
and on its bases (``appliesTo: All``), with one Assessor (one client, one
results cache, as the webhook has):

1. cold: the first review (lineage + signatures), requests by kind and ms;
2. warm: the same review again (the lineage from the client's caches, the
   signatures from the results cache), median ms over ``--rounds``;
3. the same policy without ``trust`` for comparison (what signatures add);
4. with ``--shared-cache`` (needs Debian's ``redis-server``): the cold review by
   a replica on a shared tier, then a *restarted* replica (a new client, a new
   Assessor, nothing in memory, the same redis-server): its first review's
   registry requests, ms and CPU ms. The shared tier holds registry answers
   only (bodies re-hashed on read), so that replica walks the lineage and
   verifies the signatures again: this is what re-deriving costs, against
   sharing verified lineages and verification results that no re-hash could check.
   ``--restart-after 35`` lets the tier's 30 s tag and referrers answers expire first.

Load average is printed at the start and the end (``uptime``): figures from a
busy machine are not comparable. The exit status is non-zero only when a
verdict is not the expected one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import counted_registry, load
from registry import classify  # bench/registry.py: the one request classifier

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)



def policy(pem: str, *, trust: bool) -> Any:
    from controller.policy.compile import compile_policy

    spec: dict[str, Any] = {"pinning": {"disallowedTags": []}, "lineage": {"onUnknownBase": "Allow"}}
    if trust:
        spec["trust"] = {
            "appliesTo": "All",
            "authorities": [{"name": "platform", "keys": [{"publicKey": pem}]}],
        }
    doc = {"apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy"}
    return compile_policy({**doc, "metadata": {"name": "signed"}, "spec": spec})


async def measure(
    proxy: Any, host: str, image: str, pem: str, rounds: int, *, trust: bool, tier: Any = None,
    restart_after: float = 0.0,
) -> None:
    from controller.assess import Assessor
    from controller.lineage.resolve import LineageResolver
    from controller.policy.model import Action
    from controller.registry.cache import RegistryCache
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.workloads import ContainerImage, Workload

    policies = (policy(pem, trust=trust),)
    pod = Workload("Pod", "a", "shop", images=(ContainerImage("app", image, "/spec/containers/0/image"),))
    config = RegistryConfig.of(RegistryHost(host, insecure=True))

    async def review(assessor: Assessor) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        [verdict] = await assessor.assess([pod], policies, now=NOW)
        took = ((time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000)
        if verdict.verdict is not Action.ALLOW:
            raise SystemExit(f"expected an allow, got {verdict.results[0].violations}")
        return took

    async with RegistryClient(config, cache=RegistryCache(shared=tier and tier())) as client:
        assessor = Assessor(LineageResolver(client))
        proxy.clear()
        cold_ms, _ = await review(assessor)
        seen = Counter(classify(s.method, s.path)[1] for s in proxy.seen)
        proxy.clear()
        times = [(await review(assessor))[0] for _ in range(rounds)]
        warm_requests = len(proxy.seen) / rounds
    label = "with trust (image + base signed)" if trust else "without trust (lineage only)"
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(seen.items()))
    print(f"  {label}{', on a shared tier' if tier else ''}")
    print(f"    cold: {sum(seen.values())} requests ({kinds}), {cold_ms:.1f} ms")
    print(f"    warm: {warm_requests:g} requests per review, median {statistics.median(times):.2f} ms over {rounds}")
    if tier is None:
        return
    await asyncio.sleep(restart_after)
    restarted: list[tuple[int, str, float, float]] = []
    for _ in range(rounds):  # each round a new replica: nothing in memory, only the tier
        proxy.clear()
        async with RegistryClient(config, cache=RegistryCache(shared=tier())) as fresh:
            ms, cpu = await review(Assessor(LineageResolver(fresh)))
        kinds = Counter(classify(s.method, s.path)[1] for s in proxy.seen)
        restarted.append((len(proxy.seen), ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), ms, cpu))
    first, later = restarted[0], restarted[1:] or restarted
    print(f"    replicas restarted {restart_after:g} s later (lineage and signatures derived again from the tier):")
    print(f"      the first: {first[0]} registry requests ({first[1] or 'none'}), {first[2]:.2f} ms, {first[3]:.2f} ms CPU")
    print(
        f"      {len(later)} more: {sum(r[0] for r in later)} registry requests in all, median "
        f"{statistics.median(r[2] for r in later):.2f} ms, {statistics.median(r[3] for r in later):.2f} ms CPU"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--shared-cache", action="store_true", help="also measure a restarted replica on redis-server"
    )
    parser.add_argument(
        "--restart-after", type=float, default=0.0, metavar="SECONDS",
        help="with --shared-cache: how long after the first replica's reviews the restarted ones come "
        "(past 30 s the tier's tag and referrers answers have expired)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from support import signing
    from support.cosign_push import push_bundle_referrer, push_signature
    from support.images import layer
    from support.redis_server import start_redis

    from controller.registry import media
    from controller.sharedcache import SharedCacheConfig, open_tier

    print(f"baseguard trust bench; {load()}")
    with counted_registry("trust") as counted:
        workdir, registry, proxy = counted.workdir, counted.registry, counted.proxy
        key = signing.new_key("p256")
        pem = signing.public_pem(key)
        os_layer = layer({"etc/os-release": "bench"})
        base = registry.push_image("bench/trust/base", "1", [os_layer], annotations={media.BASE_NAME: "scratch"})
        push_signature(registry.pusher, "bench/trust/base", base.digest, key)
        app = registry.push_image(
            "bench/trust/app", "1", [os_layer, layer({"app": "bench"})],
            annotations={media.BASE_NAME: f"{proxy.host}/bench/trust/base:1", media.BASE_DIGEST: base.digest},
        )  # fmt: skip
        push_signature(registry.pusher, "bench/trust/app", app.digest, key)
        bundle = signing.key_bundle(signing.message_signature(key, app.digest), hint="platform[0]")
        push_bundle_referrer(registry.pusher, "bench/trust/app", app.digest, app.size, bundle)
        image = f"{proxy.host}/bench/trust/app:1"
        print(f"docker-registry {registry.host}, counting proxy {proxy.host}; image {image}\n")
        for trust in (True, False):
            asyncio.run(measure(proxy, proxy.host, image, pem, args.rounds, trust=trust))
        if args.shared_cache:
            redis = start_redis(workdir / "redis")
            try:
                key = workdir / "hmac-key"
                key.write_text(os.urandom(32).hex())
                config = SharedCacheConfig(url=redis.url, key_file=str(key))
                asyncio.run(
                    measure(proxy, proxy.host, image, pem, args.rounds, trust=True, tier=lambda: open_tier(config),
                            restart_after=args.restart_after)
                )
            finally:
                redis.stop()
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
