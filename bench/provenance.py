"""Registry requests per lineage level for an image whose only claim is BuildKit provenance.

    python bench/provenance.py

Everything on 127.0.0.1: Debian's ``docker-registry`` (started with the test
suite's helpers in a temporary directory) and the suite's faulty proxy in
front of it, used without faults to count the requests that reach the
registry. It pushes what ``docker buildx build --push`` leaves behind for a
multi-stage build on two platforms: the app index with two platform images and
two attestation manifests (a SLSA v0.2 statement each, plus an SPDX SBOM
statement that must never be fetched); the statement lists the Dockerfile
frontend, a ``golang`` builder stage and the ``debian`` runtime base. No
annotation, no label. Then it resolves the app's lineage with a fresh client
and prints the requests per level (repository) and kind, cold and warm; the
same for a single-platform image whose statement is attached as an OCI 1.1
referrer (docker-registry 2.8 has no referrers API: the fallback tag is read);
and, for comparison, the same build annotated with ``base.name``/``base.digest``.

There is no goal to miss: provenance costs what it costs (the frontend and the
builder stage are candidates until their layers rule them out). The exit
status is non-zero only when the lineage is not the expected one.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from common import counted_registry
from registry import classify  # bench/registry.py: the one request classifier

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("HEAD tag", "GET tag", "GET digest", "GET blob", "GET referrers")


def table(seen: Counter[tuple[str, str]], levels: list[tuple[str, str]]) -> None:
    print(f"    {'level':<34} " + " ".join(f"{k:>13}" for k in KINDS) + f" {'total':>6}")
    for label, repo in levels:
        cells = " ".join(f"{seen[(repo, k)]:>13}" for k in KINDS)
        print(f"    {label:<34} {cells} {sum(n for (r, _), n in seen.items() if r == repo):>6}")
    total = sum(seen.values())
    print(
        f"    {'all':<34} "
        + " ".join(f"{sum(n for (_, kk), n in seen.items() if kk == k):>13}" for k in KINDS)
        + f" {total:>6}"
    )


async def measure(
    proxy: Any, host: str, image: str, *, expect: str
) -> tuple[Counter[tuple[str, str]], Any]:
    """Resolve ``image`` with a fresh client; the proxy's count of requests, and the lineage."""
    from controller.lineage.resolve import LineageResolver
    from controller.reference import parse
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost

    async with RegistryClient(RegistryConfig.of(RegistryHost(host, insecure=True))) as client:
        resolver = LineageResolver(client)
        proxy.clear()
        lineage = await resolver.resolve(parse(image))
        cold = Counter(classify(s.method, s.path) for s in proxy.seen)
        proxy.clear()
        await resolver.resolve(parse(image))
        warm = len(proxy.seen)
    for platform in lineage.platforms:
        base = platform.levels[1] if len(platform.levels) > 1 else None
        if base is None or str(base.source) != expect or base.verified is not True:
            raise SystemExit(f"unexpected lineage for {image} {platform.platform}: {platform}")
    print(f"    warm, same client: {warm} requests")
    return cold, lineage


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.images import layer
    from support.provenance import (
        ARCHES,
        push_build,
        push_buildx_index,
        push_referrer,
        sbom,
        statement,
    )

    from controller.registry import media

    with counted_registry("provenance") as counted:
        registry, proxy = counted.registry, counted.proxy
        build = push_build(registry, "bench/prov", host=proxy.host)
        push_buildx_index(
            registry.pusher,
            "bench/prov/app",
            "1",
            [
                (build.app[a], p, [statement(build.app[a], build.materials(a)), sbom(build.app[a])])
                for a, p in ARCHES.items()
            ],
        )
        levels = [
            ("0: app (+ its attestations)", "bench/prov/app"),
            ("1: debian (the base)", "bench/prov/debian"),
            ("   golang (builder stage, ruled out)", "bench/prov/golang"),
            ("   dockerfile (frontend, ruled out)", "bench/prov/dockerfile"),
        ]
        print(
            f"baseguard provenance bench: docker-registry {registry.host}, counting proxy {proxy.host}\n"
        )
        print("1. Provenance only: 2-platform index, attestation manifests, multi-stage statement")
        cold, _ = asyncio.run(
            measure(proxy, proxy.host, f"{build.root}/app:1", expect="provenance")
        )
        table(cold, levels)

        solo = registry.push_image(
            "bench/prov/app", "solo", [build.layers["amd64"], layer({"solo": "1"})]
        )
        push_referrer(
            registry.pusher, "bench/prov/app", solo, [statement(solo, build.materials("amd64"))]
        )
        print("\n2. Provenance as an OCI referrer (fallback tag: no referrers API), 1 platform")
        cold, _ = asyncio.run(
            measure(proxy, proxy.host, f"{build.root}/app:solo", expect="provenance")
        )
        table(cold, levels)

        annotated = {
            a: registry.push_image(
                "bench/prov/annotated",
                None,
                [build.layers[a], layer({"app": a})],
                arch=a,
                variant=p.split("/")[2] if p.count("/") == 2 else None,
                annotations={
                    media.BASE_NAME: f"{build.root}/debian:12-slim",
                    media.BASE_DIGEST: build.debian_index.digest,
                },
            )
            for a, p in ARCHES.items()
        }
        registry.push_index(
            "bench/prov/annotated", "1", [(annotated[a], p) for a, p in ARCHES.items()]
        )
        print("\n3. For comparison: the same 2-platform build annotated with base.name/base.digest")
        cold, _ = asyncio.run(
            measure(proxy, proxy.host, f"{build.root}/annotated:1", expect="annotation")
        )
        table(cold, [("0: app", "bench/prov/annotated"), *levels[1:2]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
