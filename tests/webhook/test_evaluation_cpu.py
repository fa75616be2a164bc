"""Evaluation CPU is counted and shared: one tenant's heavy policy does not stall the others.

A ``BaseImagePolicy`` is written by the namespace's tenant. Before these bounds a
1 MB one of 20,000 hostile globs cost 55 ms of CPU per image on the event loop: a
256-image review in that namespace took 17.9 s while another namespace's review
waited 17.1 s and ``/healthz`` 9.4 s. Now the policy is capped (1,000 patterns,
2,000 per namespace), each review has ``max_cpu_per_review`` of evaluation CPU
(past it: "not evaluated", ``onLookupFailure`` decides), and judging runs in
5 ms slices, each in its namespace's turn, so other namespaces are served
between them. Through the real HTTPS webhook.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from support.webhook import StartWebhook, fixture

from controller.assess import Assessor
from controller.webhook.settings import Settings

TENANT, OTHER = "team-a", "team-b"
#: The repository of the heavy review's images: the hostile globs scan it (fourteen
#: ``*a`` segments found one after the other), and only the last allowed-registry glob
#: of each policy matches it, so every image is judged against every glob and allowed.
LONG = "docker.io/acme/" + "a" * 20 + "/x499q/y499q/app"


def hostile(name: str, key: str) -> dict[str, Any]:
    """1,000 patterns (the per-policy cap) of 14 stars each (a glob may hold 16 wildcards)."""
    stars = "*a" * 14
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicy",
        "metadata": {"name": name, "namespace": TENANT},
        "spec": {
            "mode": "Enforce",
            "exclude": {"images": [f"docker.io/{stars}*{key}{i}c" for i in range(500)]},
            "registries": {"allowed": [f"docker.io/{stars}*{key}{i}q/*" for i in range(500)]},
        },
    }


HONEST = {
    "apiVersion": "baseguard.io/v1alpha1",
    "kind": "ClusterBaseImagePolicy",
    "metadata": {"name": "pins"},
    "spec": {"mode": "Enforce", "pinning": {"require": "Version"}},
}


def pod(namespace: str, images: list[str]) -> dict[str, Any]:
    review = copy.deepcopy(fixture("pod-create.json"))
    request = review["request"]
    request["namespace"] = namespace
    request["object"]["metadata"]["namespace"] = namespace
    spec = request["object"]["spec"]
    spec["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    for key in ("initContainers", "ephemeralContainers", "volumes"):
        spec.pop(key, None)
    return review


async def timed(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


async def test_a_heavy_tenant_review_is_cut_and_does_not_hold_other_namespaces(
    start_webhook: StartWebhook,
) -> None:
    settings = Settings(host="127.0.0.1", port=0)
    hook = await start_webhook(
        docs=[hostile("globs-1", "x"), hostile("globs-2", "y"), HONEST],
        settings=settings,
        assessor=Assessor(None, bounds=settings.bounds),
    )
    heavy = pod(TENANT, [f"{LONG}{i}:1.0.{i}" for i in range(1000)])  # ~3.5 s of CPU uncut
    honest = pod(OTHER, ["docker.io/library/python:3.12.3-slim", "docker.io/library/nginx:1.27.0"])
    alone, _ = await timed(hook.response(honest))

    pending = [asyncio.ensure_future(timed(hook.response(heavy))) for _ in range(2)]
    await asyncio.sleep(0.3)  # the heavy reviews are being judged
    waited, answer = await timed(hook.response(honest))
    probed, health = await timed(hook.get("/healthz"))
    finished = await asyncio.gather(*pending)
    heavy_times = [t for t, _ in finished]
    denied = finished[0][1]

    assert answer["allowed"] is True, answer
    assert health == (200, "ok\n")
    # Each heavy review is cut at its 2 s of CPU (two of them: 4 s of loop); the honest
    # review and the probe wait for a slice or two, not for them.
    assert min(heavy_times) > 2.0
    assert waited < alone + 0.75, (waited, alone, heavy_times)
    assert probed < 0.75, probed
    message = denied["status"]["message"]
    assert denied["allowed"] is False
    assert "rule lookup-failed" in message and "internal error" not in message
    assert (
        "was not judged under this policy: this review used its 2s of evaluation CPU "
        "(max_cpu_per_review = 2); not evaluated (lineage.onLookupFailure: Deny)"
    ) in message


async def test_the_cpu_bound_is_a_setting_and_names_itself(start_webhook: StartWebhook) -> None:
    settings = Settings(host="127.0.0.1", port=0, max_cpu_per_review=0.05)
    hook = await start_webhook(
        docs=[hostile("globs-1", "x")],
        settings=settings,
        assessor=Assessor(None, bounds=settings.bounds),
    )
    elapsed, answer = await timed(hook.response(pod(TENANT, [f"{LONG}{i}:1.0.{i}" for i in range(256)])))
    assert answer["allowed"] is False
    assert "this review used its 0.05s of evaluation CPU (max_cpu_per_review = 0.05)" in answer["status"]["message"]
    assert elapsed < 1.5


async def test_turns_go_round_robin_by_tenant_not_by_review() -> None:
    """Three slices of A queued before one of B: B's runs after one of A's, not after all three."""
    from controller.turns import FairTurns

    turns = FairTurns()
    order: list[str] = []

    async def slice_of(tenant: str, tag: str) -> None:
        async with turns.turn(tenant):
            order.append(tag)
            await asyncio.sleep(0.01)  # a turn is held; the others queue

    first = asyncio.ensure_future(slice_of("a", "a0"))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(slice_of("a", f"a{i}")) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    others.append(asyncio.ensure_future(slice_of("b", "b0")))
    await asyncio.gather(first, *others)
    assert order == ["a0", "a1", "b0", "a2", "a3"]
    assert turns.waiting == 0


async def test_a_cancelled_waiter_gives_up_its_place_and_never_its_turn() -> None:
    from controller.turns import FairTurns

    turns = FairTurns()
    await turns.take("a")
    waiter = asyncio.ensure_future(turns.take("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    turns.give()
    await asyncio.wait_for(turns.take("c"), 1.0)  # free again: nobody holds it
    turns.give()
