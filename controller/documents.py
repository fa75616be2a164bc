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

Bounds, because the walkers downstream (workload extraction, the JSON Schema
validator, the policy compiler) visit data as a tree:

- **YAML aliases** share one node; a walker visits it once per reference. Ten
  levels of ten aliases are 10^10 visits from a 1 KB file, so the nodes that
  aliases add to a document are counted on the node graph (linear time, before
  anything is built) and capped at :data:`MAX_ALIAS_NODES`. A recursive alias
  (``&a [*a]``) has no finite expansion and is refused.
- **Nesting** deeper than :data:`MAX_DEPTH` is refused: Python walkers recurse,
  and ``RecursionError`` is not a message. Kubernetes objects, CRD schemas
  included, stay well under it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import yaml

from controller.errors import InputError
from controller.workloads import is_list_kind, pointer

#: The kinds read as policy documents (``-p``): the two policies, and the exceptions to them.
POLICY_KINDS = frozenset({"BaseImagePolicy", "ClusterBaseImagePolicy", "BaseImagePolicyException"})
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"

# Lists in Lists are not a Kubernetes thing; the cap keeps YAML aliases from
# making a walk exponential.
_MAX_LIST_DEPTH = 3

#: Nodes that YAML aliases may add to one document, over the nodes written in it.
MAX_ALIAS_NODES = 100_000
#: Nesting of mappings and lists in one document.
MAX_DEPTH = 100

try:  # the C loader is several times faster on large rendered charts, and composes without recursion
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class KubeLoader(_BaseLoader):
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
    for index, line, data, _ in documents_with_nodes(path, text):
        yield index, line, data


def documents_with_nodes(path: str, text: str) -> Iterator[tuple[int, int, object, yaml.Node | None]]:
    """As :func:`documents`, with each document's node graph for :func:`line_of` (JSON too,
    when YAML reads it the same way; else ``None``)."""
    if path.lower().endswith(".json"):
        yield 0, 1, json_data(text, source=path), json_lines(text)
        return
    yield from yaml_nodes(text, source=path)


def yaml_documents(text: str, *, source: str) -> Iterator[tuple[int, int, object]]:
    """``(index, first line, data)`` per non-empty document of a YAML stream.

    ``index`` counts every document, empty ones included (0-based), so "document
    N" in a message matches the ``---`` a reader counts.
    """
    for index, line, data, _ in yaml_nodes(text, source=source):
        yield index, line, data


def yaml_nodes(text: str, *, source: str) -> Iterator[tuple[int, int, object, yaml.Node]]:
    """As :func:`yaml_documents`, with each document's node graph (for :func:`line_of`)."""
    loader = KubeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_node_graph(node, f"{source}: document {index + 1}")
                data = loader.construct_document(node)
                if data is not None:
                    yield index, node.start_mark.line + 1, data, node
            index += 1
    except yaml.MarkedYAMLError as exc:
        if _refused_for_depth(exc):
            raise InputError(_too_deep(f"{source}: document {index + 1}"), context={"source": source}) from exc
        raise InputError(_yaml_message(source, index, exc), context={"source": source}) from exc
    except yaml.YAMLError as exc:
        raise InputError(
            f"{source}: document {index + 1}: invalid YAML: {exc}", context={"source": source}
        ) from exc
    except RecursionError as exc:  # pragma: no cover - the pure-Python loader composes recursively
        raise InputError(_too_deep(f"{source}: document {index + 1}"), context={"source": source}) from exc
    finally:
        loader.dispose()


def json_lines(text: str) -> yaml.Node | None:
    """The node graph of a JSON text, for line numbers only (JSON is YAML's flow style);
    ``None`` when YAML 1.1 reads it differently and lines cannot be given."""
    try:
        return yaml.compose(text, Loader=KubeLoader)
    except yaml.YAMLError:
        return None


def line_of(node: yaml.Node, pointer: str) -> int | None:
    """The 1-based line of the value at a JSON Pointer (``/spec/containers/0/image``)."""
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, yaml.MappingNode):
            found = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None
            )
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            found = node.value[int(part)]
        else:
            found = None
        if found is None:
            return None
        node = found
    return int(node.start_mark.line) + 1


def yaml_data(text: str, *, source: str) -> object:
    """The one document of a YAML file (``None`` when it has none); a second one is an error."""
    documents = list(yaml_documents(text, source=source))
    if len(documents) > 1:
        raise InputError(f"{source}: expected one YAML document, found {len(documents)}")
    return documents[0][2] if documents else None


def json_data(text: str, *, source: str) -> object:
    """The value of a JSON file, nested at most :data:`MAX_DEPTH` deep."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            context={"source": source},
        ) from exc
    except RecursionError as exc:
        raise InputError(_too_deep(source), context={"source": source}) from exc
    if nesting_depth(data) > MAX_DEPTH:
        raise InputError(_too_deep(source), context={"source": source})
    return data


def _too_deep(where: str) -> str:
    return f"{where}: nested more than {MAX_DEPTH} levels deep (lists and mappings); refused"


def nesting_depth(data: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of JSON data, without recursion (stops counting past ``limit``).

    Public for the registry's reader of JSON (:mod:`controller.registry.jsonread`),
    which bounds what registries send the way this module bounds files.
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, level + 1) for child in children)
    return deepest


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_node_graph(root: yaml.Node, where: str) -> None:
    """Refuse a document whose expansion is recursive, too deep, or mostly aliases.

    One post-order pass over the distinct nodes: each node's expanded size and
    height are computed once from its children's, so a bomb is measured in
    time linear in the file, never expanded.
    """
    cap = MAX_ALIAS_NODES * 2 + 1  # sizes are clipped here: the exact number past it is moot
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = min(cap, 1 + sum(size[id(k)] for k in kids))
            # Lists and mappings are levels, the scalars at the bottom are not (as in JSON's count).
            below = max((height[id(k)] for k in kids), default=0)
            height[key] = 0 if isinstance(node, yaml.ScalarNode) else 1 + below
            on_path.discard(key)
            if height[key] > MAX_DEPTH:
                raise InputError(_too_deep(where))
            continue
        if key in size:
            continue
        if key in on_path:
            raise InputError(
                f"{where}: a YAML alias refers to a node that contains it "
                f"(line {node.start_mark.line + 1}); its expansion has no end"
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    added = size[id(root)] - len(size)
    if added > MAX_ALIAS_NODES:
        raise InputError(
            f"{where}: YAML aliases expand it by more than {MAX_ALIAS_NODES:,} nodes "
            f"(written: {len(size):,}); refused as an alias bomb -- write the content out"
        )


def _refused_for_depth(exc: yaml.MarkedYAMLError) -> bool:
    """Whether libyaml itself refused the document for its nesting.

    libyaml 0.2.5 and later stop at their own nesting limit (1,000 levels by default,
    "exceeded maximum nesting depth"); older builds and the pure-Python loader have none.
    Our bound, :data:`MAX_DEPTH`, is far below any such limit, so a document libyaml
    refuses for depth is one we refuse too, and it gets our message whichever libyaml
    is installed.
    """
    return "maximum nesting depth" in (exc.problem or "")


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
