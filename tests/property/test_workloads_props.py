"""Workload extraction over arbitrary nested specs: every image found, at its exact pointer.

An image the extractor misses is an image no policy judges, so the model here
is exact: build a pod spec from generated containers, place it wherever each
kind keeps it (and inside Lists), and the extractor must report exactly those
images, in order, with JSON Pointers that lead back to each one (the mutating
webhook writes through them). Then arbitrary JSON at every level: never an
exception, never a pointer that leads elsewhere.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller.workloads import WORKLOAD_KINDS, extract, pod_spec_path

SECTIONS = ("containers", "initContainers", "ephemeralContainers")
images = st.one_of(
    st.sampled_from(["nginx", "python:3.12", "ghcr.io/a/b@sha256:" + "a" * 64, "", "Not A Ref"]),
    st.text(max_size=20),
)
names = st.one_of(st.none(), st.text(max_size=8), st.integers())
container = st.fixed_dictionaries(
    {"name": names}, optional={"image": st.one_of(images, st.none(), st.integers(), st.lists(st.text(), max_size=1))}
)
entries = st.one_of(container, st.none(), st.text(max_size=4), st.integers())
volume = st.one_of(
    st.fixed_dictionaries({"name": names}),
    st.fixed_dictionaries({"name": names, "image": st.fixed_dictionaries({}, optional={"reference": images})}),
    st.fixed_dictionaries({"name": names, "image": st.one_of(st.text(max_size=4), st.none())}),
    st.text(max_size=3),
)
pod_specs = st.fixed_dictionaries(
    {},
    optional={
        "containers": st.one_of(st.lists(entries, max_size=4), st.text(max_size=3), st.none()),
        "initContainers": st.lists(entries, max_size=3),
        "ephemeralContainers": st.lists(entries, max_size=2),
        "volumes": st.one_of(st.lists(volume, max_size=3), st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
        "nodeName": st.text(max_size=5),
    },
)


def expected_images(spec: dict[str, Any], prefix: str) -> list[tuple[str | None, str, str, str]]:
    """(container, image, pointer, section) the extractor must report, in order."""
    out = []
    for section in SECTIONS:
        items = spec.get(section)
        if not isinstance(items, list):
            continue
        for i, entry in enumerate(items):
            entry = entry if isinstance(entry, dict) else {}
            name = entry.get("name")
            image = entry.get("image")
            out.append(
                (
                    name if isinstance(name, str) and name else None,
                    image if isinstance(image, str) else "",
                    f"{prefix}/{section}/{i}/image",
                    section,
                )
            )
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for i, vol in enumerate(volumes):
            if not isinstance(vol, dict) or not isinstance(vol.get("image"), dict):
                continue
            name, ref = vol.get("name"), vol["image"].get("reference")
            out.append(
                (
                    name if isinstance(name, str) and name else None,
                    ref if isinstance(ref, str) else "",
                    f"{prefix}/volumes/{i}/image/reference",
                    "volumes",
                )
            )
    return out


def place(kind: str, spec: dict[str, Any], namespace: Any, labels: Any) -> dict[str, Any]:
    """An object of ``kind`` with ``spec`` where that kind keeps its pod spec."""
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "w", "namespace": namespace, "labels": labels}}
    path = pod_spec_path(kind)
    assert path is not None
    node = obj
    parts = path.split("/")[1:]
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = spec
    return obj


def resolve(doc: Any, ptr: str) -> Any:
    """RFC 6901, strictly: a pointer that does not lead anywhere is a failure."""
    node = doc
    for raw in ptr.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@given(
    kind=st.sampled_from(sorted(WORKLOAD_KINDS)),
    spec=pod_specs,
    namespace=st.one_of(st.none(), st.just(""), st.sampled_from(["prod", "team-a"]), st.integers()),
    labels=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.integers()), max_size=3)),
    wrap=st.sampled_from(["none", "List", "typed", "nested"]),
)
def test_every_image_of_every_kind_is_found_at_its_pointer(
    kind: str, spec: dict[str, Any], namespace: Any, labels: Any, wrap: str
) -> None:
    obj = place(kind, spec, namespace, labels)
    doc: dict[str, Any] = obj
    prefix = ""
    if wrap == "List":
        doc, prefix = {"kind": "List", "items": [{"kind": "ConfigMap"}, obj]}, "/items/1"
    elif wrap == "typed":  # a PodList leaves out the items' kind
        del obj["kind"]
        doc, prefix = {"kind": f"{kind}List", "items": [obj]}, "/items/0"
    elif wrap == "nested":
        doc, prefix = {"kind": "List", "items": [{"kind": "List", "items": [obj]}]}, "/items/0/items/0"
    before = copy.deepcopy(doc)

    found = extract(doc)

    assert doc == before  # extraction never changes what it reads
    (workload,) = found
    assert workload.kind == kind
    assert workload.namespace == (namespace if isinstance(namespace, str) and namespace else None)
    assert dict(workload.labels) == {
        k: v for k, v in (labels or {}).items() if isinstance(k, str) and isinstance(v, str)
    }
    want = expected_images(spec, prefix + (pod_spec_path(kind) or ""))
    got = [(i.container, i.image, i.path, i.section) for i in workload.images]
    assert got == want
    for image in workload.images:
        if image.image:
            assert resolve(doc, image.path) == image.image


REAL_KEYS = [
    "kind", "items", "metadata", "spec", "template", "jobTemplate", "containers", "initContainers",
    "ephemeralContainers", "volumes", "image", "reference", "name", "namespace", "labels",
]
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
              st.sampled_from([*sorted(WORKLOAD_KINDS), "List", "PodList", "DeploymentList", "ConfigMap"])),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=4)), inner, max_size=5),
    max_leaves=40,
)


@given(anything)
def test_arbitrary_json_never_breaks_extraction(doc: Any) -> None:
    if not isinstance(doc, dict):
        doc = {"kind": "List", "items": [doc]}
    for workload in extract(doc, default_namespace="default"):
        assert workload.kind in WORKLOAD_KINDS
        assert isinstance(workload.namespace, str)
        for image in workload.images:
            assert isinstance(image.image, str)
            if image.image:
                assert resolve(doc, image.path) == image.image
