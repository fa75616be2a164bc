"""The webhook's short-lived memory: same question, same answer, failures never remembered."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess, free_port
from support.webhook import DATA, default_docs, fixture, policy_doc, set_images

from controller.assess import Assessor, WorkloadResult
from controller.memo import MemoAssessor, MemoResolver
from controller.policy.compile import compile_policy
from controller.reference import parse
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.webhook.review import memo_key, parse_review, workloads_of
from controller.workloads import Workload

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def workload_of(name: str, **images: str) -> Workload:
    (workload,) = workloads_of(parse_review(json.dumps(set_images(fixture(name), images))))
    return workload


# --------------------------------------------------------------------------- MemoAssessor (offline)


async def test_the_same_workload_is_judged_once_within_the_ttl() -> None:
    clock = Clock()
    assessor = MemoAssessor(None, ttl=5, clock=clock)
    policies = tuple(compile_policy(d) for d in default_docs())
    first = await assessor.assess([workload_of("deployment-create.json")], policies, now=NOW)
    again = await assessor.assess([workload_of("deployment-create.json")], policies, now=NOW)
    assert again[0].results is first[0].results
    assert first[0].verdict.value == "deny"
    clock.now += 5.1
    later = await assessor.assess([workload_of("deployment-create.json")], policies, now=NOW)
    assert later[0].results is not first[0].results
    assert later[0].results == first[0].results


async def test_a_remembered_result_speaks_of_the_workload_now_asking() -> None:
    assessor = MemoAssessor(None, ttl=5)
    policies = tuple(compile_policy(d) for d in default_docs())
    a = workload_of("pod-create-generated.json")
    await assessor.assess([a], policies, now=NOW)
    b = Workload(a.kind, "web-7d4b9c8f6d-x2k9q", a.namespace, a.labels, a.images, a.source)
    (result,) = await assessor.assess([b], policies, now=NOW)
    assert result.workload is b and result.obj.name == "web-7d4b9c8f6d-x2k9q"
    assert assessor.memo.hits == 1


@pytest.mark.parametrize(
    "change",
    ["policies", "image", "labels", "namespace", "day"],
)
async def test_anything_evaluation_reads_is_part_of_the_key(change: str) -> None:
    assessor = MemoAssessor(None, ttl=60)
    docs = default_docs()
    policies = tuple(compile_policy(d) for d in docs)
    workload = workload_of("deployment-create.json")
    await assessor.assess([workload], policies, now=NOW)
    now, other = NOW, workload
    if change == "policies":
        policies = tuple(compile_policy(d) for d in docs)  # a new snapshot, even if equal
    elif change == "image":
        other = workload_of("deployment-create.json", proxy="nginx:1.25.3")
    elif change == "labels":
        other = Workload(
            workload.kind, workload.name, workload.namespace, {"x": "y"}, workload.images
        )
    elif change == "namespace":
        other = Workload(workload.kind, workload.name, "staging", workload.labels, workload.images)
    else:
        now = NOW + dt.timedelta(days=1)
    await assessor.assess([other], policies, now=now)
    assert assessor.memo.hits == 0


# --------------------------------------------------------------------------- MemoResolver (real registry)


@pytest_asyncio.fixture
async def client(registry: RegistryProcess, proxy: FaultyProxy) -> AsyncIterator[RegistryClient]:
    config = RegistryConfig.of(
        RegistryHost(registry.host, insecure=True),
        RegistryHost(proxy.host, insecure=True),
        RegistryHost(f"127.0.0.1:{free_port()}", insecure=True),
    )
    async with RegistryClient(config) as client:
        yield client


def push(registry: RegistryProcess, repo: str) -> str:
    base = registry.push_image(
        f"{repo}/base", "1", [layer({"b": repo})], annotations={media.BASE_NAME: "scratch"}
    )
    registry.push_image(
        f"{repo}/app",
        "1.0.0",
        [layer({"b": repo}), layer({"a": repo})],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )
    return f"{repo}/app:1.0.0"


async def test_concurrent_lookups_share_one_resolution_and_it_is_remembered(
    client: RegistryClient, registry: RegistryProcess, unique_repo: str
) -> None:
    ref = parse(f"{registry.host}/{push(registry, unique_repo)}")
    clock = Clock()
    resolver = MemoResolver(client, ttl=5, clock=clock)
    tasks = [asyncio.ensure_future(resolver.resolve(ref)) for _ in range(20)]
    await asyncio.sleep(0)
    assert len(resolver._flights) == 1
    lineages = await asyncio.gather(*tasks)
    assert all(lin is lineages[0] for lin in lineages)
    assert lineages[0].failure is None and len(lineages[0].platforms[0].levels) == 2
    requests = client.stats.total
    assert await resolver.resolve(ref) is lineages[0]
    assert client.stats.total == requests
    clock.now += 6
    assert await resolver.resolve(ref) is not lineages[0]


async def test_a_failed_lookup_is_not_remembered(client: RegistryClient) -> None:
    dead = list(client.config.hosts)[2]
    resolver = MemoResolver(client, ttl=60)
    lineage = await resolver.resolve(parse(f"{dead}/t/app:1"))
    assert lineage.failure is not None
    assert len(resolver.memo) == 0


async def test_a_caller_out_of_budget_does_not_cancel_the_lookup_for_others(
    client: RegistryClient, registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    ref = parse(f"{proxy.host}/{push(registry, unique_repo)}")
    proxy.fault("delay", r"/manifests/", seconds=0.3, times=1)
    resolver = MemoResolver(client, ttl=60)
    impatient = asyncio.ensure_future(resolver.resolve(ref))
    await asyncio.sleep(0.05)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    lineage = await resolver.resolve(ref)  # joins the flight still under way
    assert lineage.failure is None
    assert len(resolver.memo) == 1


async def test_a_lookup_every_caller_abandoned_stops_asking_the_registry(
    client: RegistryClient, registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    """A review answered after its budget leaves no lookup running behind it (SPEC bounds).

    The first manifest answer is slow; the only caller gives up meanwhile. The
    lineage walk must stop there: no config, no base manifest fetched later
    for nobody (before, the shielded flight carried on to the end).
    """
    ref = parse(f"{proxy.host}/{push(registry, unique_repo)}")
    proxy.fault("delay", r"/manifests/", seconds=0.4, times=1)
    resolver = MemoResolver(client, ttl=60)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(resolver.resolve(ref), timeout=0.1)  # the review's budget
    await asyncio.sleep(0.8)  # the slow answer has long arrived

    assert proxy.count("/blobs/") == 0
    assert proxy.count("/manifests/") == 1
    assert len(resolver._flights) == 0 and len(client.cache.flights) == 0
    assert len(resolver.memo) == 0


async def test_the_webhook_answers_the_same_with_and_without_memory(
    start_webhook: Any, client: RegistryClient, registry: RegistryProcess, unique_repo: str
) -> None:
    image = f"{registry.host}/{push(registry, unique_repo)}"
    doc = policy_doc("enforce-pinning.yaml")
    doc["spec"]["lineage"] = {"onUnknownBase": "Deny"}
    doc["spec"]["bases"] = {"allowed": [{"image": f"{registry.host}/{unique_repo}/other"}]}
    plain = await start_webhook(
        assessor=MemoAssessor(MemoResolver(client, ttl=0), ttl=0), docs=[doc]
    )
    memo = await start_webhook(
        assessor=MemoAssessor(MemoResolver(client, ttl=60), ttl=60), docs=[doc]
    )
    review = set_images(fixture("deployment-create.json"), {"app": image, "proxy": image})
    answers = [await hook.response(review) for hook in (plain, memo, memo, plain)]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["allowed"] is False
    assert "rule base-not-allowed" in answers[0]["status"]["message"]


# --------------------------------------------------------------------------- whole reviews (offline)

ALL_REVIEWS = sorted(p.name for p in DATA.glob("*.json"))


@pytest.mark.parametrize("endpoint", ["validate", "mutate"])
@pytest.mark.parametrize("name", ALL_REVIEWS)
async def test_a_remembered_review_gets_the_answer_a_fresh_one_gets(
    start_webhook: Any, name: str, endpoint: str
) -> None:
    plain = await start_webhook(assessor=Assessor(None))
    memo = await start_webhook(assessor=MemoAssessor(None, ttl=60))
    fresh = await plain.response(name, endpoint=endpoint)
    assert await memo.response(name, endpoint=endpoint) == fresh
    # another object with the same judged bytes (another uid and name) is answered from memory
    review = fixture(name)
    review["request"]["uid"] = "another-uid"
    if review["request"].get("object"):
        review["request"]["object"].setdefault("metadata", {})["name"] = "another-name"
    expected = await plain.response(review, endpoint=endpoint)
    assert await memo.response(review, endpoint=endpoint) == expected
    assert expected["uid"] == "another-uid"


async def test_a_review_is_judged_once_within_the_ttl(start_webhook: Any) -> None:
    clock = Clock()
    assessor = MemoAssessor(None, ttl=5, clock=clock)
    hook = await start_webhook(assessor=assessor)
    for _ in range(3):
        assert (await hook.response("deployment-create.json"))["allowed"] is False
    assert (assessor.reviews.misses, assessor.reviews.hits) == (1, 2)
    clock.now += 5.1
    await hook.response("deployment-create.json")
    assert (assessor.reviews.misses, assessor.reviews.hits) == (2, 2)
    hook.store.replace(dict(zip("ab", hook.store.snapshot.policies, strict=False)))
    await hook.response("deployment-create.json")  # new policies: judged again
    assert (assessor.reviews.misses, assessor.reviews.hits) == (3, 2)


def memo_key_of(review: dict[str, Any]) -> Any:
    return memo_key(parse_review(json.dumps(review)))


def changed(name: str, path: str, value: Any) -> dict[str, Any]:
    """``name``'s review with the field at ``path`` (``a.b.0.c``, under ``request``) set to ``value``."""
    review = fixture(name)
    node: Any = review["request"]
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return review


