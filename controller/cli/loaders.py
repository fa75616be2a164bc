"""Files on disk → workloads, namespaces and policy documents for ``baseguard check``.

The CLI's input adapter: it reads files (the pure cores in
``controller.workloads`` and ``controller.dockerfile`` never do) and turns
every problem into an :class:`InputError` that names the file, the document
and what is wrong, so ``check`` can exit 2 with a message worth reading.

Conventions:
- Document indexes are 0-based in data (``Workload.document``, the ``policies``
  tuples) and 1-based in text meant for people ("document 2", ``app.yaml#2``),
  counting every document of the stream, empty ones included, so the number
  matches the ``---`` a reader counts.
- YAML is read the way ``kubectl`` reads it: an unquoted ``2026-03-31`` stays
  the string the API server would store, not a ``datetime.date``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

import yaml

from controller.dockerfile import dockerfile_workload
from controller.errors import InputError
from controller.workloads import (
    Workload,
    extract,
    is_list_kind,
    pod_spec_path,
    pointer,
    string_map,
)

POLICY_KINDS = frozenset({"BaseImagePolicy", "ClusterBaseImagePolicy"})
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"

# Lists in Lists are not a Kubernetes thing; the cap keeps YAML aliases from
# making a walk exponential.
_MAX_LIST_DEPTH = 3

try:  # the C loader is several times faster on large rendered charts
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _KubeLoader(_BaseLoader):
    """Safe YAML, with timestamps left as strings (as the Kubernetes API keeps them)."""

    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **_BaseLoader.yaml_constructors,
        "tag:yaml.org,2002:timestamp": yaml.SafeLoader.construct_yaml_str,
    }


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


def is_manifest(name: str) -> bool:
    """A file read as Kubernetes documents: ``.yaml``, ``.yml``, ``.json``.

    ``baseguard-test.yaml`` (a policy test, :mod:`controller.cli.testing`) is not
    a manifest, so ``check`` can walk a folder that holds policy tests.
    """
    return name.lower().endswith(MANIFEST_SUFFIXES) and name != "baseguard-test.yaml"


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
    for path in _discover(paths, wanted=lambda n: is_dockerfile(n) or is_manifest(n)):
        name = os.path.basename(path)
        if path == STDIN:
            text = (stdin or sys.stdin).read()
            _load_manifest("<stdin>", text, loaded, default_namespace=default_namespace)
        elif is_dockerfile(name):
            loaded.workloads.append(
                dockerfile_workload(_read_text(path), source=path, build_args=build_args)
            )
        elif is_manifest(name):
            _load_manifest(path, _read_text(path), loaded, default_namespace=default_namespace)
        else:
            raise InputError(
                f"{path}: not a Kubernetes manifest (.yaml, .yml, .json) "
                "nor a Dockerfile (Dockerfile*, *.Dockerfile)"
            )
    return loaded


def load_policy_documents(paths: Sequence[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """Every policy document under ``paths`` (``-p``), as ``(file, document index, document)``.

    Directories are walked for ``.yaml``/``.yml``/``.json``, leaving out
    hidden entries and ``tests/`` folders (a policy library keeps its test
    resources there). Any document that is not a ``BaseImagePolicy`` or
    ``ClusterBaseImagePolicy`` (a ``List`` of them is fine) is an error:
    a workload handed to ``-p`` by mistake should not pass unnoticed.
    """
    out: list[tuple[str, int, dict[str, Any]]] = []
    for path in _discover(paths, wanted=is_manifest, skip_dirs=frozenset({"tests"})):
        if path == STDIN:
            raise InputError("policies cannot be read from stdin; name a file or a folder")
        for index, line, doc in _documents(path, _read_text(path)):
            where = _where(path, index, line)
            for item, kind, _ in _objects(doc, where):
                if kind not in POLICY_KINDS:
                    raise InputError(
                        f"{where}: a {kind} is not a policy "
                        f"(expected {' or '.join(sorted(POLICY_KINDS))})"
                    )
                out.append((path, index, dict(item)))
    return out


def _load_manifest(path: str, text: str, loaded: Loaded, *, default_namespace: str) -> None:
    for index, line, doc in _documents(path, text):
        where = _where(path, index, line)
        for item, kind, ptr in _objects(doc, where):
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


def _objects(doc: object, where: str) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """``(object, kind, JSON Pointer)`` for a document, or for each item of a List."""
    if not isinstance(doc, Mapping):
        raise InputError(
            f"{where}: expected a Kubernetes object (a mapping with apiVersion and kind), "
            f"found {_describe(doc)}"
        )
    for key in ("apiVersion", "kind"):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            what = "no" if value is None else f"a non-string ({_describe(value)})"
            raise InputError(f"{where}: {what} {key}; every Kubernetes object has one")
    yield from _walk(doc, str(doc["kind"]), where, "", 0)


def _walk(
    obj: Mapping[str, Any], kind: str, where: str, ptr: str, depth: int
) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    if not is_list_kind(kind):
        yield obj, kind, ptr
        return
    at = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in ptr.split("/")[1:])
    field_name = f"{at}.items".lstrip(".")  # items, items[2].items: how a reader names it
    items = obj.get("items")
    if items is None:
        return
    if not isinstance(items, list):
        raise InputError(
            f"{where}: {field_name} of a {kind} must be a list, found {_describe(items)}"
        )
    if depth >= _MAX_LIST_DEPTH:
        raise InputError(f"{where}: Lists nested more than {_MAX_LIST_DEPTH} deep")
    element = kind[: -len("List")]
    for number, item in enumerate(items):
        here = f"{field_name}[{number}]"
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: {here} is {_describe(item)}, not a Kubernetes object")
        own = item.get("kind")
        if isinstance(own, str) and own:
            item_kind = own
        elif element:  # PodList items come without a kind from the API server
            item_kind = element
        else:
            raise InputError(f"{where}: {here} has no kind")
        yield from _walk(item, item_kind, where, ptr + pointer("items", number), depth + 1)


def _documents(path: str, text: str) -> Iterator[tuple[int, int, object]]:
    """``(index, first line, data)`` per non-empty document; JSON files hold one."""
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                context={"source": path},
            ) from exc
        yield 0, 1, data
        return
    loader = _KubeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            data = None if node is None else loader.construct_document(node)
            if node is not None and data is not None:
                yield index, node.start_mark.line + 1, data
            index += 1
    except yaml.MarkedYAMLError as exc:
        raise InputError(_yaml_message(path, index, exc), context={"source": path}) from exc
    except yaml.YAMLError as exc:
        raise InputError(
            f"{path}: document {index + 1}: invalid YAML: {exc}", context={"source": path}
        ) from exc
    finally:
        loader.dispose()


def _yaml_message(path: str, index: int, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = " ".join(part for part in (exc.context, exc.problem) if part) or "cannot be parsed"
    return f"{path}: document {index + 1}: invalid YAML{where}: {what}"


def _where(path: str, index: int, line: int) -> str:
    return f"{path}: document {index + 1} (line {line})"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    return f"a {type(value).__name__}"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start})", context={"source": path}
        ) from exc
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read: {exc.strerror or exc}", context={"source": path}
        ) from exc


def _discover(
    paths: Sequence[str],
    *,
    wanted: Callable[[str], bool],
    skip_dirs: frozenset[str] = frozenset(),
) -> list[str]:
    """Files to read, in a stable order: explicit files as given, folders walked sorted."""
    out: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = path if path == STDIN else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for path in paths:
        if path == STDIN:
            add(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip_dirs)
                for name in sorted(files):
                    if not name.startswith(".") and wanted(name):
                        add(os.path.join(root, name))
        elif os.path.exists(path):
            add(path)
        else:
            raise InputError(f"{path}: no such file or directory", context={"source": path})
    return out
