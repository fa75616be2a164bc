"""Registry requests for scan evidence, cold and warm, against a lineage-only policy.

    python bench/evidence.py

Everything on 127.0.0.1: Debian's ``docker-registry`` (the test suite's helpers, in a
temporary directory) and the suite's faulty proxy in front, used without faults to
count what reaches the registry. It pushes ``python:3.12-slim`` and an app built on it
(``base.name``/``base.digest`` annotations), a cosign vuln attestation of the app (DSSE at
the ``.att`` tag) whose fixable CRITICAL sits in the base's layers, then rebuilds the
base and attaches a clean Trivy report to it as an OCI artifact (fallback-tag index:
docker-registry 2.8 has no referrers API). Then it assesses one Pod with a fresh client,
twice (cold, then warm on the same client: the webhook's situation), under a policy with
only a ``lineage`` section and under one with ``evidence``, and prints the requests by
kind. The exit status is non-zero only when the verdict is not the expected one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from common import counted_registry
from registry import classify  # bench/registry.py: the one request classifier

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("HEAD tag", "GET tag", "GET digest", "GET blob", "GET referrers")
NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def policy(section: dict[str, Any]) -> Any:
    from controller.policy.compile import compile_policy

    return compile_policy({
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bench"}, "spec": {"mode": "Enforce", **section},
    })  # fmt: skip


async def measure(proxy: Any, image: str, compiled: Any) -> tuple[Counter[str], int, list[str]]:
    from controller.assess import Assessor
    from controller.lineage.resolve import LineageResolver
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig, RegistryHost
    from controller.workloads import extract

    pod = extract({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                   "spec": {"containers": [{"name": "app", "image": image}]}})  # fmt: skip
    async with RegistryClient(RegistryConfig.of(RegistryHost(proxy.host, insecure=True))) as client:
        assessor = Assessor(LineageResolver(client))
        proxy.clear()
        (result,) = await assessor.assess(pod, (compiled,), now=NOW)
        cold = Counter(classify(s.method, s.path)[1] for s in proxy.seen)
        proxy.clear()
        await assessor.assess(pod, (compiled,), now=NOW)
        warm = len(proxy.seen)
    return cold, warm, [v.rule.value for v in result.results[0].violations]


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.scans import (
        APP_L,
        BASE_L1,
        BASE_L2,
        NEW_BASE_L2,
        TRIVY,
        cosign_attest,
        findings,
        push_artifact,
        trivy_report,
        vuln_statement,
    )  # fmt: skip

    with counted_registry("evidence") as counted:
        registry, proxy = counted.registry, counted.proxy
        pusher = registry.pusher
        base = pusher.push_image("bench/python", "3.12-slim", [BASE_L1, BASE_L2])
        ann = {"org.opencontainers.image.base.name": f"{proxy.host}/bench/python:3.12-slim",
               "org.opencontainers.image.base.digest": base.digest}  # fmt: skip
        app = pusher.push_image("bench/shop", "1.0.0", [BASE_L1, BASE_L2, APP_L], annotations=ann)
        report = trivy_report(app.reference, findings(app), created="2026-12-06T10:00:00Z")
        cosign_attest(pusher, app, [vuln_statement(app, report, finished="2026-12-06T10:00:00Z")])
        rebuilt = pusher.push_image("bench/python", "3.12-slim", [BASE_L1, NEW_BASE_L2])
        clean = json.dumps(
            trivy_report(rebuilt.reference, [], created="2026-12-06T11:00:00Z")
        ).encode()
        push_artifact(pusher, rebuilt, [(TRIVY, clean, {})])
        image = f"{proxy.host}/bench/shop@{app.digest}"
        print(
            f"baseguard evidence bench: docker-registry {registry.host}, counting proxy {proxy.host}\n"
        )
        print(
            f"    {'policy':<44} "
            + " ".join(f"{k:>13}" for k in KINDS)
            + f" {'cold':>5} {'warm':>5}  verdict"
        )
        cases = [
            ("lineage only (staleBase: Deny)", {"lineage": {"staleBase": "Deny"}}, "stale-base"),
            ("evidence: denyFixable [CRITICAL]", {"evidence": {"denyFixable": ["CRITICAL"]}}, "fixable-vulnerabilities"),
        ]  # fmt: skip
        for label, section, expect in cases:
            cold, warm, rules = asyncio.run(measure(proxy, image, policy(section)))
            cells = " ".join(f"{cold[k]:>13}" for k in KINDS)
            print(f"    {label:<44} {cells} {sum(cold.values()):>5} {warm:>5}  {', '.join(rules)}")
            if expect not in rules:
                print(f"unexpected verdict for {label}: {rules}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
