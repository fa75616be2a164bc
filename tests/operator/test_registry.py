"""The operator with a real docker-registry: pull secrets read from the API double and used for a
private image (TLS + basic auth), and the catalog refresh every replica runs on a timer."""

from __future__ import annotations

import base64
import json
from typing import Any

from support.images import layer
from support.kube_api import ApiDouble
from support.kube_objects import cluster_policy, pod
from support.registry import RegistryProcess
from support.replicas import StartReplica, admit

from controller.reference import parse
from controller.registry import media
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost


def push_private(registry: RegistryProcess, repo: str) -> tuple[str, str]:
    """``base:1.0.0`` ← ``app:1.0.0``; returns (app reference, base repository)."""
    base_layer = layer({"etc/os-release": f"base {repo}"})
    base = registry.push_image(
        f"{repo}/base", "1.0.0", [base_layer], annotations={media.BASE_NAME: "scratch"}
    )
    registry.push_image(
        f"{repo}/app",
        "1.0.0",
        [base_layer, layer({"app": repo})],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )
    return f"{registry.host}/{repo}/app:1.0.0", f"{registry.host}/{repo}/base"


def pull_secret(registry: RegistryProcess, ns: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = {"auths": {registry.host: {"auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": ns},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


async def test_a_private_image_is_looked_up_with_the_pods_pull_secret(
    double: ApiDouble, start_replica: StartReplica, tls_registry: RegistryProcess, unique_repo: str
) -> None:
    app, base = push_private(tls_registry, unique_repo)
    double.apply(pull_secret(tls_registry, "team-a"))
    double.apply(
        cluster_policy(
            "bases",
            {
                "pinning": {"disallowedTags": []},
                "bases": {"allowed": [{"image": base}]},
                "lineage": {"onLookupFailure": "Deny"},
            },
        )
    )
    # the registry is configured (trusted CA) but without credentials: only the pull secret has them
    config = RegistryConfig.of(RegistryHost(tls_registry.host, ca_file=tls_registry.ca_file))
    replica = await start_replica(registry_config=config)

    anonymous = await admit(replica, double, pod("app", "team-a", app))
    assert anonymous["allowed"] is False
    assert "lookup-failed" in anonymous["status"]["message"]

    with_secret = await admit(
        replica, double, pod("app", "team-a", app, imagePullSecrets=[{"name": "regcred"}])
    )
    assert with_secret == {"uid": with_secret["uid"], "allowed": True}
    assert double.recorded("GET", "/api/v1/namespaces/team-a/secrets/regcred")

    # the service account's secrets count too
    double.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "builder", "namespace": "team-a"},
            "imagePullSecrets": [{"name": "regcred"}],
        }
    )
    via_account = await admit(
        replica, double, pod("app2", "team-a", app, serviceAccountName="builder")
    )
    assert via_account["allowed"] is True


async def test_every_replica_refreshes_the_catalog_so_a_moved_base_tag_is_still_recognised(
    double: ApiDouble, start_replica: StartReplica, registry: RegistryProcess, unique_repo: str
) -> None:
    """An image with no base claim, built on last week's ``base:1``: only the digest history
    the timer collected lets layer detection name its base after the tag moved on."""
    os_layer = layer({"etc/os-release": f"one {unique_repo}"})
    old_base = registry.push_image(f"{unique_repo}/base", "1", [os_layer])
    app = registry.push_image(
        f"{unique_repo}/app", "1.0.0", [os_layer, layer({"app": unique_repo})]
    )
    base = f"{registry.host}/{unique_repo}/base"
    double.apply(
        cluster_policy(
            "bases",
            {
                "pinning": {"disallowedTags": []},
                "bases": {"allowed": [{"image": base}]},
                "lineage": {"catalog": [f"{base}:1"]},
            },
        )
    )
    config = RegistryConfig.of(RegistryHost(registry.host, insecure=True))
    replica = await start_replica(
        registry_client=lambda: RegistryClient(config, cache=RegistryCache(tag_ttl=0.05)),
        catalog_refresh_interval=0.1,
    )
    assert replica.operator.resolver is not None
    catalog = replica.operator.resolver.catalog
    ref = parse(f"{base}:1")
    await double.wait_for(lambda: catalog.knows(ref, old_base.digest), what="the first refresh")

    new_base = registry.push_image(
        f"{unique_repo}/base", "1", [layer({"etc/os-release": f"two {unique_repo}"})]
    )
    await double.wait_for(
        lambda: catalog.knows(ref, new_base.digest), what="the refresh after the move"
    )
    assert catalog.knows(ref, old_base.digest)  # the history grows; nothing is forgotten

    response = await admit(replica, double, pod("app", "team-a", app.tagged))
    assert response["allowed"] is True  # its base is known, and allowed …
    assert response["warnings"][0].startswith(
        'stale-base, container "app"'
    )  # … and has moved on
