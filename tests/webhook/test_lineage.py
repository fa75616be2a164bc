"""The webhook against a real docker-registry: lineage verdicts, pinning to the checked digest,
and a registry that fails or stalls (``onLookupFailure`` decides, within the budget).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from support.faulty_proxy import FaultyProxy
from support.images import Pushed, layer
from support.provenance import ARCHES, push_build, push_buildx_index, statement
from support.registry import RegistryProcess, free_port
from support.webhook import StartWebhook, Webhook, fixture, set_images

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.webhook.patches import CHECKED_DIGESTS


@dataclass
class Images:
    """debian:12 ← python:3.12 ← good:1.0.0; debian:12 ← python:3.8 ← old:1.0.0; mystery:1.0.0."""

    repo: str
    python312: Pushed
    python38: Pushed
    good: Pushed
    old: Pushed
    mystery: Pushed

    def ref(self, host: str, name: str, tag: str = "1.0.0") -> str:
        return f"{host}/{self.repo}/{name}:{tag}"


def push_images(registry: RegistryProcess, repo: str) -> Images:
    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    debian = layer({"etc/os-release": f"debian {repo}"})
    py312, py38 = layer({"python": f"3.12 {repo}"}), layer({"python": f"3.8 {repo}"})
    base = registry.push_image(
        f"{repo}/debian", "12", [debian], annotations={media.BASE_NAME: "scratch"}
    )
    p312 = registry.push_image(f"{repo}/python", "3.12", [debian, py312], annotations=claim(base))
    p38 = registry.push_image(f"{repo}/python", "3.8", [debian, py38], annotations=claim(base))
    app = layer({"app": repo})
    good = registry.push_image(
        f"{repo}/good", "1.0.0", [debian, py312, app], annotations=claim(p312)
    )
    old = registry.push_image(f"{repo}/old", "1.0.0", [debian, py38, app], annotations=claim(p38))
    mystery = registry.push_image(f"{repo}/mystery", "1.0.0", [layer({"m": repo})])
    return Images(repo, p312, p38, good, old, mystery)


def lineage_policy(
    host: str, repo: str, *, mutate: bool = False, on_failure: str = "Deny"
) -> dict[str, Any]:
    python = f"{host}/{repo}/python"
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "match": {"namespaces": ["prod"]},
            "pinning": {"disallowedTags": [], "mutateToDigest": mutate},
            "bases": {
                "allowed": [{"image": python, "tags": ["3.12*"]}],
                "deprecated": [
                    {
                        "image": python,
                        "tags": ["3.8*"],
                        "reason": "Python 3.8 reached end of life on 2024-10-07",
                        "replacement": f"{python}:3.12",
                    }
                ],
            },
            "lineage": {"onLookupFailure": on_failure, "onUnknownBase": "Deny"},
        },
    }


@pytest.fixture
def images(registry: RegistryProcess, unique_repo: str) -> Images:
    return push_images(registry, unique_repo)


@pytest.fixture
def dead_host() -> str:
    """A configured registry host where nothing listens: connections are refused."""
    return f"127.0.0.1:{free_port()}"


@pytest_asyncio.fixture
async def client(
    registry: RegistryProcess, proxy: FaultyProxy, dead_host: str
) -> AsyncIterator[RegistryClient]:
    config = RegistryConfig.of(
        RegistryHost(registry.host, insecure=True),
        RegistryHost(proxy.host, insecure=True),
        RegistryHost(dead_host, insecure=True),
    )
    async with RegistryClient(config) as client:
        yield client


async def online(
    start_webhook: StartWebhook, client: RegistryClient, *docs: dict[str, Any]
) -> Webhook:
    return await start_webhook(assessor=Assessor(LineageResolver(client)), docs=list(docs))


def deployment(**images: str) -> dict[str, Any]:
    return set_images(fixture("deployment-create.json"), images)


async def test_lineage_decides_allow_and_deny(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, images: Images
) -> None:
    hook = await online(start_webhook, client, lineage_policy(registry.host, images.repo))
    good = images.ref(registry.host, "good")
    both_good = deployment(app=good, proxy=good)
    assert await hook.response(both_good) == {"uid": both_good["request"]["uid"], "allowed": True}

    response = await hook.response(deployment(app=good, proxy=images.ref(registry.host, "old")))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    deprecated, not_allowed = response["status"]["message"].split("\n")
    line = deprecated
    assert line.startswith(
        f'container "proxy" image "{images.ref(registry.host, "old")}": policy bases, rule deprecated-base: '
    )
    assert "Python 3.8 reached end of life on 2024-10-07" in line
    assert line.endswith(f"use {registry.host}/{images.repo}/python:3.12")
    root = f"{registry.host}/{images.repo}"
    assert not_allowed.startswith('container "proxy" image ')
    assert (
        f"rule base-not-allowed: image {root}/old:1.0.0 is built on {root}/python:3.8 → "
        in not_allowed
    )

    response = await hook.response(deployment(app=good, proxy=images.ref(registry.host, "mystery")))
    assert response["allowed"] is False
    assert "rule unknown-base: no base could be established" in response["status"]["message"]
    stats = client.stats
    assert stats.cache_hits > 0
    _, metrics = await hook.get("/metrics")
    assert "baseguard_admission_violations_total" in metrics


async def test_mutate_pins_to_the_digest_that_was_checked(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, images: Images
) -> None:
    hook = await online(
        start_webhook, client, lineage_policy(registry.host, images.repo, mutate=True)
    )
    good = images.ref(registry.host, "good")
    response = await hook.response(
        deployment(app=good, proxy="nginx@sha256:" + "a" * 64), endpoint="mutate"
    )
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": f"{registry.host}/{images.repo}/good:1.0.0@{images.good.digest}",
        }
    ]
    # the pinned reference then passes validation, judged at that same digest
    pinned = deployment(app=f"{good}@{images.good.digest}", proxy=good)
    assert (await hook.response(pinned))["allowed"] is True


async def test_mutate_by_default_records_checked_digests_on_pods_only(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, images: Images
) -> None:
    hook = await online(start_webhook, client, lineage_policy(registry.host, images.repo))
    good, old = images.ref(registry.host, "good"), images.ref(registry.host, "old")
    pod = set_images(
        fixture("pod-create.json"), {"app": good, "proxy": old, "setup": good, "models": good}
    )
    response = await hook.response(pod, endpoint="mutate")
    assert response["allowed"] is True  # /mutate never denies; /validate does
    (op,) = json.loads(base64.b64decode(response["patch"]))
    assert op["op"] == "add"
    assert op["path"] == "/metadata/annotations/baseguard.io~1checked-digests"
    assert json.loads(op["value"]) == {
        "app": images.good.digest,
        "proxy": images.old.digest,
        "setup": images.good.digest,
        "volume:models": images.good.digest,
    }
    assert CHECKED_DIGESTS == "baseguard.io/checked-digests"
    workload = await hook.response(deployment(app=good, proxy=good), endpoint="mutate")
    assert "patch" not in workload  # a template annotation would loop GitOps tools


@pytest.mark.parametrize(
    ("on_failure", "allowed"),
    [("Deny", False), ("Warn", True), ("Allow", True)],
    ids=["deny", "warn", "allow"],
)
async def test_an_unreachable_registry_falls_to_on_lookup_failure(
    start_webhook: StartWebhook,
    client: RegistryClient,
    dead_host: str,
    on_failure: str,
    allowed: bool,
) -> None:
    dead = dead_host
    hook = await online(start_webhook, client, lineage_policy(dead, "t", on_failure=on_failure))
    started = time.monotonic()
    response = await hook.response(
        deployment(app=f"{dead}/t/app:1.0.0", proxy=f"{dead}/t/app:1.0.0")
    )
    assert time.monotonic() - started < 5
    assert response["allowed"] is allowed
    if on_failure == "Deny":
        assert "rule lookup-failed: the lineage of image " in response["status"]["message"]
        assert "lineage.onLookupFailure: Deny" in response["status"]["message"]
    elif on_failure == "Warn":
        app, proxy = response["warnings"]
        assert app.startswith('lookup-failed, container "app": cannot connect to registry')  # why
        assert proxy.startswith('lookup-failed, container "proxy": ')
        assert app.endswith("; check the registry and the pull credentials, then retry")
    else:
        assert "warnings" not in response


async def test_a_stalled_registry_is_cut_off_by_the_apiservers_timeout(
    start_webhook: StartWebhook,
    client: RegistryClient,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    images: Images,
) -> None:
    proxy.fault("delay", r"/manifests/", seconds=6)
    hook = await online(start_webhook, client, lineage_policy(proxy.host, images.repo))
    image = images.ref(proxy.host, "good")
    started = time.monotonic()
    # timeoutSeconds: 2 → 0.5 s for lookups (2 s minus the 1.5 s margin)
    response = await hook.response(deployment(app=image, proxy=image), query="?timeout=2s")
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "rule lookup-failed" in message and "did not finish within 0.5s" in message


async def test_a_scratch_claim_over_a_catalog_base_is_a_lineage_mismatch(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, images: Images
) -> None:
    """python 3.8's layers under ``base.name: scratch`` do not pass an allowlist of ``scratch``.

    A scratch claim is a claim: the catalog knows python:3.8, whose layers start
    the image's, so the image was built on it and the policy says so.
    """
    repo, host = images.repo, registry.host
    debian = layer({"etc/os-release": f"debian {repo}"})
    py38 = layer({"python": f"3.8 {repo}"})
    scratch = {media.BASE_NAME: "scratch"}
    registry.push_image(f"{repo}/static", "1.0.0", [debian, py38, layer({"x": repo})], annotations=scratch)
    registry.push_image(f"{repo}/copy", "1.0.0", [debian, py38], annotations=scratch)
    registry.push_image(f"{repo}/tiny", "1.0.0", [layer({"bin/app": repo})], annotations=scratch)
    policy = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "static-only"},
        "spec": {
            "mode": "Enforce",
            "bases": {"allowed": [{"image": "scratch"}]},
            "lineage": {"catalog": [f"{host}/{repo}/python:3.8"], "onUnknownBase": "Deny"},
        },
    }
    hook = await online(start_webhook, client, policy)

    tiny = images.ref(host, "tiny")
    assert (await hook.response(deployment(app=tiny, proxy=tiny)))["allowed"] is True

    for name, layers in (("static", "2 of its 3 layers"), ("copy", "2 of its 2 layers")):
        image = images.ref(host, name)
        response = await hook.response(deployment(app=image, proxy=tiny))
        assert response["allowed"] is False, name
        message = response["status"]["message"]
        assert (
            f'container "app" image "{image}": policy static-only, rule lineage-mismatch: '
            f"image {image} claims (annotation, linux/amd64) to be built on scratch"
        ) in message
        assert (
            f"its layers start with those of {host}/{repo}/python:3.8, a catalog base "
            f"({layers}), so it was not built from scratch"
        ) in message
        assert "rule base-not-allowed" in message


async def test_a_provenance_only_image_is_judged_by_its_verified_base_on_every_platform(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, unique_repo: str
) -> None:
    """``docker buildx`` output: no annotation, no label, only provenance attestations."""
    build = push_build(registry, unique_repo)
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [(build.app[a], p, [statement(build.app[a], build.materials(a))]) for a, p in ARCHES.items()],
    )
    debian = f"{build.root}/debian"
    policy = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "match": {"namespaces": ["prod"]},
            "bases": {
                "allowed": [{"image": debian}],
                "deprecated": [{"image": debian, "tags": ["12*"], "reason": "Debian 12 is on its way out"}],
            },
            "lineage": {"onLookupFailure": "Deny", "onUnknownBase": "Deny"},
        },
    }
    hook = await online(start_webhook, client, policy)
    image = f"{build.root}/app:1"

    response = await hook.response(deployment(app=image, proxy=image))

    # Allowed as built on debian (not unknown-base), and deprecated because of it: the warning
    # can only come from the base that provenance named and the layers confirmed.
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "rule deprecated-base" in message and "Debian 12 is on its way out" in message
    assert "unknown-base" not in message and "base-not-allowed" not in message


async def test_six_policies_that_cannot_reach_the_registry_warn_once_each_in_full_words(
    start_webhook: StartWebhook, client: RegistryClient, dead_host: str
) -> None:
    """The end-of-life library is six policies: one unreachable registry used to give six
    identical warnings, each cut before its fix, saying ``Deny`` while it warned."""
    docs = []
    for i in range(6):
        doc = lineage_policy(dead_host, "t", on_failure="Deny")
        doc["metadata"]["name"] = f"eol-{i}"
        doc["spec"]["mode"] = "Warn"
        docs.append(doc)
    hook = await online(start_webhook, client, *docs)
    image = f"{dead_host}/t/app:1.0.0"
    response = await hook.response(deployment(app=image, proxy=image))
    assert response["allowed"] is True
    app, proxy = response["warnings"]
    assert app.startswith('lookup-failed, container "app": cannot connect to registry')  # why
    assert proxy.startswith('lookup-failed, container "proxy": ')
    for warning in (app, proxy):
        assert len(warning) <= 120
        assert warning.endswith("; check the registry and the pull credentials, then retry")
