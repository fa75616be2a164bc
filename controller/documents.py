"""Files on disk → Kubernetes documents: the one reader of YAML and JSON from users.

Every command that reads files goes through here: ``check``'s manifests
(:mod:`controller.cli.loaders`), policy files (:mod:`controller.policyfiles`,
shared by ``check``, ``test``, ``serve`` and ``audit``). One reader means one
place where a hostile file is bounded and one way problems are named: every
problem is an :class:`InputError` naming the file, the document and what is
wrong.

Conventions:
- Document indexes are 0-based in data and 1-based in text meant for people
  ("document 2", ``app.yaml#2``), counting every document of the stream, empty
  ones included, so the number matches the ``---`` a reader counts.
- YAML is read the way ``kubectl`` reads it: an unquoted ``2026-03-31`` stays
  the string the API server would store, not a ``datetime.date``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import yaml

from controller.errors import InputError
from controller.workloads import is_list_kind, pointer

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


def is_manifest(name: str) -> bool:
    """A file read as Kubernetes documents: ``.yaml``, ``.yml``, ``.json``.

    ``baseguard-test.yaml`` (a policy test, :mod:`controller.cli.testing`) is not
    a manifest, so ``check`` can walk a folder that holds policy tests.
    """
    return name.lower().endswith(MANIFEST_SUFFIXES) and name != "baseguard-test.yaml"


def objects(doc: object, where: str) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """``(object, kind, JSON Pointer)`` for a document, or for each item of a List."""
    if not isinstance(doc, Mapping):
        raise InputError(
            f"{where}: expected a Kubernetes object (a mapping with apiVersion and kind), "
            f"found {describe(doc)}"
        )
    for key in ("apiVersion", "kind"):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            what = "no" if value is None else f"a non-string ({describe(value)})"
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
            f"{where}: {field_name} of a {kind} must be a list, found {describe(items)}"
        )
    if depth >= _MAX_LIST_DEPTH:
        raise InputError(f"{where}: Lists nested more than {_MAX_LIST_DEPTH} deep")
    element = kind[: -len("List")]
    for number, item in enumerate(items):
        here = f"{field_name}[{number}]"
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: {here} is {describe(item)}, not a Kubernetes object")
        own = item.get("kind")
        if isinstance(own, str) and own:
            item_kind = own
        elif element:  # PodList items come without a kind from the API server
            item_kind = element
        else:
            raise InputError(f"{where}: {here} has no kind")
        yield from _walk(item, item_kind, where, ptr + pointer("items", number), depth + 1)


def documents(path: str, text: str) -> Iterator[tuple[int, int, object]]:
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


def where(path: str, index: int, line: int) -> str:
    return f"{path}: document {index + 1} (line {line})"


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    return f"a {type(value).__name__}"


def read_text(path: str) -> str:
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


def discover(
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
