"""Signatures as OCI 1.1 referrers, read through a registry that has the referrers API.

Only descriptors whose ``artifactType`` is a Sigstore bundle (or a DSSE envelope)
are opened: an SBOM referring to the same image is never fetched, manifest or blob.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from support import signing
from support.cosign_push import push_bundle_referrer
from support.images import Pusher, layer
from support.referrers import ReferrersFront
from support.registry import RegistryProcess

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.policy.compile import compile_policy
from controller.policy.model import Action
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.workloads import ContainerImage, Workload

SPDX = "application/spdx+json"


@pytest.fixture(scope="module")
def front(registry: RegistryProcess) -> Iterator[ReferrersFront]:
    server = ReferrersFront(registry.url).start()
    yield server
    server.stop()


async def test_a_bundle_referrer_verifies_and_an_sbom_referrer_is_never_fetched(
    front: ReferrersFront, unique_repo: str
) -> None:
    key = signing.new_key("p384")
    pusher = Pusher(front.url)
    image = pusher.push_image(unique_repo, "v1", [layer({"app": unique_repo})])
    sbom = push_bundle_referrer(
        pusher, unique_repo, image.digest, image.size, b'{"spdxVersion":"SPDX-2.3"}',
        artifact_type=SPDX, fallback_tag=False,
    )  # fmt: skip
    bundle = signing.key_bundle(signing.message_signature(key, image.digest), hint="platform[0]")
    push_bundle_referrer(pusher, unique_repo, image.digest, image.size, bundle, fallback_tag=False)
    policy = compile_policy(
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": "signed"},
            "spec": {
                "pinning": {"disallowedTags": []},
                "trust": {"authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}]},
            },
        }
    )
    pod = Workload("Pod", "a", "shop", images=(ContainerImage("app", image.tagged, "/spec/containers/0/image"),))
    front.clear()
    async with RegistryClient(RegistryConfig.of(RegistryHost(front.host, insecure=True))) as client:
        [result] = await Assessor(LineageResolver(client)).assess(
            [pod], (policy,), now=dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
        )
    assert result.verdict is Action.ALLOW, result.results[0].violations
    # one listing for the review: the lineage (provenance is a claim source) and the
    # signatures each filter it
    assert front.count(r"/referrers/", method="GET") == 1
    assert front.count(r"/manifests/sha256-[0-9a-f]+$") == 0  # the API answered: no referrers tag
    assert front.count(sbom) == 0  # filtered by artifactType before anything was fetched
