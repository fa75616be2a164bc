"""Files on disk → workloads, namespaces and policy documents for ``baseguard check``.

The CLI's input adapter: it reads files (the pure cores in
``controller.workloads`` and ``controller.dockerfile`` never do) through
:mod:`controller.documents`, which turns every problem into an
:class:`InputError` naming the file, the document and what is wrong, so
``check`` can exit 2 with a message worth reading.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from controller.dockerfile import DEFAULT_PLATFORM, dockerfile_workload
from controller.documents import (
    POLICY_KINDS,
    STDIN,
    describe,
    discover,
    documents_with_nodes,
    is_manifest,
    line_of,
    objects,
    read_text,
    where,
)
from controller.errors import InputError
from controller.policyfiles import load_policy_documents
from controller.workloads import Workload, extract, pod_spec_path, string_map

__all__ = ["Loaded", "is_dockerfile", "is_manifest", "load_inputs", "load_policy_documents"]


@dataclass
class Loaded:
    """What ``check`` got from its inputs.

    ``namespaces`` maps a Namespace document's name to its labels, plus the
    ``kubernetes.io/metadata.name`` label the API server adds to every
    namespace, so a ``namespaceSelector`` sees what it would see in a cluster.
    ``skipped`` lists the objects that run no containers, as
    ``"k8s/app.yaml#2 ConfigMap/settings"``, and (unless ``strict``) what is
    not a Kubernetes object at all, each with the reason. ``policies`` holds
    policy documents met among the inputs as ``(file, document index, document)``.
    """

    workloads: list[Workload] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    policies: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    lines: dict[tuple[str, int | None, str], int] = field(default_factory=dict)
    """The line of each image in its manifest: ``(file, document, JSON Pointer) → line``."""


#: How :func:`is_dockerfile` names them, for messages.
DOCKERFILE_NAMES = "Dockerfile*, Containerfile*, *.Dockerfile, *.dockerfile, *.Containerfile"


def is_dockerfile(name: str) -> bool:
    """The names BuildKit and Podman users give Dockerfiles: ``Dockerfile``, ``Dockerfile.prod``,
    ``dockerfile``, ``api.Dockerfile``, ``amd64-mqtt.dockerfile``, ``Containerfile``,
    ``Containerfile.arm64``, ``worker.containerfile``.

    ``Dockerfile.dockerignore`` is BuildKit's per-Dockerfile ignore file, not a
    Dockerfile.
    """
    if name.endswith(".dockerignore"):
        return False
    return (
        name in ("dockerfile", "containerfile")
        or name.startswith(("Dockerfile", "Containerfile"))
        or name.endswith((".Dockerfile", ".Containerfile", ".dockerfile", ".containerfile"))
    )


def load_inputs(
    paths: Sequence[str],
    *,
    default_namespace: str = "default",
    dockerfile_namespace: str | None = None,
    build_args: Mapping[str, str] | None = None,
    platforms: Sequence[str] = (DEFAULT_PLATFORM,),
    stdin: IO[str] | None = None,
    strict: bool = False,
) -> Loaded:
    """Read every manifest and Dockerfile under ``paths``.

    A directory is walked in sorted order, skipping hidden files and folders;
    in it, only Dockerfiles (:func:`is_dockerfile`) and manifests
    (:func:`is_manifest`) are read. A file named explicitly must be one of the
    two. ``-`` reads YAML from ``stdin`` (default ``sys.stdin``), so a
    rendered chart can be piped in. A file reached twice is read once.

    A real repository holds YAML that is not Kubernetes (``docker-compose.yml``,
    CI files, a chart's ``values.yaml``): such documents, and the files of Helm
    charts (templates are not YAML until rendered; :func:`chart_of`), are listed
    in ``skipped`` with the reason. ``strict`` makes them errors instead.

    A Dockerfile has no namespace, so only cluster-wide policies judge it, unless
    ``dockerfile_namespace`` places it in one (``check --namespace NS``): then that
    namespace's ``BaseImagePolicy``s judge it too, as they would its pods. A
    Dockerfile is read for each of ``platforms`` (BuildKit's platform ARGs differ).
    """
    loaded = Loaded()
    charts: set[str] = set()
    for path in discover(paths, wanted=lambda n: is_dockerfile(n) or is_manifest(n)):
        name = os.path.basename(path)
        # Dockerfiles are never templated: one beside a Chart.yaml is read.
        chart = None if path == STDIN or is_dockerfile(name) else chart_of(path)
        if chart is not None:
            if chart not in charts and not strict:
                charts.add(chart)
                loaded.skipped.append(
                    f"{chart}{os.sep} (a Helm chart: its templates are YAML only once rendered; "
                    f"helm template {chart} | baseguard check -)"
                )
            if not strict:
                continue
        if path == STDIN:
            text = (stdin or sys.stdin).read()
            _load_manifest("<stdin>", text, loaded, default_namespace=default_namespace, strict=strict)
        elif is_dockerfile(name):
            workload = dockerfile_workload(
                read_text(path), source=path, build_args=build_args, platforms=platforms
            )
            if dockerfile_namespace is not None:
                workload = replace(workload, namespace=dockerfile_namespace)
            loaded.workloads.append(workload)
        elif is_manifest(name):
            _load_manifest(path, read_text(path), loaded, default_namespace=default_namespace, strict=strict)
        else:
            raise InputError(
                f"{path}: not a Kubernetes manifest (.yaml, .yml, .json) "
                f"nor a Dockerfile ({DOCKERFILE_NAMES})"
            )
    return loaded


def chart_of(path: str) -> str | None:
    """The Helm chart folder (one holding ``Chart.yaml``) ``path`` lies in, else ``None``.

    Whichever way a file arrives, found by a folder walk or named one by one (as the
    pre-commit hook names changed files), a file inside a chart is skipped the same
    way: ``Chart.yaml``, ``values.yaml`` and templates are not Kubernetes YAML until
    ``helm template`` renders them. A relative path is looked at up to the current
    folder (the repository a hook runs in), an absolute one up to the root.
    """
    folder = os.path.dirname(path)
    while True:
        here = folder or "."
        if os.path.isfile(os.path.join(here, "Chart.yaml")):
            return here
        parent = os.path.dirname(folder)
        if not folder or folder in (".", os.sep) or parent == folder:
            return None
        folder = parent


def _load_manifest(
    path: str, text: str, loaded: Loaded, *, default_namespace: str, strict: bool = False
) -> None:
    for index, line, doc, node in documents_with_nodes(path, text):
        here = where(path, index, line)
        if not strict and (reason := _not_kubernetes(doc)):
            loaded.skipped.append(f"{path}#{index + 1} (not a Kubernetes object: {reason})")
            continue
        for item, kind, ptr in objects(doc, here):
            metadata = item.get("metadata")
            meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
            name = meta.get("name") if isinstance(meta.get("name"), str) else None
            if kind in POLICY_KINDS:
                loaded.policies.append((path, index, dict(item)))
            elif kind == "Namespace" and name:
                labels = string_map(meta.get("labels"))
                loaded.namespaces[name] = {"kubernetes.io/metadata.name": name, **labels}
            elif pod_spec_path(kind) is not None:
                obj = item if item.get("kind") == kind else {**item, "kind": kind}
                for workload in extract(
                    obj, source=path, document=index, default_namespace=default_namespace, prefix=ptr
                ):
                    if not workload.images:
                        spec = str(pod_spec_path(kind)).strip("/").replace("/", ".")
                        loaded.skipped.append(
                            f"{path}#{index + 1} {kind}/{workload.name or '(no name)'} "
                            f"(no containers: {spec}.containers is missing or not a list)"
                        )
                        continue
                    loaded.workloads.append(workload)
                    for image in workload.images:
                        at = line_of(node, image.path) if node is not None else None
                        if at is not None:
                            loaded.lines[(path, index, image.path)] = at
            else:
                loaded.skipped.append(
                    f"{path}#{index + 1} {kind}/{name or '(no name)'} (not a workload: runs no containers)"
                )


def _not_kubernetes(doc: object) -> str | None:
    """Why a document is plainly not a Kubernetes object (a compose file, a values file), or
    ``None``. One with just one of apiVersion and kind is a broken object, not a stranger."""
    if not isinstance(doc, Mapping):
        return f"{describe(doc)}, not a mapping"
    if "apiVersion" not in doc and "kind" not in doc:
        return "no apiVersion and no kind"
    return None
