"""The image references a Kubernetes manifest writes, located to the character.

PURE. The YAML is read with ``ruamel.yaml``'s round-trip loader because it
records where every scalar stands (line and column) in a multi-document
stream; :func:`controller.workloads.extract` then says which fields are images,
for every workload kind and every container list, exactly as ``check`` and the
webhook see them. The edit replaces the characters of that one scalar (inside
its quotes when it is quoted), so comments, quoting style, key order, flow
mappings and CRLF line endings stay byte for byte: the tree is never dumped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from controller.documents import documents
from controller.errors import InputError
from controller.fix.kustomize import is_kustomization, kustomize_sites
from controller.fix.sites import Found, Site, line_starts
from controller.workloads import extract

_PLAIN_END = re.compile(r"[\s,\]}]|$")


def load_documents(text: str, source: str) -> list[Any]:
    """Every YAML document of ``text`` as ruamel round-trip nodes; :class:`InputError` if not YAML.

    The text is first read by :func:`controller.documents.documents`, the one reader
    of users' YAML, for its bounds: an alias bomb (27 million pods from 5 KB of
    ``List`` aliases) or nesting 20,000 deep is refused there, with the message
    ``check`` gives, before the round-trip loader or the workload walk sees it.
    """
    for _ in documents(source, text):
        pass
    try:
        return list(YAML(typ="rt").load_all(text))
    except YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _parent(doc: Any, ptr: str) -> tuple[Any, str] | None:
    """The mapping that holds the field ``ptr`` names, and the field's key."""
    parts = [_unescape(p) for p in ptr.split("/")[1:]]
    node = doc
    for part in parts[:-1]:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, Sequence) and not isinstance(node, str) and part.isdigit():
            index = int(part)
            node = node[index] if index < len(node) else None
        else:
            return None
    return (node, parts[-1]) if isinstance(node, Mapping) and hasattr(node, "lc") else None


def scalar_span(
    text: str, starts: Sequence[int], line: int, col: int, value: str | None
) -> tuple[int, int] | None:
    """The span of the characters of ``value`` where the scalar at (``line``, ``col``) begins.

    Quoted: inside the quotes, when the quoted text is ``value`` itself (no escapes).
    Plain: up to white space or a flow indicator. ``None`` when the text there is
    not ``value`` (a block scalar, an escape sequence): such a field is not edited.
    ``value=None`` takes the plain scalar's text, whatever it is (a number as written).
    """
    if line >= len(starts):
        return None
    begin = starts[line] + col
    quote = text[begin : begin + 1]
    if quote in ("'", '"') and value is not None:
        start, end = begin + 1, begin + 1 + len(value)
        ok = text[start:end] == value and text[end : end + 1] == quote
    else:
        m = _PLAIN_END.search(text, begin)
        start, end = begin, (m.start() if m else len(text))
        ok = end > start and (value is None or text[start:end] == value)
    return (start, end) if ok else None


def manifest_sites(text: str, source: str, *, default_namespace: str = "default") -> Found:
    """Every image of every workload in every document, and a kustomization's ``images:``."""
    result = Found()
    starts = line_starts(text)
    kustomization = is_kustomization(os.path.basename(source))
    for index, doc in enumerate(load_documents(text, source)):
        if not isinstance(doc, Mapping):
            continue
        if kustomization or doc.get("kind") == "Kustomization":
            found = kustomize_sites(doc, text, starts, source)
            result.sites.extend(found.sites)
            result.notes.extend(found.notes)
            continue
        for workload in extract(doc, source=source, document=index, default_namespace=default_namespace):
            for image in workload.images:
                if not image.image:
                    continue
                held = _parent(doc, image.path)
                container = image.container or "?"
                title = f"{workload.kind}/{workload.name or '?'} {image.section} {container}"
                if held is None:
                    result.notes.append(f"{source}: {title}: image {image.image} not located; not edited")
                    continue
                parent, key = held
                line, col = parent.lc.value(key)
                span = scalar_span(text, starts, line, col, image.image)
                if span is None:
                    result.notes.append(
                        f"{source}:{line + 1}: {title}: image {image.image} is not a plain or simply "
                        "quoted scalar; not edited"
                    )
                    continue
                result.sites.append(
                    Site(
                        source,
                        line + 1,
                        image.image,
                        title,
                        workload.kind,
                        workload.namespace,
                        workload.name,
                        dict(workload.labels),
                        span=span,
                    )
                )
    return result
