"""Where a file writes an image reference, and text edits that replace exactly that.

PURE. Every finder (Dockerfile, manifest, kustomization) returns :class:`Site`
values; the planner decides what each becomes and returns :class:`Edit` values;
:func:`apply_edits` splices them into the original text. Working on spans of the
original text, never re-serialising a parsed tree, is what keeps comments,
quoting, key order and CRLF line endings byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` with ``new`` (``start == end`` inserts)."""

    start: int
    end: int
    new: str


@dataclass(frozen=True)
class KustomizeFields:
    """The fields of one kustomize ``images:`` entry, each as ``(value, start, end)`` or ``None``.

    ``insert_at`` is where a missing field goes (the end of the entry's last line),
    ``indent`` the text that starts such a line and ``eol`` its line ending; ``None``
    when the entry is in flow style (``- {name: x}``), where no line can be added.
    """

    name: tuple[str, int, int]
    new_name: tuple[str, int, int] | None = None
    new_tag: tuple[str, int, int] | None = None
    digest: tuple[str, int, int] | None = None
    insert_at: int | None = None
    indent: str = ""
    eol: str = "\n"
    lead: str = ""  # a line ending to write first, when the entry ends the file unended


@dataclass(frozen=True)
class Site:
    """One image reference a file writes.

    ``image`` is the reference as written (for a kustomize entry, the one the entry
    composes: ``newName or name``, ``:newTag``, ``@digest``). ``span`` is where that
    text is, for a plain reference; ``kustomize`` holds the entry's fields instead.
    ``namespace``, ``kind`` and ``labels`` say which policies cover the site, as
    ``check`` decides it for the object it belongs to.
    """

    source: str
    line: int
    image: str
    where: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    span: tuple[int, int] | None = None
    kustomize: KustomizeFields | None = None


@dataclass(frozen=True)
class Found:
    """What a finder read from one file: the sites, and what it saw but will not edit (why)."""

    sites: list[Site] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with every edit applied; edits of one span are applied once, overlaps refused.

    Two images can share one span (two ``FROM ${BASE}`` lines, one ``ARG``): the
    planner then emits the same edit twice, and it is applied once.
    """
    unique = sorted(set(edits), key=lambda e: (e.start, e.end))
    out: list[str] = []
    cursor = 0
    for edit in unique:
        if edit.start < cursor:
            raise ValueError(f"overlapping edits at offset {edit.start}")
        out.append(text[cursor : edit.start])
        out.append(edit.new)
        cursor = edit.end
    out.append(text[cursor:])
    return "".join(out)


def line_starts(text: str) -> list[int]:
    """The offset of each line's first character (lines end at ``\\n``; ``\\r\\n`` included)."""
    starts = [0]
    starts.extend(i + 1 for i, c in enumerate(text) if c == "\n")
    return starts


def line_of(starts: Sequence[int], offset: int) -> int:
    """The 1-based line holding ``offset``."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


def split_reference(written: str) -> tuple[str, str | None, str | None]:
    """``(name as written, tag, digest)`` of a reference string, without normalising it.

    ``localhost:5000/app:1`` is ``("localhost:5000/app", "1", None)``: the tag is
    after the last ``:`` that follows the last ``/``.
    """
    remainder, _, digest = written.partition("@")
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        return remainder[:colon], remainder[colon + 1 :], digest or None
    return remainder, None, digest or None


def spell(name: str, tag: str | None, digest: str | None) -> str:
    """A reference from its parts, as a person writes it: ``name[:tag][@digest]``."""
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
