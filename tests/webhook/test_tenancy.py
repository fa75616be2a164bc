"""One tenant's policy never shapes another namespace's verdict: the webhook, over real HTTPS,
against a real docker-registry, with two namespaces.

A namespaced ``BaseImagePolicy`` may contribute catalog bases; the catalog that keeps them is
shared by the process (a base's history is kept once), but what it holds is read only for the
lineages judged in the namespace whose policies named it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from support.images import Pushed, layer
from support.registry import RegistryProcess
from support.webhook import StartWebhook, Webhook, fixture, set_images

from controller.assess import Assessor
from controller.lineage.catalog import Catalog
from controller.lineage.resolve import LineageResolver
from controller.memo import MemoAssessor, MemoResolver
from controller.policy.compile import compile_policy
from controller.policy.model import Action
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.workloads import extract


@dataclass
class Scene:
    """python:3.12 ← shop:1 (team-b's); evil/fake:1 has shop's layers and claims evil/base0:1."""

    root: str
    python: Pushed
    shop: Pushed
    labelled: Pushed
    fake: Pushed
    base0: Pushed


@pytest.fixture
def scene(registry: RegistryProcess, unique_repo: str) -> Scene:
    repo, root = unique_repo, f"{registry.host}/{unique_repo}"
    debian = layer({"etc/os-release": f"debian {repo}"})
    py312 = layer({"usr/bin/python3.12": f"3.12 {repo}"})
    app = layer({"app": f"shop {repo}"})
    python = registry.push_image(f"{repo}/python", "3.12", [debian, py312])
    # No base claim: its base is detected by layers, against the catalog.
    shop = registry.push_image(f"{repo}/shop", "1", [debian, py312, app])
    # An inherited label naming the grandparent (debian): the catalog finds the closer base.
    labelled = registry.push_image(
        f"{repo}/labelled",
        "1",
        [debian, py312, app],
        labels={media.BASE_NAME: f"{root}/debian:12"},
    )
    registry.push_image(f"{repo}/debian", "12", [debian])
    base0 = registry.push_image(f"{repo}/evil/base0", "1", [layer({"x": repo})])
    fake = registry.push_image(
        f"{repo}/evil/fake",
        "1",
        [debian, py312, app],
        annotations={media.BASE_NAME: base0.tagged},
    )
    return Scene(root, python, shop, labelled, fake, base0)


def _cluster_policy(root: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "pinning": {"disallowedTags": []},
            "bases": {"allowed": [{"image": f"{root}/python", "tags": ["3.12*"]}]},
            "lineage": {"catalog": [f"{root}/python:3.12"], "onUnknownBase": "Deny"},
        },
    }


def _tenant_policy(root: str) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicy",
        "metadata": {"name": "mine", "namespace": "team-a"},
        "spec": {
            "mode": "Audit",
            "bases": {"allowed": [{"image": f"{root}/evil/*"}]},
            "lineage": {"catalog": [f"{root}/evil/fake:1"]},
        },
    }


def _pod(namespace: str, image: str) -> dict[str, Any]:
    review = set_images(
        fixture("pod-create.json"), {"app": image, "proxy": image, "setup": image, "models": image}
    )
    review["request"]["namespace"] = namespace
    review["request"]["object"]["metadata"]["namespace"] = namespace
    return review


async def _hook(start_webhook: StartWebhook, client: RegistryClient, scene: Scene) -> Webhook:
    return await start_webhook(
        assessor=Assessor(LineageResolver(client)),
        docs=[_cluster_policy(scene.root), _tenant_policy(scene.root)],
    )


@pytest.mark.parametrize("image", ["shop", "labelled"])
async def test_a_tenants_catalog_entry_does_not_change_another_namespaces_verdict(
    start_webhook: StartWebhook, registry_client: RegistryClient, scene: Scene, image: str
) -> None:
    """team-a's Audit policy names an image with team-b's layers as a catalog base; after team-a
    submits one pod (which fetches it), team-b's image is still allowed by the cluster policy."""
    hook = await _hook(start_webhook, registry_client, scene)
    judged = getattr(scene, image).tagged
    first = await hook.response(_pod("team-b", judged))
    assert first["allowed"] is True, first["status"]["message"]

    # team-a's own review fetches and reads its own catalog entry (and is judged by it).
    own = await hook.response(_pod("team-a", judged))
    assert "evil/fake:1" in str(own), own

    response = await hook.response(_pod("team-b", judged))
    assert response["allowed"] is True, response.get("status", {}).get("message")
    assert "evil" not in str(response)


async def test_through_the_memoised_assessor_serve_runs_team_a_first(
    start_webhook: StartWebhook, registry_client: RegistryClient, scene: Scene
) -> None:
    """As ``baseguard serve`` wires it (lineage and result memories): team-a's lineage is
    remembered under its own catalog set, and team-b's review, right after, is not given it."""
    hook = await start_webhook(
        assessor=MemoAssessor(MemoResolver(registry_client, catalog=Catalog())),
        docs=[_cluster_policy(scene.root), _tenant_policy(scene.root)],
    )
    assert (await hook.response(_pod("team-a", scene.shop.tagged)))["allowed"] is False
    response = await hook.response(_pod("team-b", scene.shop.tagged))
    assert response["allowed"] is True, response.get("status", {}).get("message")


async def test_a_tenants_catalog_entry_informs_its_own_namespace(
    start_webhook: StartWebhook, registry_client: RegistryClient, scene: Scene
) -> None:
    """What team-a's policy contributes is used for team-a: the layers match its fake base,
    which claims a base the cluster policy does not allow."""
    hook = await _hook(start_webhook, registry_client, scene)
    response = await hook.response(_pod("team-a", scene.shop.tagged))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "policy bases, rule base-not-allowed" in message
    assert "/evil/base0:1" in message  # the base its fake catalog entry claims


async def test_one_assessment_of_two_namespaces_looks_each_image_up_for_each(
    registry_client: RegistryClient, scene: Scene
) -> None:
    """The audit judges many namespaces in one call: the same image, asked about by team-a and
    team-b together, is looked up once for each, with each namespace's own catalog set."""
    policies = [
        compile_policy(_cluster_policy(scene.root)),
        compile_policy(_tenant_policy(scene.root)),
    ]

    def pod(namespace: str) -> Any:
        return extract(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": scene.shop.tagged}]},
            }
        )

    assessor = Assessor(LineageResolver(registry_client))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    team_a, team_b = await assessor.assess([*pod("team-a"), *pod("team-b")], policies, now=now)
    assert team_b.verdict is Action.ALLOW, team_b.results[0].violations
    assert team_a.verdict is Action.DENY
