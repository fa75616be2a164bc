"""Item 8: a Pod's imagePullSecrets, read through the chart's RBAC, open the real htpasswd registry.

The image lives in a TLS registry that wants basic auth; the policy needs its
lineage (an allowlist of bases), so the verdict depends on reading the registry.
The Secret is an ordinary ``kubernetes.io/dockerconfigjson`` in the workload's
namespace; baseguard reads it with the chart's ServiceAccount (``get`` on Secrets).
"""

from __future__ import annotations

import base64
import json

import pytest
from cluster.cluster_support import Baseguard, apply_ready, denial, pod, policy
from support.controlplane import ControlPlane
from support.credentials import TLS_USER
from support.images import Pushed, layer
from support.registry import RegistryProcess

from controller.registry import media


@pytest.fixture(scope="module")
def private(tls_registry: RegistryProcess) -> tuple[Pushed, Pushed]:
    """A base and an app built on it, behind htpasswd."""
    debian = layer({"etc/os-release": "debian private"})
    base = tls_registry.pusher.push_image(
        "private/python", "3.12.3", [debian], annotations={media.BASE_NAME: "scratch"}
    )
    app = tls_registry.pusher.push_image(
        "private/app", "1.0.0", [debian, layer({"app": "private"})],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )  # fmt: skip
    return base, app


def pull_secret(
    name: str, namespace: str, host: str, user: str, password: str
) -> dict[str, object]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {host: {"auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def test_the_pods_pull_secret_is_used_for_the_lookup(
    control_plane: ControlPlane,
    baseguard: Baseguard,
    ns: str,
    tls_registry: RegistryProcess,
    private: tuple[Pushed, Pushed],
) -> None:
    _, app = private
    host = tls_registry.host
    apply_ready(
        control_plane,
        policy(
            "private-bases",
            {
                "mode": "Enforce",
                "pinning": {"disallowedTags": []},
                "bases": {"allowed": [{"image": f"{host}/private/python", "tags": ["3.12*"]}]},
                "lineage": {"onLookupFailure": "Deny", "onUnknownBase": "Deny"},
            },
            namespace=ns,
        ),
    )
    control_plane.apply(
        [
            pull_secret("regcred", ns, host, *TLS_USER),
            pull_secret("stale", ns, host, TLS_USER[0], "an-old-password"),
        ]
    )

    # Without credentials first: what one credential set fetched is shared content
    # afterwards (the registry client's cache), so the refusals come before the success.
    without = denial(control_plane.apply([pod("without", app.tagged, namespace=ns)], check=False))
    assert "lookup-failed" in without, without
    assert f"requires credentials (Basic) and none are configured for {host}" in without, without

    stale = denial(
        control_plane.apply(
            [pod("stale", app.tagged, namespace=ns, imagePullSecrets=[{"name": "stale"}])],
            check=False,
        )
    )
    assert f"authentication refused by {host}" in stale, stale

    admitted = control_plane.apply(
        [pod("with-secret", app.tagged, namespace=ns, imagePullSecrets=[{"name": "regcred"}])]
    )
    assert admitted.returncode == 0
