"""``spec.trust`` at admission: the webhook over real HTTPS, signatures in a real registry.

An image built on the publisher's signed base is admitted; the same base copied
to a mirror without its signature is denied, with the rule and the authority
named. A warm review asks the registry nothing more for the signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from support import signing
from support.cosign_push import push_signature
from support.images import layer
from support.registry import RegistryProcess
from support.webhook import StartWebhook, fixture, set_images

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost


@pytest_asyncio.fixture
async def client(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistryConfig.of(RegistryHost(registry.host, insecure=True))) as c:
        yield c


def trust_policy(key: Any) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "signed-bases"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": []},
            "trust": {
                "appliesTo": "Bases",
                "authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}],
            },
        },
    }


async def test_a_signed_base_is_admitted_and_its_unsigned_mirror_copy_denied(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, unique_repo: str
) -> None:
    key = signing.new_key("p256")
    os_layer, app_layer = layer({"etc/os-release": unique_repo}), layer({"app": unique_repo})
    scratch = {media.BASE_NAME: "scratch"}
    base = registry.push_image(f"{unique_repo}/base", "1", [os_layer], annotations=scratch)
    push_signature(registry.pusher, f"{unique_repo}/base", base.digest, key)
    mirror = registry.push_image(f"{unique_repo}/mirror/base", "1", [os_layer], annotations=scratch)
    claim = lambda p: {media.BASE_NAME: p.tagged, media.BASE_DIGEST: p.digest}  # noqa: E731
    on_signed = registry.push_image(f"{unique_repo}/app", "1", [os_layer, app_layer], annotations=claim(base))
    on_mirror = registry.push_image(f"{unique_repo}/app", "2", [os_layer, app_layer], annotations=claim(mirror))
    assessor = Assessor(LineageResolver(client))
    hook = await start_webhook(assessor=assessor, docs=[trust_policy(key)])

    good = set_images(fixture("deployment-create.json"), {"app": on_signed.tagged, "proxy": on_signed.tagged})
    assert (await hook.response(good))["allowed"] is True
    before = client.stats.total
    assert (await hook.response(good))["allowed"] is True
    warm = client.stats.total - before
    assert warm <= 2, warm  # the tags' digests at most; the signatures come from the results cache
    assert assessor.signatures is not None and assessor.signatures.results.hits >= 1

    bad = set_images(fixture("deployment-create.json"), {"app": on_signed.tagged, "proxy": on_mirror.tagged})
    response = await hook.response(bad)
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert 'container "proxy"' in message
    assert "rule unsigned" in message
    assert f"base {registry.host}/{unique_repo}/mirror/base:1" in message
    assert "authority platform" in message
    _, metrics = await hook.get("/metrics")
    assert 'rule="unsigned"' in metrics, metrics
