"""The base images of a Dockerfile: every ``FROM``, resolved the way BuildKit resolves it.

PURE: the text comes in as a string. ``dockerfile_parse`` splits it into
instructions (comments, line continuations, the ``# escape=`` directive);
everything after that is done here, because the library's own ARG
substitution knows neither ``${VAR:-default}`` nor "unset" (it expands an
unknown variable to nothing, which would turn ``FROM ${BASE}`` into a blank
image instead of something we can report).

What BuildKit does, and so what we do:
- Only ARGs declared before the first ``FROM`` (the "meta args") are visible to
  ``FROM`` lines; ARGs inside a stage are not. A build arg overrides the
  default of a declared meta arg; an undeclared one is invisible, except the
  automatic platform args (``TARGETARCH`` …), which exist without a declaration
  and have the values BuildKit gives them for the platform being built
  (:func:`platform_args`; :func:`dockerfile_workload` reads the file once per
  platform the policies judge).
- ``FROM <name>`` where ``<name>`` is an earlier stage's alias (compared
  lower-cased, as Docker lower-cases stage names) continues that stage: it is
  not an image. ``scratch`` is the empty image. ``--platform=…`` and any other
  flag are ignored.
- The final stage (or ``target``) and the stages it descends from through
  ``FROM <alias>`` make the image: their external ``FROM``s are its bases
  (:attr:`ImageRole.BASE`). Every other external ``FROM`` only feeds a
  ``COPY --from`` (:attr:`ImageRole.BUILD`).
- ``COPY --from=<image>`` naming neither a stage (by name or index) nor
  ``scratch`` pulls that image as a build input: it is reported too
  (:attr:`ImageRole.BUILD`), so a pinning or registry rule sees it. Its
  variables are the stage's ARGs (declared in the stage, or redeclared meta
  args), as BuildKit expands them.
- A variable that is unset after all that leaves the ``FROM`` unresolved: the
  image is the literal text as written (``python:${PY}``). ``docker build``
  refuses such a file, and so does :func:`dockerfile_workload` (an
  :class:`InputError` naming the variable and ``--build-arg``): a base nobody
  can name is not judged, nor reported as a malformed reference.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dockerfile_parse import DockerfileParser

from controller.errors import InputError
from controller.platforms import Platform
from controller.roles import ImageRole
from controller.workloads import ContainerImage, Workload

SCRATCH = "scratch"

# BuildKit defines these in the global scope without an ARG; their values depend on
# the platform being built (:func:`platform_args`). A build arg of the same name wins.
AUTOMATIC_ARGS = frozenset(
    {
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
    }
)

#: The platform judged when no policy names one (``lineage.platforms``), as ``docker build``
#: on the usual CI runner builds it.
DEFAULT_PLATFORM = "linux/amd64"


def platform_args(platform: str) -> dict[str, str]:
    """The automatic platform ARGs BuildKit sets when building ``platform`` natively.

    ``TARGETPLATFORM`` is the normalized ``os/arch[/variant]`` (``linux/arm`` is
    ``linux/arm/v7``, ``linux/arm64/v8`` is ``linux/arm64``), ``TARGETVARIANT`` is empty
    without a variant. A static check knows no build host, so the ``BUILD*`` args are
    those of a native build on the same platform (pass ``--build-arg BUILDPLATFORM=…``
    for a cross build). Raises :class:`InputError` for text that is not a platform.
    """
    try:
        p = Platform.parse(platform).normalized
    except ValueError as exc:
        raise InputError(str(exc)) from None
    values = {"PLATFORM": str(p), "OS": p.os, "ARCH": p.architecture, "VARIANT": p.variant or ""}
    return {f"{side}{name}": value for side in ("TARGET", "BUILD") for name, value in values.items()}


_ESCAPE_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^\s*#\s*[a-zA-Z][a-zA-Z0-9_-]*\s*=")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})


@dataclass(frozen=True)
class FromLine:
    """One ``FROM`` instruction, resolved.

    ``image`` is the text after substitution, not normalized (``python:3.12``);
    for a stage reference it is the alias as written. ``line`` is 1-based.
    ``stage_ref`` is the index of the earlier stage this ``FROM`` continues, or
    ``None`` for an external image or ``scratch``. ``unresolved`` names the
    variables that could not be substituted; then ``image`` is the raw text.
    """

    stage_index: int
    stage_name: str | None
    image: str
    line: int
    role: ImageRole
    is_scratch: bool = False
    stage_ref: int | None = None
    unresolved: tuple[str, ...] = ()

    @property
    def is_external(self) -> bool:
        """An image pulled from a registry: not ``scratch``, not an earlier stage."""
        return not self.is_scratch and self.stage_ref is None


@dataclass(frozen=True)
class CopyFrom:
    """A ``COPY --from=<image>`` that names an image, not a stage: a build input.

    ``stage_index``/``stage_name`` are the stage the ``COPY`` is in; ``unresolved``
    names the variables that could not be substituted (then ``image`` is the raw text).
    """

    stage_index: int
    stage_name: str | None
    image: str
    line: int
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class Build:
    """What a Dockerfile pulls: its ``FROM`` lines and its ``COPY --from`` images."""

    froms: list[FromLine]
    copies: list[CopyFrom]


@dataclass(frozen=True)
class _Instruction:
    keyword: str  # upper case
    value: str  # continuation lines joined
    line: int  # 1-based first line


def parse_dockerfile(
    text: str,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> list[FromLine]:
    """Every ``FROM`` of ``text``, in order, with its role (see the module docstring).

    ``target`` picks the final stage by name, as ``docker build --target``
    does; by default it is the last stage. Raises :class:`InputError` (with a
    line number, no file name: the caller knows it) for what ``docker build``
    itself refuses: no ``FROM`` at all, a ``FROM`` without an image or with
    extra words, two stages with one name, an unknown ``target``.
    """
    return parse_build(text, build_args=build_args, target=target).froms


def parse_build(
    text: str,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> Build:
    """:func:`parse_dockerfile`'s ``FROM`` lines, and the images ``COPY --from`` pulls."""
    escape = _escape_char(text)
    args = dict(build_args or {})
    meta: dict[str, str | None] = {name: args[name] for name in AUTOMATIC_ARGS if name in args}
    tainted: set[str] = set()  # meta args whose default used an unset variable
    stages: list[tuple[str | None, int | None, _Instruction, str, tuple[str, ...], bool]] = []
    aliases: dict[str, int] = {}
    stage_env: dict[str, str | None] = {}  # the current stage's ARGs
    copies: list[tuple[int, str, int, dict[str, str | None]]] = []  # stage, raw, line, env

    for ins in _instructions(text):
        if ins.keyword == "ARG" and stages:
            for name, default in _arg_pairs(ins.value, escape):
                if name in args:
                    stage_env[name] = args[name]
                elif default is not None:
                    stage_env[name] = _expand(default, stage_env, set(), escape)[0]
                else:  # a redeclared meta arg keeps its value; another is unset
                    stage_env[name] = meta.get(name)
        elif ins.keyword == "COPY" and stages:
            source = _copy_from(ins.value)
            if source is not None:
                copies.append((len(stages) - 1, source, ins.line, dict(stage_env)))
        elif ins.keyword == "ARG" and not stages:
            for name, default in _arg_pairs(ins.value, escape):
                if name in args:
                    meta[name] = args[name]
                    tainted.discard(name)
                    continue
                if default is None:
                    meta.setdefault(name, None)
                    continue
                value, missing = _expand(default, meta, tainted, escape)
                meta[name] = value
                if missing:
                    tainted.add(name)
                else:
                    tainted.discard(name)
        elif ins.keyword == "FROM":
            raw, alias = _from_words(ins)
            value, missing = _expand(raw, meta, tainted, escape)
            image = raw if missing else value
            if not image:
                raise InputError(f"line {ins.line}: FROM names no image (it expands to nothing)")
            ref = None if missing else aliases.get(image.lower())
            scratch = not missing and image == SCRATCH
            index = len(stages)
            if alias is not None:
                key = alias.lower()
                if key in aliases:
                    raise InputError(
                        f"line {ins.line}: duplicate stage name {alias!r} "
                        f"(stage {aliases[key]} already has it)"
                    )
                aliases[key] = index
            stages.append((alias, ref, ins, image, missing, scratch))
            stage_env = {}

    if not stages:
        raise InputError("no FROM instruction: not a Dockerfile, or an empty one")
    final = len(stages) - 1
    if target is not None:
        if target.lower() not in aliases:
            raise InputError(f"target stage {target!r} is not defined")
        final = aliases[target.lower()]

    ancestry: set[int] = set()
    cursor: int | None = final
    while cursor is not None and cursor not in ancestry:
        ancestry.add(cursor)
        cursor = stages[cursor][1]

    froms = [
        FromLine(
            stage_index=index,
            stage_name=alias,
            image=image,
            line=ins.line,
            role=ImageRole.BASE if index in ancestry else ImageRole.BUILD,
            is_scratch=scratch,
            stage_ref=ref,
            unresolved=missing,
        )
        for index, (alias, ref, ins, image, missing, scratch) in enumerate(stages)
    ]
    pulled = []
    for stage, raw, line, env in copies:
        value, missing = _expand(raw, env, set(), escape)
        image = raw if missing else value
        if not missing and (
            image.lower() in aliases or image.isdigit() or image == SCRATCH or not image
        ):
            continue  # a stage (by name or index), or nothing to pull
        pulled.append(CopyFrom(stage, stages[stage][0], image, line, missing))
    return Build(froms, pulled)