SPEC = "object.spec.template.spec"


@pytest.mark.parametrize(
    ("path", "value", "same"),
    [
        ("uid", "another", True),
        ("name", "another", True),
        ("object.metadata.name", "web-2", True),
        ("object.metadata.resourceVersion", "42", True),
        ("object.metadata.creationTimestamp", "2025-06-01T12:00:00Z", True),
        ("userInfo.username", "someone-else", True),
        ("dryRun", True, True),
        (f"{SPEC}.containers.1.image", "nginx:1.25.3", False),
        (f"{SPEC}.containers.1.name", "sidecar", False),
        (f"{SPEC}.containers.1.env", [{"name": "A", "value": "b"}], False),  # a miss, never wrong
        ("object.metadata.labels", {"app": "other"}, False),
        ("object.metadata.namespace", "staging", False),
        ("object.metadata.annotations", {"baseguard.io/checked-digests": "{}"}, False),
        ("namespace", "staging", False),
        ("operation", "UPDATE", False),
        ("kind.group", "example.com", False),
        ("subResource", "status", False),
    ],
    ids=[
        "uid", "name", "object-name", "resource-version", "created", "user", "dry-run", "image",
        "container-name", "env", "labels", "object-namespace", "annotations", "namespace",
        "operation", "group", "subresource",
    ],
)  # fmt: skip
def test_the_memo_key_holds_what_is_judged_and_nothing_else(
    path: str, value: Any, same: bool
) -> None:
    before = memo_key_of(fixture("deployment-create.json"))
    after = memo_key_of(changed("deployment-create.json", path, value))
    assert (before == after) is same


