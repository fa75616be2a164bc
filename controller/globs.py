"""Globs (``*`` any run of characters, ``?`` one), compiled once at policy compile time.

A policy is evaluated on every admission; its globs are turned into one
anchored regular expression per set when the policy is compiled, never per call.
Each kind of glob has an alphabet: a character that can never occur in what the
glob is matched against (upper case in a repository, ``/`` in a tag) is a
mistake in the policy, reported as :class:`InvalidGlob`.
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


def _translate(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """Shared by equal sets: policies repeat the same repository glob entry after entry."""
    body = "|".join(f"(?:{_translate(p)})" for p in patterns) or "(?!)"
    return re.compile(rf"^(?:{body})$", re.DOTALL)


def check(pattern: str, alphabet: re.Pattern[str], what: str) -> str:
    """Return ``pattern`` if it only uses ``alphabet``; else raise with a reason."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidGlob(f"empty {what} pattern")
    if not alphabet.match(pattern):
        bad = sorted({c for c in pattern if not alphabet.match(c)})
        shown = ", ".join(repr(c) for c in bad) or repr(pattern)
        raise InvalidGlob(f"bad glob {pattern!r}: {shown} cannot occur in a {what}")
    return pattern


@dataclass(frozen=True)
class GlobSet:
    """Several globs matched as one: true when any of them matches the whole string."""

    patterns: tuple[str, ...]

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        """Compiled on first use, then kept: a library policy has hundreds of tag globs
        and most are never consulted (their repository glob does not match)."""
        return _compile(self.patterns)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> GlobSet:
        return cls(tuple(patterns))

    def matches(self, value: str) -> bool:
        return self._regex.match(value) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)