def _copy_from(value: str) -> str | None:
    """The ``--from=`` of a ``COPY`` (quotes removed by the expansion), else ``None``."""
    for word in value.split():
        if not word.startswith("--"):
            return None  # flags come first; the rest are sources and the destination
        name, sep, given = word[2:].partition("=")
        if name.lower() == "from" and sep:
            return given
    return None


def dockerfile_workload(
    text: str,
    *,
    source: str,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platforms: Sequence[str] = (DEFAULT_PLATFORM,),
) -> Workload:
    """A Dockerfile as a :class:`Workload`: one image per external ``FROM`` and ``COPY --from``.

    ``container`` is the stage name (or ``None``; ``(COPY --from)`` is added for a
    ``COPY --from`` image), ``path`` is ``line:N``,
    ``section`` is ``"FROM"`` or ``"COPY --from"`` and ``role`` says whether the
    image is a base of the final image or a build input. ``scratch`` and stage
    references are not images and are left out. Errors name ``source``.

    The file is read once per platform in ``platforms`` (those the policies judge),
    with BuildKit's automatic platform ARGs set for it (:func:`platform_args`); an
    image all of them name is listed once, one that only some name carries them in
    its ``container`` (``build (linux/arm64)``).
    """
    wanted = list(dict.fromkeys(platforms)) or [DEFAULT_PLATFORM]
    found: dict[tuple[int, str, str, ImageRole, str | None], list[str]] = {}
    for platform in wanted:
        try:
            args = {**platform_args(platform), **(build_args or {})}
            build = parse_build(text, build_args=args, target=target)
        except InputError as exc:
            raise InputError(f"{source}: {exc.message}", context={"source": source}) from exc
        entries = [
            (f.line, f.image, f.unresolved, "FROM", f.role, f.stage_name)
            for f in build.froms
            if f.is_external
        ] + [(c.line, c.image, c.unresolved, "COPY --from", ImageRole.BUILD, c.stage_name) for c in build.copies]
        for line, image, unresolved, section, role, stage in entries:
            if unresolved:
                raise _unresolved(source, line, section, image, unresolved)
            found.setdefault((line, image, section, role, stage), []).append(platform)
    images = tuple(
        ContainerImage(
            container=_label(stage, on, wanted, copy=section != "FROM"),
            image=image,
            path=f"line:{line}",
            section=section,
            role=role,
        )
        for (line, image, section, role, stage), on in sorted(found.items(), key=lambda kv: kv[0][0])
    )
    return Workload(kind="Dockerfile", name=source, namespace=None, images=images, source=source)


