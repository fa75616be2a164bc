"""Every image of every workload kind, with its container name and JSON path.

PURE. The webhook's mutation needs the JSON Pointer of each ``image`` field;
the CLI and the audit need kind/namespace/name/container to report on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from controller.roles import ImageRole


@dataclass(frozen=True)
class ContainerImage:
    container: str | None  # container name; the volume name for an image volume
    image: str
    path: str  # JSON Pointer to the image string, e.g. /spec/template/spec/containers/0/image
    section: str = "containers"  # containers | initContainers | ephemeralContainers | volumes
    role: ImageRole = ImageRole.CONTAINER  # Dockerfile FROMs are BASE (final ancestry) or BUILD
    problem: str | None = None  # why ``image`` is "" when the object holds no usable string


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str | None
    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    images: tuple[ContainerImage, ...] = ()
    source: str = ""  # file path (CLI) or "admission" (webhook)
    document: int | None = None  # index of the YAML document in its file, for messages


# Where each kind keeps its pod spec, as a JSON Pointer from the object's root.
_POD_SPEC_PATHS: Mapping[str, str] = {
    "Pod": "/spec",
    "Deployment": "/spec/template/spec",
    "ReplicaSet": "/spec/template/spec",
    "StatefulSet": "/spec/template/spec",
    "DaemonSet": "/spec/template/spec",
    "Job": "/spec/template/spec",
    "ReplicationController": "/spec/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
    "PodTemplate": "/template/spec",
}

WORKLOAD_KINDS: frozenset[str] = frozenset(_POD_SPEC_PATHS)
"""Kinds that carry a pod spec (the kinds the webhook judges). Matched on ``kind`` alone, whatever the apiVersion."""

# The same paths as segments, split once: the webhook extracts on every review.
_POD_SPEC_PARTS: Mapping[str, tuple[str, ...]] = {
    kind: tuple(path.split("/")[1:]) for kind, path in _POD_SPEC_PATHS.items()
}

_CONTAINER_SECTIONS = ("containers", "initContainers", "ephemeralContainers")

# Lists inside Lists are not a Kubernetes thing; a cap keeps a YAML alias bomb
# (`items: [*a, *a, ...]` nested) from making the walk exponential.
_MAX_LIST_DEPTH = 3


def pod_spec_path(kind: str) -> str | None:
    """The JSON Pointer of ``kind``'s pod spec, or ``None`` when the kind runs no containers.

    Lets a caller tell "not a workload" (ConfigMap: ``None``) from "a workload
    whose images list is empty" (a Deployment with no containers yet).
    """
    return _POD_SPEC_PATHS.get(kind)


def pod_spec(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    """The pod spec inside ``obj`` (a Pod, or a controller's template); ``{}`` when there is none.

    The webhook hands it, with the namespace, to the credentials lookup, so the
    operator's pull secrets read a pod spec and never a webhook object.
    """
    path = pod_spec_path(kind)
    node: Any = obj
    for part in (path or "").split("/")[1:]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def is_list_kind(kind: str) -> bool:
    """``List`` and typed lists (``PodList``, ``DeploymentList``) hold objects in ``items``."""
    return kind == "List" or (kind.endswith("List") and len(kind) > len("List"))


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON Pointer from path segments (``~`` and ``/`` escaped)."""
    return "".join("/" + _escape(str(p)) for p in parts)


def _escape(part: str) -> str:
    if "~" in part or "/" in part:
        return part.replace("~", "~0").replace("/", "~1")
    return part


def flatten(
    obj: Mapping[str, Any], *, prefix: str = ""
) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """Yield ``(pointer, kind, object)`` for ``obj``, or for every item of a List, recursively.

    ``kind`` is the object's own ``kind``; an item of a typed list that has
    none (the API server leaves it out of ``PodList`` items) gets the list's
    element kind. ``None`` when there is no string kind at all. Items that are
    not mappings are passed over: there is nothing in them to check.
    """
    yield from _flatten(obj, prefix, None, 0)


def _flatten(
    obj: Mapping[str, Any], prefix: str, implied: str | None, depth: int
) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    raw_kind = obj.get("kind")
    kind = raw_kind if isinstance(raw_kind, str) and raw_kind else implied
    if kind is None or not is_list_kind(kind):
        yield prefix, kind, obj
        return
    items = obj.get("items")
    if depth >= _MAX_LIST_DEPTH or not isinstance(items, list):
        return
    element = kind[: -len("List")] or None
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            yield from _flatten(item, prefix + pointer("items", index), element, depth + 1)


def extract(
    obj: Mapping[str, Any],
    *,
    source: str = "",
    document: int | None = None,
    default_namespace: str | None = None,
    prefix: str = "",
) -> list[Workload]:
    """Every workload in ``obj`` (one, or one per item of a List), with all its images.

    - A kind in :data:`WORKLOAD_KINDS` always yields a :class:`Workload`, even
      when its pod spec is missing or malformed (then ``images`` is empty).
    - A kind that runs nothing (ConfigMap, Service, …) yields nothing.
    - Paths are JSON Pointers from the root of ``obj`` (``prefix`` is put in
      front, for a caller that hands in a piece of a larger document).
    - Malformed shapes never raise; see :func:`pod_spec_images` for what is kept.
    """
    kind = obj.get("kind")
    if isinstance(kind, str) and kind in _POD_SPEC_PATHS:  # one object, not a List: no walk
        return [_workload(obj, kind, prefix, source, document, default_namespace)]
    out: list[Workload] = []
    for ptr, item_kind, item in flatten(obj, prefix=prefix):
        if item_kind is not None and item_kind in _POD_SPEC_PATHS:
            out.append(_workload(item, item_kind, ptr, source, document, default_namespace))
    return out


def _workload(
    item: Mapping[str, Any],
    kind: str,
    ptr: str,
    source: str,
    document: int | None,
    default_namespace: str | None,
) -> Workload:
    spec = _at(item, _POD_SPEC_PARTS[kind])
    images = pod_spec_images(spec, ptr + _POD_SPEC_PATHS[kind]) if _is_mapping(spec) else []
    metadata = item.get("metadata")
    meta: Mapping[str, Any] = metadata if _is_mapping(metadata) else {}
    name = meta.get("name")
    namespace = meta.get("namespace")
    return Workload(
        kind=kind,
        name=name if isinstance(name, str) and name else None,
        namespace=namespace if isinstance(namespace, str) and namespace else default_namespace,
        labels=string_map(meta.get("labels")),
        images=tuple(images),
        source=source,
        document=document,
    )


def pod_spec_images(spec: Mapping[str, Any], prefix: str) -> list[ContainerImage]:
    """The images of one pod spec: containers, initContainers, ephemeralContainers, image volumes.

    ``prefix`` is the pointer of ``spec`` itself (``/spec`` for a Pod), so the
    webhook can reuse this for the ``pods/ephemeralcontainers`` subresource.

    Decisions on malformed input (an apiserver would have refused it, but the
    CLI reads files by hand):
    - a section that is not a list, a volume that is not a mapping, a volume
      whose ``image`` is not a mapping: nothing to check, skipped;
    - a container entry that is not a mapping, or whose ``image`` is missing,
      null or not a string: kept, with ``image == ""`` and the pointer where the
      image should be, so the ``invalid-reference`` rule reports it instead of
      the image passing unseen. A non-string (``image: 12``) is *not*
      stringified: ``"12"`` would parse as ``docker.io/library/12``.
    - a name that is not a string becomes ``None``.
    """
    # Hot in the webhook (every review, every container): section names need no
    # pointer escaping, and a dict is tested with the cheap check before the ABC.
    out: list[ContainerImage] = []
    for section in _CONTAINER_SECTIONS:
        containers = spec.get(section)
        if not isinstance(containers, list):
            continue
        base = f"{prefix}/{section}/"
        for index, container in enumerate(containers):
            if _is_mapping(container):
                name, image = container.get("name"), container.get("image")
            else:
                name = image = None
            out.append(
                ContainerImage(
                    container=name if isinstance(name, str) and name else None,
                    image=image if isinstance(image, str) else "",
                    path=f"{base}{index}/image",
                    section=section,
                    problem=None if isinstance(image, str) else _image_problem(container, image),
                )
            )
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for index, volume in enumerate(volumes):
            if not _is_mapping(volume):
                continue
            source = volume.get("image")
            if not _is_mapping(source):
                continue
            out.append(
                ContainerImage(
                    container=_name(volume),
                    image=_string(source.get("reference")),
                    path=f"{prefix}/volumes/{index}/image/reference",
                    section="volumes",
                )
            )
    return out


def _image_problem(container: object, image: object) -> str:
    """What is wrong with a non-string ``image``, in the words of the YAML the user wrote."""
    if not _is_mapping(container):
        return f"the container entry is {_kind_of(container)}, not a mapping with name and image"
    if image is None:
        return "the container has no image" if "image" not in container else "the image is null"
    return f"the image is {_kind_of(image)} ({image!r}), not a string: quote it in YAML"


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if _is_mapping(value):
        return "a mapping"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def string_map(value: object) -> dict[str, str]:
    """Labels as ``str -> str``; entries of any other type are dropped (the apiserver refuses them)."""
    if not _is_mapping(value):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _at(obj: Mapping[str, Any], parts: Sequence[str]) -> object:
    node: object = obj
    for part in parts:
        if not _is_mapping(node):
            return None
        node = node.get(part)
    return node


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with parsed JSON/YAML's ``dict`` answered without the ABC."""
    return type(value) is dict or isinstance(value, Mapping)


def _name(entry: Mapping[str, Any]) -> str | None:
    name = entry.get("name")
    return name if isinstance(name, str) and name else None


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""