def test_an_update_is_keyed_by_its_old_object_too_and_a_delete_not_at_all() -> None:
    review = fixture("deployment-update-image.json")
    old_spec = SPEC.replace("object", "oldObject", 1)
    older = changed("deployment-update-image.json", f"{old_spec}.containers.1.image", "x:1")
    assert memo_key_of(review) != memo_key_of(older)
    assert memo_key_of(fixture("deployment-delete.json")) is None
    built = parse_review(json.dumps(fixture("deployment-create.json")))
    built.object = {**(built.object or {}), "status": {"replicas": 2**70}}  # not from JSON
    assert memo_key(built) is None  # orjson cannot write it: not remembered


class Slow(MemoAssessor):
    """A MemoAssessor whose judging takes a while, as a registry lookup would; counts judgings."""

    judgings = 0

    async def assess(self, *args: Any, **kwargs: Any) -> list[WorkloadResult]:
        self.judgings += 1
        await asyncio.sleep(0.1)
        return await super().assess(*args, **kwargs)


async def test_reviews_that_arrive_together_are_judged_once(start_webhook: Any) -> None:
    assessor = Slow(None, ttl=0)  # nothing remembered: only the sharing is at work
    hook = await start_webhook(assessor=assessor)
    reviews = []
    for i in range(8):
        review = fixture("pod-create-generated.json")
        review["request"]["uid"] = f"uid-{i}"
        reviews.append(review)
    answers = await asyncio.gather(*(hook.response(r) for r in reviews))
    assert assessor.judgings == 1
    assert [a["uid"] for a in answers] == [f"uid-{i}" for i in range(8)]
    assert all({**a, "uid": ""} == {**answers[0], "uid": ""} for a in answers)
    assert answers[0]["allowed"] is False
    await hook.response(reviews[0])  # judged, not remembered (ttl 0)
    assert assessor.judgings == 2
