"""Globs (``*`` any run of characters, ``?`` one; nothing else), compiled once at policy compile time.

A policy is evaluated on every admission, and a tenant writes the globs of its
own ``BaseImagePolicy``: matching must cost time linear in the name whatever
the pattern, or one hostile glob (``*a*a*a*a*a*a*c``) stalls every namespace.
So no backtracking regular expression is ever built from a glob: each pattern
is split at its stars and matched left to right (:class:`_Glob`), and sets are
compiled once per distinct tuple of patterns, never per call.
Each kind of glob has an alphabet: a character that can never occur in what the
glob is matched against (upper case in a repository, ``/`` in a tag) is a
mistake in the policy, reported as :class:`InvalidGlob`.

``[`` and ``]`` are *not* wildcards (there are no character classes): they are
literal, and they occur in a name only around an IPv6 registry host
(``[::1]:5000/app``). So a repository or image glob may hold them only there,
at its start; anywhere else (``docker.io/library/[abc``) the glob could never
match, and it is refused with a message saying what globs support.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from controller.errors import InvalidGlob

# What may appear in each kind of pattern, besides the wildcards ``*`` and ``?``.
REPOSITORY_CHARS = re.compile(r"^[a-z0-9._/:\-\[\]*?]+$")
TAG_CHARS = re.compile(r"^[A-Za-z0-9_.\-*?]+$")
NAMESPACE_CHARS = re.compile(r"^[a-z0-9\-*?]+$")
IMAGE_CHARS = re.compile(r"^[a-z0-9._/:@\-\[\]*?A-Za-z]+$")
#: Wildcards (``*`` and ``?`` together) one glob may hold. Matching costs a search per
#: ``*`` run and compiling one an expression per ``?`` run: a real glob has one to
#: three; a policy of a thousand with hundreds each cost seconds of CPU per review.
MAX_WILDCARDS = 16

#: Where ``[``/``]`` may stand in a glob: around an IPv6 host at its start, and nowhere else.
_IPV6_HOST = re.compile(r"^\[[0-9A-Fa-f:*?]+\](?=[:/*?]|$)")
BRACKETS_HINT = (
    "globs support only * (any run of characters) and ? (one character), with no [...] "
    "classes; '[' and ']' are literal and may only enclose an IPv6 registry host at the start, "
    "e.g. [::1]:5000/*"
)


class _Segment:
    """A run of a glob between two ``*``: literal text, or text with ``?`` (any one character).

    Neither form has a quantifier, so finding one costs at most its length per
    position tried: no backtracking, whatever the text.
    """

    __slots__ = ("_any", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        # ``?`` segments become a quantifier-free expression; literal ones use str methods.
        self._any = (
            re.compile("".join("." if c == "?" else re.escape(c) for c in text), re.DOTALL)
            if "?" in text
            else None
        )

    def at(self, value: str, pos: int) -> bool:
        """Whether the segment matches ``value`` starting exactly at ``pos``."""
        if self._any is None:
            return value.startswith(self.text, pos)
        return self._any.match(value, pos, pos + self.size) is not None

    def find(self, value: str, start: int, end: int) -> int:
        """The leftmost position in ``[start, end)`` where the whole segment fits, or -1."""
        if self._any is None:
            return value.find(self.text, start, end)
        found = self._any.search(value, start, end)
        return -1 if found is None else found.start()


class _Glob:
    """One glob, matched in time linear in the name (times the pattern's length).

    ``*`` runs are collapsed; the pattern is then ``head * mid₁ * … * tail``. The
    head must match at the start and the tail at the end; each middle segment is
    taken at its *leftmost* place after the previous one. Leftmost is always
    right for globs (a ``*`` can absorb whatever an earlier choice leaves), so no
    choice is ever revisited: ``*a*a*a*a*a*a*c`` against a long run of ``a`` is one
    left-to-right pass, where a backtracking regex takes exponential time.
    """

    __slots__ = ("head", "mids", "starred", "tail")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split("*")
        self.starred = len(parts) > 1
        self.head = _Segment(parts[0])
        self.tail = _Segment(parts[-1]) if self.starred else None
        self.mids = tuple(_Segment(p) for p in parts[1:-1] if p)

    def match(self, value: str) -> bool:
        head, tail = self.head, self.tail
        if tail is None:
            return len(value) == head.size and head.at(value, 0)
        end = len(value) - tail.size
        if end < head.size or not head.at(value, 0) or not tail.at(value, end):
            return False
        pos = head.size
        for mid in self.mids:
            found = mid.find(value, pos, end)
            if found < 0:
                return False
            pos = found + mid.size
        return True


@dataclass(frozen=True)
class _Compiled:
    """A glob set sorted by shape: exact names and plain prefixes need no matcher at all."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    others: tuple[_Glob, ...]

    def matches(self, value: str) -> bool:
        return (
            value in self.exact
            or (bool(self.prefixes) and value.startswith(self.prefixes))
            or any(g.match(value) for g in self.others)
        )


@functools.lru_cache(maxsize=4096)
def _compile(patterns: tuple[str, ...]) -> _Compiled:
    """Shared by equal sets: policies repeat the same repository glob entry after entry."""
    exact: set[str] = set()
    prefixes: list[str] = []
    others: list[_Glob] = []
    for pattern in patterns:
        collapsed = re.sub(r"\*+", "*", pattern)
        if "*" not in collapsed and "?" not in collapsed:
            exact.add(collapsed)
        elif collapsed.endswith("*") and "*" not in collapsed[:-1] and "?" not in collapsed:
            prefixes.append(collapsed[:-1])
        else:
            others.append(_Glob(collapsed))
    return _Compiled(frozenset(exact), tuple(prefixes), tuple(others))


def check(pattern: str, alphabet: re.Pattern[str], what: str) -> str:
    """Return ``pattern`` if it only uses ``alphabet``; else raise with a reason."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidGlob(f"empty {what} pattern")
    if not alphabet.match(pattern):
        bad = sorted({c for c in pattern if not alphabet.match(c)})
        shown = ", ".join(repr(c) for c in bad) or repr(pattern)
        raise InvalidGlob(f"bad glob {pattern!r}: {shown} cannot occur in a {what}")
    wildcards = sum(1 for c in pattern if c in "*?")
    if wildcards > MAX_WILDCARDS:
        raise InvalidGlob(
            f"bad glob {pattern!r}: {wildcards} wildcards (* and ?), more than the "
            f"{MAX_WILDCARDS} a glob may hold"
        )
    if "[" in pattern or "]" in pattern:
        host = _IPV6_HOST.match(pattern)
        rest = pattern[host.end() :] if host else pattern
        if "[" in rest or "]" in rest:
            raise InvalidGlob(f"bad glob {pattern!r}: {BRACKETS_HINT}")
    return pattern


@dataclass(frozen=True)
class GlobSet:
    """Several globs matched as one: true when any of them matches the whole string."""

    patterns: tuple[str, ...]

    @cached_property
    def _matcher(self) -> _Compiled:
        """Compiled once, then kept. The policy compiler asks for it up front
        (:meth:`prepared`): a tenant's policy of a thousand long globs takes a good
        part of a second to compile, which must not be the first review's loop time."""
        return _compile(self.patterns)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> GlobSet:
        return cls(tuple(patterns))

    def matches(self, value: str) -> bool:
        return self._matcher.matches(value)

    def prepared(self) -> GlobSet:
        """``self``, compiled now: the policy compiler calls this so that the first
        review after a policy change does not pay for compiling its globs."""
        _ = self._matcher
        return self

    def __bool__(self) -> bool:
        return bool(self.patterns)
