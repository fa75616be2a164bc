"""The image references a Dockerfile writes: each external ``FROM``, or the ``ARG`` default it expands.

PURE. :func:`controller.dockerfile.parse_build` decides what each ``FROM`` *is*
(an earlier stage, ``scratch``, an image, a variable); this module finds where
its text *stands*, so an edit touches the image word and nothing else: not the
keyword's casing, not ``--platform=…``, not ``AS name``, not a comment, a
parser directive or a line ending.

What is edited, the way a person would fix the file by hand:
- ``FROM python:3.12-slim`` — the image word;
- ``FROM ${BASE}`` (or ``$BASE``) with ``ARG BASE=python:3.12-slim`` before the
  first ``FROM`` — the ARG's default, once, however many ``FROM`` lines use it;
- ``COPY --from=<image>`` (an image, not a stage) — the image after ``--from=``;
- a ``FROM`` that mixes text and variables (``python:${PY}-slim``), or whose
  variable has no literal default, is reported and left alone: no single piece
  of text is its reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from controller.dockerfile import CopyFrom, parse_build
from controller.fix.sites import Found, Site

_DIRECTIVE_ESCAPE = re.compile(r"^\s*#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^\s*#\s*[A-Za-z][A-Za-z0-9_-]*\s*=")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_WORD = re.compile(r"\S+")
_WHOLE_VARIABLE = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_LINE = re.compile(r"[^\r\n]*(\r\n|\n|\r|$)")


@dataclass(frozen=True)
class Word:
    """A word of an instruction: its text and where it stands in the file."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-cased keyword, 1-based first line, its words (keyword first)."""

    keyword: str
    line: int
    words: tuple[Word, ...]


def _lines(text: str) -> Iterator[tuple[int, str, str]]:
    """``(offset, content, line ending)`` of each physical line."""
    pos = 0
    while pos < len(text):
        m = _LINE.match(text, pos)
        assert m is not None
        content = m.group(0)[: len(m.group(0)) - len(m.group(1))]
        yield pos, content, m.group(1)
        if m.end() == pos:
            break
        pos = m.end()


def escape_char(text: str) -> str:
    """The escape character: ``\\``, or what a ``# escape=`` parser directive sets."""
    for _, content, _ in _lines(text):
        if not _DIRECTIVE.match(content):
            break
        m = _DIRECTIVE_ESCAPE.match(content)
        if m:
            return m.group(1)
    return "\\"


def instructions(text: str) -> list[Instruction]:
    """Every instruction of ``text`` with the position of each word.

    Comment lines (parser directives among them) are not instructions, and inside
    a continuation they are dropped, as BuildKit drops them. A word ends at a line
    end: a continuation splitting one word in two is not joined (such a ``FROM``
    then does not match what :func:`parse_build` read, and is left alone). Here-doc
    bodies of ``RUN``/``COPY``/``ADD`` are skipped, so ``FROM`` inside a script is
    not an instruction.
    """
    escape = escape_char(text)
    out: list[Instruction] = []
    words: list[Word] = []
    first_line = 0
    heredoc: list[tuple[bool, str]] = []
    continuing = False
    for number, (offset, content, _) in enumerate(_lines(text), 1):
        if heredoc:
            strip, end = heredoc[0]
            if (content.lstrip("\t") if strip else content) == end:
                heredoc.pop(0)
            continue
        stripped = content.strip()
        if stripped.startswith("#") or (not stripped and continuing):
            continue
        if not stripped:
            continue
        body = content.rstrip()
        more = body.endswith(escape)
        if more:
            body = body[: -len(escape)]
        if not continuing:
            words = []
            first_line = number
        words.extend(Word(m.group(0), offset + m.start(), offset + m.end()) for m in _WORD.finditer(body))
        continuing = more
        if not more and words:
            keyword = words[0].text.upper()
            out.append(Instruction(keyword, first_line, tuple(words)))
            if keyword in ("RUN", "COPY", "ADD"):
                joined = " ".join(w.text for w in words)
                heredoc = [(m.group(1) == "-", m.group(3)) for m in _HEREDOC.finditer(joined)]
    if continuing and words:
        out.append(Instruction(words[0].text.upper(), first_line, tuple(words)))
    return out


