"""Every image of every workload kind, with its container, section and JSON Pointer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.roles import ImageRole
from controller.workloads import (
    WORKLOAD_KINDS,
    ContainerImage,
    Workload,
    extract,
    flatten,
    pod_spec_images,
    pod_spec_path,
    pointer,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "workloads"


def load(name: str) -> dict[str, Any]:
    text = (DATA / name).read_text()
    doc = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def resolve(doc: Any, ptr: str) -> Any:
    """Follow an RFC 6901 pointer by hand, so the test checks the pointer, not our helper."""
    node = doc
    for raw in ptr.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def rows(workload: Workload) -> list[tuple[str | None, str, str, str]]:
    return [(i.container, i.section, i.path, i.image) for i in workload.images]


# --- one fixture per kind --------------------------------------------------------------

KIND_CASES = [
    (
        "pod.yaml",
        ("Pod", "web", "shop"),
        [
            ("app", "containers", "/spec/containers/0/image", "docker.io/acme/web:2.3.1"),
            ("proxy", "containers", "/spec/containers/1/image", "envoyproxy/envoy:v1.30.1"),
            ("migrate", "initContainers", "/spec/initContainers/0/image", "ghcr.io/acme/migrate:1.4.2"),
            ("debugger", "ephemeralContainers", "/spec/ephemeralContainers/0/image", "busybox:1.36"),
            (
                "models",
                "volumes",
                "/spec/volumes/2/image/reference",
                "quay.io/acme/models@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ],
    ),
    (
        "deployment.yaml",
        ("Deployment", "api", "payments"),
        [
            ("api", "containers", "/spec/template/spec/containers/0/image", "docker.io/acme/api:3.12.3-slim"),
            ("wait-for-db", "initContainers", "/spec/template/spec/initContainers/0/image", "busybox:1.36"),
        ],
    ),
    (
        "replicaset.yaml",
        ("ReplicaSet", "frontend-7d9f", "default"),
        [
            (
                "php-redis",
                "containers",
                "/spec/template/spec/containers/0/image",
                "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5",
            )
        ],
    ),
    (
        "statefulset.yaml",
        ("StatefulSet", "db", "data"),
        [("postgres", "containers", "/spec/template/spec/containers/0/image", "postgres:16.3-bookworm")],
    ),
    (
        "daemonset.yaml",
        ("DaemonSet", "node-exporter", "monitoring"),
        [
            (
                "node-exporter",
                "containers",
                "/spec/template/spec/containers/0/image",
                "quay.io/prometheus/node-exporter:v1.8.1",
            )
        ],
    ),
    (
        "job.yaml",
        ("Job", "backfill", "analytics"),
        [("backfill", "containers", "/spec/template/spec/containers/0/image", "python:3.12-slim")],
    ),
    (
        "cronjob.yaml",
        ("CronJob", "nightly-report", "analytics"),
        [
            (
                "report",
                "containers",
                "/spec/jobTemplate/spec/template/spec/containers/0/image",
                "registry.example.com/data/report:2024.06.1",
            ),
            (
                "fetch",
                "initContainers",
                "/spec/jobTemplate/spec/template/spec/initContainers/0/image",
                "curlimages/curl:8.8.0",
            ),
        ],
    ),
    (
        "replicationcontroller.yaml",
        ("ReplicationController", "nginx", "default"),
        [("nginx", "containers", "/spec/template/spec/containers/0/image", "nginx")],
    ),
    (
        "podtemplate.yaml",
        ("PodTemplate", "batch-worker", "batch"),
        [("worker", "containers", "/template/spec/containers/0/image", "ghcr.io/acme/worker:latest")],
    ),
]


@pytest.mark.parametrize(
    ("fixture", "identity", "expected"), KIND_CASES, ids=[c[0].split(".")[0] for c in KIND_CASES]
)
def test_every_kind_yields_its_images_with_exact_pointers(
    fixture: str, identity: tuple[str, str, str], expected: list[tuple[str, str, str, str]]
) -> None:
    doc = load(fixture)
    [workload] = extract(doc, source=f"k8s/{fixture}", document=0, default_namespace="default")
    assert (workload.kind, workload.name, workload.namespace) == identity
    assert rows(workload) == expected
    assert workload.source == f"k8s/{fixture}"
    assert workload.document == 0
    for image in workload.images:
        assert resolve(doc, image.path) == image.image
        assert image.role is ImageRole.CONTAINER


def test_the_fixtures_cover_every_workload_kind() -> None:
    assert {c[1][0] for c in KIND_CASES} == WORKLOAD_KINDS


def test_labels_are_the_objects_own_not_the_templates() -> None:
    [pod] = extract(load("pod.yaml"))
    assert pod.labels == {"app.kubernetes.io/name": "web", "tier": "frontend"}
    [cron] = extract(load("cronjob.yaml"))
    assert cron.labels == {"team": "data"}
    [job] = extract(load("job.yaml"))
    assert job.labels == {}


def test_namespace_falls_back_to_the_default_and_otherwise_stays_unknown() -> None:
    doc = load("replicaset.yaml")
    assert extract(doc, default_namespace="team-a")[0].namespace == "team-a"
    assert extract(doc)[0].namespace is None
    assert extract(load("job.yaml"), default_namespace="team-a")[0].namespace == "analytics"


# --- lists ----------------------------------------------------------------------------


def test_a_list_yields_only_its_workloads_with_pointers_through_items() -> None:
    doc = load("list.yaml")
    [cart] = extract(doc, source="all.yaml", document=3)
    assert (cart.kind, cart.name, cart.namespace, cart.document) == ("Deployment", "cart", "shop", 3)
    assert rows(cart) == [
        ("cart", "containers", "/items/1/spec/template/spec/containers/0/image", "ghcr.io/acme/cart:1.0.0")
    ]
    assert resolve(doc, cart.images[0].path) == "ghcr.io/acme/cart:1.0.0"


def test_a_typed_list_lends_its_element_kind_to_items_without_one() -> None:
    doc = load("podlist.json")
    workloads = extract(doc)
    assert [(w.kind, w.name, w.namespace, w.labels) for w in workloads] == [
        ("Pod", "coredns-5d78c9869d-4xk2p", "kube-system", {"k8s-app": "kube-dns"}),
        ("Pod", "etcd-control-plane", "kube-system", {}),
    ]
    assert [w.images[0].path for w in workloads] == [
        "/items/0/spec/containers/0/image",
        "/items/1/spec/containers/0/image",
    ]


def test_lists_nest_and_items_keep_their_own_kind() -> None:
    inner = {"kind": "DeploymentList", "items": [load("deployment.yaml"), load("job.yaml")]}
    doc = {"apiVersion": "v1", "kind": "List", "items": [load("configmap.yaml"), inner]}
    workloads = extract(doc)
    assert [(w.kind, w.name) for w in workloads] == [("Deployment", "api"), ("Job", "backfill")]
    assert workloads[1].images[0].path == "/items/1/items/1/spec/template/spec/containers/0/image"


def test_flatten_reports_each_object_with_its_pointer_and_kind() -> None:
    doc = load("list.yaml")
    assert [(ptr, kind) for ptr, kind, _ in flatten(doc)] == [
        ("/items/0", "ConfigMap"),
        ("/items/1", "Deployment"),
        ("/items/2", "Service"),
    ]


def test_an_alias_bomb_of_nested_lists_is_cut_short() -> None:
    level: dict[str, Any] = load("job.yaml")
    for _ in range(12):  # 10**12 jobs if walked naively
        level = {"kind": "List", "items": [level] * 10}
    assert extract(level) == []


# --- kinds that are not workloads -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "/spec"),
        ("Deployment", "/spec/template/spec"),
        ("CronJob", "/spec/jobTemplate/spec/template/spec"),
        ("PodTemplate", "/template/spec"),
        ("ConfigMap", None),
        ("List", None),
        ("pod", None),
    ],
    ids=["pod", "deployment", "cronjob", "podtemplate", "configmap", "list", "lowercase-is-not-a-kind"],
)
def test_pod_spec_path_tells_workloads_from_other_kinds(kind: str, path: str | None) -> None:
    assert pod_spec_path(kind) == path


def test_a_configmap_is_not_a_workload_even_with_an_image_key() -> None:
    assert extract(load("configmap.yaml")) == []


def test_a_workload_without_containers_is_still_a_workload() -> None:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "empty"}}
    assert extract(doc) == [Workload(kind="Deployment", name="empty", namespace=None)]


# --- malformed shapes ------------------------------------------------------------------

MALFORMED = [
    ("spec-is-a-string", {"kind": "Pod", "spec": "oops"}, []),
    ("spec-is-null", {"kind": "Pod", "spec": None}, []),
    ("template-is-a-list", {"kind": "Deployment", "spec": {"template": []}}, []),
    ("containers-is-a-mapping", {"kind": "Pod", "spec": {"containers": {"name": "a"}}}, []),
    ("containers-is-null", {"kind": "Pod", "spec": {"containers": None}}, []),
    (
        "image-missing",
        {"kind": "Pod", "spec": {"containers": [{"name": "a"}]}},
        [("a", "containers", "/spec/containers/0/image", "")],
    ),
    (
        "image-null",
        {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": None}]}},
        [("a", "containers", "/spec/containers/0/image", "")],
    ),
    (
        "image-is-a-number-not-stringified",
        {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": 12}]}},
        [("a", "containers", "/spec/containers/0/image", "")],
    ),
    (
        "container-is-a-string",
        {"kind": "Pod", "spec": {"containers": ["nginx", {"name": "b", "image": "b:1"}]}},
        [
            (None, "containers", "/spec/containers/0/image", ""),
            ("b", "containers", "/spec/containers/1/image", "b:1"),
        ],
    ),
    (
        "name-is-a-number",
        {"kind": "Pod", "spec": {"containers": [{"name": 7, "image": "a:1"}]}},
        [(None, "containers", "/spec/containers/0/image", "a:1")],
    ),
    (
        "volumes-that-are-not-image-volumes",
        {
            "kind": "Pod",
            "spec": {
                "volumes": [
                    "junk",
                    {"name": "e", "emptyDir": {}},
                    {"name": "s", "image": "not-a-mapping"},
                    {"name": "r", "image": {"pullPolicy": "Always"}},
                ]
            },
        },
        [("r", "volumes", "/spec/volumes/3/image/reference", "")],
    ),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_shapes_never_crash(doc: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    [workload] = extract(doc)
    assert rows(workload) == expected


@pytest.mark.parametrize(
    "metadata",
    [None, "web", [], {"name": 3, "namespace": [], "labels": "a=b"}],
    ids=["null", "string", "list", "wrong-types"],
)
def test_malformed_metadata_gives_no_name_no_labels(metadata: Any) -> None:
    [workload] = extract({"kind": "Pod", "metadata": metadata}, default_namespace="ns")
    assert (workload.name, workload.namespace, workload.labels) == (None, "ns", {})


def test_label_values_that_are_not_strings_are_dropped() -> None:
    doc = {"kind": "Pod", "metadata": {"labels": {"a": "1", "b": 2, "c": None, "d": True}}}
    assert extract(doc)[0].labels == {"a": "1"}


def test_a_list_with_junk_items_keeps_the_good_ones() -> None:
    doc = {"kind": "List", "items": [None, "x", {"kind": 5}, load("job.yaml")]}
    assert [w.name for w in extract(doc)] == ["backfill"]


# --- the webhook's entry point -----------------------------------------------------------


def test_pod_spec_images_serves_the_ephemeralcontainers_subresource() -> None:
    spec = {
        "containers": [{"name": "app", "image": "app:1"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36", "targetContainerName": "app"}],
    }
    assert pod_spec_images(spec, "/spec") == [
        ContainerImage("app", "app:1", "/spec/containers/0/image"),
        ContainerImage(
            "debug", "busybox:1.36", "/spec/ephemeralContainers/0/image", section="ephemeralContainers"
        ),
    ]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("spec", "containers", 0, "image"), "/spec/containers/0/image"), (("a/b", "c~d"), "/a~1b/c~0d"), ((), "")],
    ids=["plain", "escaped", "root"],
)
def test_pointer_escapes_per_rfc6901(parts: tuple[str | int, ...], expected: str) -> None:
    assert pointer(*parts) == expected


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["", "nginx", "Pod", "a/b"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            ["spec", "template", "jobTemplate", "containers", "initContainers", "volumes", "image",
             "reference", "name", "items", "kind", "metadata", "labels", "namespace"]
        ),
        inner,
        max_size=4,
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["Pod", "Deployment", "CronJob", "PodTemplate", "List", "PodList", "ConfigMap"]),
    body=st.dictionaries(st.sampled_from(["spec", "template", "items", "metadata"]), _JSONISH, max_size=4),
)
def test_any_shape_extracts_without_crashing(kind: str, body: dict[str, Any]) -> None:
    doc = {**body, "kind": kind}
    for workload in extract(doc):
        for image in workload.images:
            assert isinstance(image.image, str)
            found = resolve_loosely(doc, image.path)
            assert found == image.image or (image.image == "" and not isinstance(found, str))


def resolve_loosely(doc: Any, ptr: str) -> Any:
    """Like :func:`resolve`, but a missing step gives ``None`` (the image was absent)."""
    node = doc
    for part in ptr.split("/")[1:]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None  # e.g. a container entry that is a list: no image under it
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node
