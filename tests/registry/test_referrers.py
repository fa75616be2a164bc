"""Statements and referrers through the real client: the fallback tag on docker-registry 2.8.2
(which has no referrers API), the API itself through a front speaking distribution-spec 1.1,
and statement blobs verified and capped."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support.images import layer
from support.provenance import SLSA_V02, material, push_referrer, statement
from support.referrers import ReferrersFront
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.lineage.sources import find_statements
from controller.reference import parse
from controller.registry.client import RegistryClient

D1 = "sha256:" + "1" * 64


@pytest.fixture(scope="module")
def front(registry: RegistryProcess) -> Iterator[ReferrersFront]:
    server = ReferrersFront(registry.url).start()
    yield server
    server.stop()


async def test_fallback_tag_on_a_registry_without_the_api(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    img = registry.push_image(unique_repo, "v1", [layer({"app": unique_repo})])
    other = registry.push_image(unique_repo, "v2", [layer({"app": unique_repo + "2"})])
    ref = parse(img.tagged)
    pushed = push_referrer(
        registry.pusher, unique_repo, img, [statement(img, [material("alpine", "3.19", D1)])]
    )

    index = await registry_client.fetch_referrers(ref, img.digest)
    assert [d.digest for d in index.manifests] == [pushed["digest"]]
    assert index.manifests[0].artifact_type == pushed["artifactType"]
    # No fallback tag for the other image: no referrers, not a failure.
    assert (await registry_client.fetch_referrers(ref, other.digest)).manifests == ()
    # The registry answered the API with a bare 404 once; the host is remembered as lacking it.
    assert registry_client.stats.requests("GET", "referrers") == 1


async def test_referrers_api_when_the_registry_has_it(
    front: ReferrersFront, make_client: object, unique_repo: str
) -> None:
    from support.images import Pusher

    pusher = Pusher(front.url)
    img = pusher.push_image(unique_repo, "v1", [layer({"app": unique_repo})])
    st = statement(img, [material("alpine", "3.19", D1)])
    pushed = push_referrer(pusher, unique_repo, img, [st], fallback_tag=False)
    client = make_client(front)  # type: ignore[operator]
    found = await find_statements(client, parse(img.tagged), img.digest)
    assert found.where == "referrers"
    assert [r.normalized for r in found.candidates(img.digest)] == [
        f"docker.io/library/alpine:3.19@{D1}"
    ]
    assert front.count(r"/referrers/", method="GET") == 1
    assert front.count(r"/manifests/sha256-") == 0  # the API answered: no fallback tag asked
    assert pushed["digest"] in {e["digest"] for e in front.referrers[(unique_repo, img.digest)]}


async def test_statement_blob_is_capped_and_verified(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    body = json.dumps(
        {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": SLSA_V02}
    ).encode()
    blob = registry.push_blob(unique_repo, body)
    ref = parse(f"{registry.host}/{unique_repo}:x")
    assert await registry_client.fetch_blob(ref, blob["digest"], limit=len(body)) == body
    other = registry.push_blob(unique_repo, body + b" " * 64)
    with pytest.raises(LookupFailed, match=f"is over {len(body)} bytes"):
        await registry_client.fetch_blob(ref, other["digest"], limit=len(body))