def _from_image(ins: Instruction) -> Word | None:
    """The image word of a ``FROM``: the first word after the flags."""
    return next((w for w in ins.words[1:] if not w.text.startswith("--")), None)


def _meta_args(found: list[Instruction]) -> dict[str, tuple[Word, str, int] | None]:
    """ARGs before the first ``FROM``: name → (default's text span, default, line), or ``None``
    when declared without a literal default. A later declaration wins, as in BuildKit."""
    out: dict[str, tuple[Word, str, int] | None] = {}
    for ins in found:
        if ins.keyword == "FROM":
            break
        if ins.keyword != "ARG":
            continue
        for word in ins.words[1:]:
            name, eq, value = word.text.partition("=")
            if not eq:
                out.setdefault(name, None)
                continue
            start = word.start + len(name) + 1
            end = word.end
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value, start, end = value[1:-1], start + 1, end - 1
            out[name] = (Word(value, start, end), value, ins.line) if value and "$" not in value else None
    return out


def dockerfile_sites(text: str, source: str, *, namespace: str | None = None) -> Found:
    """The sites of a Dockerfile (see the module docstring); :class:`InputError` when
    ``docker build`` itself would refuse the file."""
    build = parse_build(text)
    found = instructions(text)
    froms = [ins for ins in found if ins.keyword == "FROM"]
    meta = _meta_args(found)
    result = Found()
    if len(froms) != len(build.froms):  # a FROM this scanner split otherwise: edit nothing blind
        result.notes.append(f"{source}: FROM lines could not be located exactly; not edited")
        return result
    seen: set[tuple[int, int]] = set()
    for ins, parsed in zip(froms, build.froms, strict=True):
        if not parsed.is_external:
            continue
        word = _from_image(ins)
        if word is None:
            continue
        where = f"FROM (line {ins.line})"
        if "$" not in word.text:
            if word.text != parsed.image:
                result.notes.append(f"{source}:{ins.line}: FROM {word.text}: not located exactly; not edited")
                continue
            result.sites.append(
                Site(source, ins.line, word.text, where, "Dockerfile", namespace, span=(word.start, word.end))
            )
            continue
        m = _WHOLE_VARIABLE.match(word.text)
        arg = meta.get(m.group(1) or m.group(2)) if m else None
        if m is None or arg is None:
            result.notes.append(
                f"{source}:{ins.line}: FROM {word.text} is built from variables with no literal "
                "ARG default to edit; not edited"
            )
            continue
        value, text_value, line = arg
        key = (value.start, value.end)
        if key in seen:
            continue
        seen.add(key)
        name = m.group(1) or m.group(2)
        result.sites.append(
            Site(
                source,
                line,
                text_value,
                f"ARG {name} (line {line}, the FROM of line {ins.line})",
                "Dockerfile",
                namespace,
                span=key,
            )
        )
    _copy_sites(build.copies, found, source, namespace, result)
    return result


def _copy_sites(copies: list[CopyFrom], found: list[Instruction], source: str, namespace: str | None, result: Found) -> None:
    """``COPY --from=<image>``: the image a build pulls besides its bases (``check`` judges it
    too, so a pin that skipped it would leave ``check`` failing). A stage name is not one."""
    by_line = {ins.line: ins for ins in found if ins.keyword == "COPY"}
    for copy in copies:
        ins = by_line.get(copy.line)
        word = next((w for w in ins.words[1:] if w.text.lower().startswith("--from=")), None) if ins else None
        if word is None or "$" in word.text:
            result.notes.append(
                f"{source}:{copy.line}: COPY --from={copy.image} is not a literal image; not edited"
            )
            continue
        start = word.start + len("--from=")
        if word.text[len("--from=") :] != copy.image:
            result.notes.append(f"{source}:{copy.line}: COPY --from={copy.image}: not located exactly; not edited")
            continue
        result.sites.append(
            Site(source, copy.line, copy.image, f"COPY --from (line {copy.line})", "Dockerfile", namespace, span=(start, word.end))
        )