def _label(stage: str | None, on: Sequence[str], wanted: Sequence[str], *, copy: bool) -> str | None:
    """The stage name, plus what tells the image apart: ``COPY --from``, the platforms."""
    notes = (["COPY --from"] if copy else []) + ([", ".join(on)] if len(on) < len(wanted) else [])
    if not notes:
        return stage
    said = " ".join(f"({n})" for n in notes)
    return f"{stage} {said}" if stage else said


def _unresolved(
    source: str, line: int, section: str, image: str, names: Sequence[str]
) -> InputError:
    listed = ", ".join(names)
    hint = " ".join(f"--build-arg {n}=VALUE" for n in names if n.isidentifier())
    if section == "FROM":
        what, scope = f"the base of FROM {image}", "an ARG without a default, or not declared before the first FROM"
    else:
        what, scope = f"the image of COPY --from={image}", "an ARG without a default, or not declared in this stage"
    return InputError(
        f"{source}: line {line}: {what} is unresolved: {listed} has no value ({scope})"
        + (f"; pass {hint}, as to docker build" if hint else ""),
        context={"source": source},
    )


def _escape_char(text: str) -> str:
    """The ``# escape=`` parser directive (backtick in Windows Dockerfiles), else backslash."""
    for line in text.splitlines():
        match = _ESCAPE_DIRECTIVE.match(line)
        if match:
            return match.group(1)
        if not _DIRECTIVE.match(line):
            break
    return "\\"


