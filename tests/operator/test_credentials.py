"""Pull secrets → registry credentials: parsing, the kubelet's order, and cached reads over HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support.kube_api import ApiDouble

from controller.operator.credentials import (
    PullSecrets,
    credentials_from_secret,
    secret_names,
    service_account_of,
)
from controller.operator.kube import InvalidName, Kube, object_path
from controller.registry.config import Credentials


def dockerconfigjson(
    name: str, ns: str, auths: dict[str, Any], *, kind: str = "kubernetes.io/dockerconfigjson"
) -> dict[str, Any]:
    key, payload = (
        (".dockerconfigjson", {"auths": auths}) if kind.endswith("json") else (".dockercfg", auths)
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": ns},
        "data": {key: base64.b64encode(json.dumps(payload).encode()).decode()},
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_secret_names_and_service_account() -> None:
    spec = {
        "imagePullSecrets": [{"name": "a"}, {"name": "b"}, {"name": "a"}, {}],
        "serviceAccountName": "builder",
    }
    assert secret_names(spec) == ["a", "b"]
    assert service_account_of(spec) == "builder"
    assert service_account_of({}) == "default"


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (
            dockerconfigjson("s", "n", {"https://index.docker.io/v1/": basic("u", "p")}),
            {"docker.io": Credentials("u", "p")},
        ),
        (
            dockerconfigjson(
                "s", "n", {"reg.example.com:5000": basic("u", "p")}, kind="kubernetes.io/dockercfg"
            ),
            {"reg.example.com:5000": Credentials("u", "p")},
        ),
        ({"type": "Opaque", "data": {"password": "eA=="}}, {}),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": "bm90IGpzb24="},
            },
            {},
        ),
    ],
    ids=["dockerconfigjson", "legacy-dockercfg", "other-type-ignored", "broken-ignored"],
)
def test_credentials_from_secret(secret: dict[str, Any], expected: dict[str, Credentials]) -> None:
    assert credentials_from_secret(secret) == expected


async def test_pod_secrets_win_over_the_service_accounts_and_reads_are_cached(
    double: ApiDouble, kube: Kube
) -> None:
    double.apply(
        dockerconfigjson(
            "team", "team-a", {"reg.example.com": basic("team", "t"), "ghcr.io": basic("team", "g")}
        )
    )
    double.apply(
        dockerconfigjson(
            "robot",
            "team-a",
            {"reg.example.com": basic("robot", "r"), "quay.io": basic("robot", "q")},
        )
    )
    double.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "team-a"},
            "imagePullSecrets": [{"name": "robot"}, {"name": "gone"}],
        }
    )
    secrets = PullSecrets(kube)
    spec = {"imagePullSecrets": [{"name": "team"}], "containers": []}
    creds = await secrets.for_pod("team-a", spec)
    assert creds == {
        "reg.example.com": Credentials("team", "t"),  # the pod's own secret first
        "ghcr.io": Credentials("team", "g"),
        "quay.io": Credentials("robot", "q"),
    }
    before = len(double.requests)
    assert await secrets.for_pod("team-a", spec) == creds
    assert len(double.requests) == before  # cached: no API call
    gets = [r.path for r in double.recorded("GET")]
    assert (
        gets.count("/api/v1/namespaces/team-a/secrets/gone") == 1
    )  # a missing secret is remembered too


async def test_no_namespace_or_no_secrets_means_no_credentials(
    double: ApiDouble, kube: Kube
) -> None:
    secrets = PullSecrets(kube)
    assert await secrets.for_pod(None, {"imagePullSecrets": [{"name": "x"}]}) == {}
    assert await secrets.for_pod("team-b", {}) == {}  # default account, absent: nothing


async def test_a_pull_secret_name_cannot_reach_another_namespace(
    double: ApiDouble, kube: Kube
) -> None:
    """A pod in team-a naming ``../../team-b/secrets/regcred`` must not get team-b's credentials."""
    double.apply(dockerconfigjson("regcred", "team-b", {"reg.example.com": basic("b", "secret")}))
    double.apply(dockerconfigjson("own", "team-a", {"quay.io": basic("a", "mine")}))
    secrets = PullSecrets(kube)
    spec = {
        "imagePullSecrets": [
            {"name": "../../team-b/secrets/regcred"},
            {"name": "..%2F..%2Fteam-b%2Fsecrets%2Fregcred"},
            {"name": "regcred/../../../team-b/secrets/regcred"},
            {"name": "own"},
        ],
        "serviceAccountName": "../../../team-b/serviceaccounts/default",
    }
    before = len(double.requests)
    assert await secrets.for_pod("team-a", spec) == {"quay.io": Credentials("a", "mine")}
    paths = [r.path for r in double.requests[before:]]
    assert paths == ["/api/v1/namespaces/team-a/secrets/own"]  # nothing else was asked
    assert not any("team-b" in p for p in paths)


async def test_a_namespace_name_is_checked_too(double: ApiDouble, kube: Kube) -> None:
    double.apply(dockerconfigjson("regcred", "team-b", {"reg.example.com": basic("b", "secret")}))
    before = len(double.requests)
    spec = {"imagePullSecrets": [{"name": "regcred"}]}
    assert await PullSecrets(kube).for_pod("x/../team-b", spec) == {}
    assert double.requests[before:] == []


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("secrets", "regcred"), {"namespace": "team-a"}, "/api/v1/namespaces/team-a/secrets/regcred"),
        (("namespaces", "team-a"), {}, "/api/v1/namespaces/team-a"),
        (("secrets",), {"namespace": "team-a"}, "/api/v1/namespaces/team-a/secrets"),
        (("secrets", "a.b-c"), {"namespace": "n"}, "/api/v1/namespaces/n/secrets/a.b-c"),
    ],
    ids=["object", "cluster-object", "collection", "dotted-name"],
)
def test_object_path_builds_paths_from_names(
    args: tuple[str, ...], kwargs: dict[str, str], expected: str
) -> None:
    assert object_path(*args, **kwargs) == expected


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        ("../../team-b/secrets/regcred", "team-a"),
        ("a/b", "team-a"),
        ("..", "team-a"),
        ("Upper", "team-a"),
        ("a" * 254, "team-a"),
        ("ok", "team-a/../team-b"),
        ("ok", "a.b"),  # a namespace is a label: no dots
        ("ok", ""),
    ],
    ids=["traversal", "slash", "dotdot", "upper-case", "too-long", "ns-traversal", "ns-dot", "ns-empty"],
)
def test_object_path_refuses_what_is_not_a_name(name: str, namespace: str) -> None:
    with pytest.raises(InvalidName):
        object_path("secrets", name, namespace=namespace)
