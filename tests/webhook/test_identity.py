"""The webhook judges a pinned digest by what it is (same assessment as ``check``), and
counts ``tag-mismatch`` in its metrics like every rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from support.images import layer
from support.registry import RegistryProcess
from support.webhook import StartWebhook, fixture, set_images

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost


@pytest_asyncio.fixture
async def client(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistryConfig.of(RegistryHost(registry.host, insecure=True))) as c:
        yield c


def _policy(python: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "match": {"namespaces": ["prod"]},
            "bases": {
                "allowed": [{"image": python, "tags": ["3.12*"]}],
                "deprecated": [{"image": python, "tags": ["3.8*"], "reason": "Python 3.8 is end of life"}],
            },
        },
    }


async def test_a_lying_tag_is_denied_through_the_webhook(
    start_webhook: StartWebhook, client: RegistryClient, registry: RegistryProcess, unique_repo: str
) -> None:
    os_layer = layer({"etc/os-release": unique_repo})
    py38 = registry.push_image(f"{unique_repo}/python", "3.8-slim", [os_layer, layer({"py": "3.8"})])
    py312 = registry.push_image(f"{unique_repo}/python", "3.12-slim", [os_layer, layer({"py": "3.12"})])
    python = f"{registry.host}/{unique_repo}/python"
    hook = await start_webhook(assessor=Assessor(LineageResolver(client)), docs=[_policy(python)])

    pinned = f"{python}@{py312.digest}"
    honest = set_images(fixture("deployment-create.json"), {"app": pinned, "proxy": pinned})
    assert (await hook.response(honest))["allowed"] is True

    lying = set_images(
        fixture("deployment-create.json"),
        {"app": f"{python}:3.12-slim@{py38.digest}", "proxy": pinned},
    )
    response = await hook.response(lying)
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "rule tag-mismatch" in message and "rule deprecated-base" in message
    assert f"the digest it pins is {python}:3.8-slim" in message
    _, metrics = await hook.get("/metrics")
    assert 'rule="tag-mismatch"' in metrics
