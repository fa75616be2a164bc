"""One review, one referrers listing: lineage, trust and evidence share it.

A policy with both ``trust`` and ``evidence`` rules on an image whose signature
and scan are OCI 1.1 referrers: the provenance claim source, the signature
checker and the evidence reader each want ``referrers/<digest>``; the registry
is asked once (and, without the referrers API, the ``sha256-<hex>`` fallback
tag is read once). Real docker-registry, behind a front that has the API and
behind a plain counting proxy that does not.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from support import signing
from support.cosign_push import push_bundle_referrer, tag_of
from support.faulty_proxy import FaultyProxy
from support.images import Pushed, Pusher, sha256
from support.referrers import ReferrersFront
from support.registry import RegistryProcess
from support.scans import (
    APP_L,
    BASE_L1,
    BASE_L2,
    OCI,
    OCI_EMPTY,
    OCI_INDEX,
    TRIVY,
    findings,
    trivy_report,
)

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.policy.compile import compile_policy
from controller.policy.model import RuleCode
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.workloads import ContainerImage, Workload

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def front(registry: RegistryProcess) -> Iterator[ReferrersFront]:
    server = ReferrersFront(registry.url).start()
    yield server
    server.stop()


def both(key: signing.PrivateKey) -> Any:
    return compile_policy({
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "signed-and-patched"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": []},
            "lineage": {"onUnknownBase": "Allow", "staleBase": "Allow"},
            "trust": {"authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}]},
            "evidence": {"denyFixable": ["CRITICAL"]},
        },
    })  # fmt: skip


def signed_and_scanned(pusher: Pusher, repo: str, key: signing.PrivateKey) -> Pushed:
    """An image with a key-signed bundle and a Trivy report as referrers, and one fallback-tag
    index listing both (what a client leaves on a registry without the API)."""
    image = pusher.push_image(repo, "v1", [BASE_L1, BASE_L2, APP_L])
    bundle = signing.key_bundle(signing.message_signature(key, image.digest), hint="platform[0]")
    signature = push_bundle_referrer(
        pusher, repo, image.digest, image.size, bundle, fallback_tag=False
    )
    report = json.dumps(
        trivy_report(image.reference, findings(image), created="2026-12-06T10:00:00Z")
    ).encode()
    notes = {"org.opencontainers.image.created": "2026-12-06T10:00:00Z"}
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": OCI, "artifactType": TRIVY,
        "config": {"mediaType": OCI_EMPTY, **pusher.push_blob(repo, b"{}")},
        "layers": [{"mediaType": TRIVY, **pusher.push_blob(repo, report)}],
        "subject": image.descriptor(), "annotations": notes,
    }).encode()  # fmt: skip
    scan = pusher.push_manifest(repo, sha256(raw), raw, OCI)
    signature_size = len(manifest_body(pusher, repo, signature))
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI, "digest": signature, "size": signature_size,
             "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"},
            {"mediaType": OCI, "digest": scan, "size": len(raw), "artifactType": TRIVY,
             "annotations": notes},
        ],
    }).encode()  # fmt: skip
    pusher.push_manifest(repo, tag_of(image.digest), index, OCI_INDEX)
    return image


def manifest_body(pusher: Pusher, repo: str, digest: str) -> bytes:
    request = urllib.request.Request(
        f"{pusher.base_url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI}
    )
    with urllib.request.urlopen(request) as reply:
        body: bytes = reply.read()
    return body


async def review(host: str, image: Pushed, key: signing.PrivateKey) -> set[RuleCode]:
    pod = Workload(
        "Pod", "a", "shop",
        images=(ContainerImage("app", f"{host}/{image.repository}:v1", "/spec/containers/0/image"),),
    )  # fmt: skip
    async with RegistryClient(RegistryConfig.of(RegistryHost(host, insecure=True))) as client:
        [result] = await Assessor(LineageResolver(client)).assess([pod], (both(key),), now=NOW)
    return {v.rule for v in result.results[0].violations}


async def test_trust_and_evidence_on_referrers_cost_one_listing(
    front: ReferrersFront, unique_repo: str
) -> None:
    key = signing.new_key()
    image = signed_and_scanned(Pusher(front.url), unique_repo, key)
    front.clear()
    # the signature verified (no unsigned), the scan was read (its criticals found)
    assert await review(front.host, image, key) == {RuleCode.FIXABLE_VULNERABILITIES}
    assert front.count(r"/referrers/", method="GET") == 1
    assert front.count(r"/manifests/sha256-[0-9a-f]{64}$") == 0  # the API answered
    assert front.count(r"\.att$", method="GET") == 1  # cosign's tag: the client's tag cache


async def test_without_the_referrers_api_the_fallback_tag_is_read_once(
    registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str
) -> None:
    key = signing.new_key()
    image = signed_and_scanned(registry.pusher, unique_repo, key)
    proxy.clear()
    assert await review(proxy.host, image, key) == {RuleCode.FIXABLE_VULNERABILITIES}
    assert proxy.count(r"/referrers/", method="GET") == 1  # a bare 404: the host lacks the API
    assert proxy.count(r"/manifests/sha256-[0-9a-f]{64}$", method="GET") == 1