def _instructions(text: str) -> list[_Instruction]:
    """The instructions, minus comments and minus heredoc bodies.

    ``dockerfile_parse`` does not know heredocs, so a ``COPY <<EOF`` whose body
    holds a Python ``from x import y`` line would come back as a ``FROM``. We
    find each heredoc's terminator in the raw lines and drop whatever the
    library made of the lines in between.
    """
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")), env_replace=False)
    raw_lines = text.splitlines()
    out: list[_Instruction] = []
    skip_until = -1  # last 0-based line of the current heredoc bodies
    for entry in parser.structure:
        keyword = str(entry["instruction"])
        start = int(entry["startline"])
        if keyword == "COMMENT" or start <= skip_until:
            continue
        value = str(entry["value"] or "")
        out.append(_Instruction(keyword, value, start + 1))
        if keyword in _HEREDOC_INSTRUCTIONS:
            skip_until = _heredoc_end(raw_lines, int(entry["endline"]), value)
    return out


def _heredoc_end(lines: list[str], after: int, value: str) -> int:
    """The 0-based line of the last terminator of ``value``'s heredocs (``after`` when none)."""
    end = after
    for match in _HEREDOC.finditer(value):
        strip_tabs, word = match.group(1) == "-", match.group(3)
        cursor = end + 1
        while cursor < len(lines):
            body = lines[cursor].lstrip("\t") if strip_tabs else lines[cursor]
            if body.rstrip("\r") == word:
                break
            cursor += 1
        end = cursor
    return end


def _from_words(ins: _Instruction) -> tuple[str, str | None]:
    """``FROM [--flag=…]… image [AS name]`` → (image, name)."""
    words = [w for w in ins.value.split() if not w.startswith("--")]
    if len(words) == 1:
        return words[0], None
    if len(words) == 3 and words[1].lower() == "as":
        return words[0], words[2]
    raise InputError(
        f"line {ins.line}: FROM takes an image and an optional 'AS name', got {ins.value.strip()!r}"
    )


def _arg_pairs(value: str, escape: str) -> list[tuple[str, str | None]]:
    """``ARG A B=1 C="x y"`` → [("A", None), ("B", "1"), ("C", '"x y"')]: defaults stay raw."""
    out: list[tuple[str, str | None]] = []
    for word in _split_words(value, escape):
        name, sep, default = word.partition("=")
        if name:
            out.append((name, default if sep else None))
    return out


