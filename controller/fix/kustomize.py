"""A kustomization's ``images:`` entries: the references kustomize writes into what it renders.

PURE. An entry names an image (``name``) and what replaces it: ``newName``,
``newTag``, ``digest``. The reference it composes is what ``fix`` judges; an
edit changes ``newTag``/``digest``/``newName`` in place, or adds the missing
field on a new line under the entry (block style only: a flow entry
``- {name: x}`` is reported and left alone). Kustomize writes ``name@digest``
when a digest is set, so pinning an entry is adding its ``digest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap

from controller.fix.sites import Found, KustomizeFields, Site, spell

KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})


def is_kustomization(name: str) -> bool:
    """The file names ``kustomize build`` reads."""
    return name in KUSTOMIZATION_NAMES


def _field(entry: Any, key: str, text: str, starts: Sequence[int]) -> tuple[str, int, int] | None:
    from controller.fix.manifests import scalar_span  # one scalar rule for both finders

    value = entry.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # ``newTag: 7.2`` is a float to YAML and the tag "7.2" to kustomize, which reads
        # the text: so do we (``7.20`` stays "7.20", never the float's "7.2").
        line, col = entry.lc.value(key)
        span = scalar_span(text, starts, line, col, None)
        return (text[span[0] : span[1]], *span) if span is not None else None
    if not isinstance(value, str) or not value:
        return None
    line, col = entry.lc.value(key)
    span = scalar_span(text, starts, line, col, value)
    return (value, *span) if span is not None else None


def kustomize_sites(doc: Mapping[str, Any], text: str, starts: Sequence[int], source: str) -> Found:
    """One site per ``images:`` entry that names a tag or a digest."""
    result = Found()
    images = doc.get("images")
    if not isinstance(images, list):
        return result
    for entry in images:
        if not isinstance(entry, CommentedMap):  # what the round-trip loader makes of a mapping
            continue
        name = _field(entry, "name", text, starts)
        if name is None:
            continue
        line = entry.lc.value("name")[0] + 1
        fields = [_field(entry, k, text, starts) for k in ("newName", "newTag", "digest")]
        new_name, new_tag, digest = fields
        for key, got in zip(("newName", "newTag", "digest"), fields, strict=True):
            if got is None and isinstance(entry.get(key), str | int | float) and entry.get(key) != "":
                result.notes.append(f"{source}:{line}: images[{name[0]}].{key} is not a plain string; not edited")
                break
        else:
            if new_tag is None and digest is None:
                result.notes.append(
                    f"{source}:{line}: images[{name[0]}] sets neither newTag nor digest: the tag is the "
                    "one the resources write; not edited"
                )
                continue
            insert_at, indent, eol, lead = None, "", "\n", ""
            if not entry.fa.flow_style():
                last_line = max(entry.lc.value(k)[0] for k in entry)
                end = starts[last_line + 1] if last_line + 1 < len(starts) else len(text)
                eol = "\r\n" if "\r\n" in text else "\n"
                insert_at = end
                lead = "" if text[:end].endswith("\n") else eol  # the file's last line, unended
                indent = " " * entry.lc.key("name")[1]
            image = spell((new_name or name)[0], new_tag[0] if new_tag else None, digest[0] if digest else None)
            result.sites.append(
                Site(
                    source,
                    line,
                    image,
                    f"images[{name[0]}]",
                    "Kustomization",
                    kustomize=KustomizeFields(name, new_name, new_tag, digest, insert_at, indent, eol, lead),
                )
            )
    return result
