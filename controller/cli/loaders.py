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
from dataclasses import dataclass, field
from typing import IO, Any

from controller.dockerfile import dockerfile_workload
from controller.documents import (
    POLICY_KINDS,
    STDIN,
    discover,
    documents,
    is_manifest,
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
    ``"k8s/app.yaml#2 ConfigMap/settings"``. ``policies`` holds policy
    documents met among the inputs as ``(file, document index, document)``.
    """

    workloads: list[Workload] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    policies: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)


def is_dockerfile(name: str) -> bool:
    """``Dockerfile``, ``Dockerfile.prod``, ``api.Dockerfile`` (and Podman's ``Containerfile``s).

    ``Dockerfile.dockerignore`` is BuildKit's per-Dockerfile ignore file, not a
    Dockerfile.
    """
    if name.endswith(".dockerignore"):
        return False
    return (
        name == "dockerfile"
        or name.startswith(("Dockerfile", "Containerfile"))
        or name.endswith((".Dockerfile", ".Containerfile"))
    )


def load_inputs(
    paths: Sequence[str],
    *,
    default_namespace: str = "default",
    build_args: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> Loaded:
    """Read every manifest and Dockerfile under ``paths``.

    A directory is walked in sorted order, skipping hidden files and folders;
    in it, only Dockerfiles (:func:`is_dockerfile`) and manifests
    (:func:`is_manifest`) are read. A file named explicitly must be one of the
    two. ``-`` reads YAML from ``stdin`` (default ``sys.stdin``), so a
    rendered chart can be piped in. A file reached twice is read once.
    """
    loaded = Loaded()
    for path in discover(paths, wanted=lambda n: is_dockerfile(n) or is_manifest(n)):
        name = os.path.basename(path)
        if path == STDIN:
            text = (stdin or sys.stdin).read()
            _load_manifest("<stdin>", text, loaded, default_namespace=default_namespace)
        elif is_dockerfile(name):
            loaded.workloads.append(
                dockerfile_workload(read_text(path), source=path, build_args=build_args)
            )
        elif is_manifest(name):
            _load_manifest(path, read_text(path), loaded, default_namespace=default_namespace)
        else:
            raise InputError(
                f"{path}: not a Kubernetes manifest (.yaml, .yml, .json) "
                "nor a Dockerfile (Dockerfile*, *.Dockerfile)"
            )
    return loaded


def _load_manifest(path: str, text: str, loaded: Loaded, *, default_namespace: str) -> None:
    for index, line, doc in documents(path, text):
        for item, kind, ptr in objects(doc, where(path, index, line)):
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
                loaded.workloads.extend(
                    extract(
                        obj,
                        source=path,
                        document=index,
                        default_namespace=default_namespace,
                        prefix=ptr,
                    )
                )
            else:
                loaded.skipped.append(f"{path}#{index + 1} {kind}/{name or '(no name)'}")