def _split_words(value: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes for :func:`_expand`."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    chars = iter(value)
    for ch in chars:
        if ch == escape and quote != "'":
            current.append(ch)
            current.append(next(chars, ""))
        elif quote is not None:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


def _expand(
    word: str, env: Mapping[str, str | None], tainted: set[str], escape: str
) -> tuple[str, tuple[str, ...]]:
    """Shell-style expansion as BuildKit's lexer does it, reporting unset variables.

    Handles quotes, the escape character, ``$VAR``, ``${VAR}`` and the
    modifiers ``:-`` ``-`` ``:+`` ``+`` ``:?`` ``?``. Returns the expanded text
    and the names that were needed but unset (or themselves unresolved).
    """
    lexer = _Lexer(word, env, tainted, escape)
    text = lexer.run(stop=None)
    return text, tuple(dict.fromkeys(lexer.missing))


class _Lexer:
    def __init__(
        self, word: str, env: Mapping[str, str | None], tainted: set[str], escape: str
    ) -> None:
        self.word = word
        self.pos = 0
        self.env = env
        self.tainted = tainted
        self.escape = escape
        self.missing: list[str] = []
        self.closed = False  # whether the last run() met its stop char

    def _peek(self) -> str:
        return self.word[self.pos] if self.pos < len(self.word) else ""

    def _take(self) -> str:
        ch = self._peek()
        self.pos += 1
        return ch

    def run(self, *, stop: str | None) -> str:
        """Expand up to ``stop`` (a closing ``}``) or the end; the stop char is consumed."""
        out: list[str] = []
        quote: str | None = None
        while self.pos < len(self.word):
            ch = self._take()
            if stop is not None and quote is None and ch == stop:
                self.closed = True
                return "".join(out)
            if ch == self.escape and quote != "'":
                nxt = self._take()
                if quote == '"' and nxt not in ('"', "$", self.escape):
                    out.append(ch)
                out.append(nxt)
            elif quote == "'":
                if ch == "'":
                    quote = None
                else:
                    out.append(ch)
            elif ch == '"':
                quote = None if quote == '"' else '"'
            elif ch == "'" and quote is None:
                quote = "'"
            elif ch == "$":
                out.append(self._variable())
            else:
                out.append(ch)
        self.closed = False
        return "".join(out)

    def _variable(self) -> str:
        if self._peek() == "{":
            self.pos += 1
            return self._braced()
        start = self.pos
        while _NAME_CHAR.match(self._peek()):
            self.pos += 1
        name = self.word[start : self.pos]
        if not name:
            return "$"
        return self._lookup(name, required=True) or ""

    def _braced(self) -> str:
        start = self.pos
        while _NAME_CHAR.match(self._peek()):
            self.pos += 1
        name = self.word[start : self.pos]
        op = ""
        if self._peek() == ":":
            op = ":"
            self.pos += 1
        if not name:
            # `${}`, `${:-x}`: a bad substitution for BuildKit.
            self.missing.append(self.word)
            self.run(stop="}")
            return ""
        if self._peek() in ("-", "+", "?"):
            op += self._take()
        elif op:
            # `${VAR:0:2}` and other forms BuildKit does not support: unresolvable.
            self.missing.append(name or self.word)
            self.run(stop="}")
            return ""
        if not op:
            if self._take() != "}" or not name:
                self.missing.append(name or self.word)
                return ""
            return self._lookup(name, required=True) or ""
        # Evaluate the operand lazily: an unused default must not count as missing.
        saved = list(self.missing)
        operand = self.run(stop="}")
        operand_missing = self.missing[len(saved) :]
        self.missing = saved
        if not self.closed:  # `${A:-x` with no `}`: BuildKit refuses it
            self.missing.append(name)
            return ""
        value = self._lookup(name, required=False)
        unset = value is None
        empty = unset or value == ""
        use_operand = (op in ("-", "?") and unset) or (op in (":-", ":?") and empty)
        if op in ("+", ":+"):
            present = not unset if op == "+" else not empty
            if present:
                self.missing.extend(operand_missing)
                return operand
            return ""
        if use_operand:
            if op.endswith("?"):
                self.missing.append(name)
                return ""
            self.missing.extend(operand_missing)
            return operand
        return value or ""

    def _lookup(self, name: str, *, required: bool) -> str | None:
        value = self.env.get(name)
        if name in self.tainted:
            self.missing.append(name)
            return value
        if value is None and required:
            self.missing.append(name)
        return value
