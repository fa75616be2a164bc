"""Globs: the same answers as fnmatch's ``*``/``?``, in time linear in the name.

A tenant writes the globs of its own ``BaseImagePolicy``; a backtracking matcher
lets one hostile pattern stall every review. The matcher is compared with
``fnmatch.fnmatchcase`` (the reference semantics for ``*`` and ``?``) on small
inputs, where any pattern is cheap for both.
"""

from __future__ import annotations

import fnmatch

from hypothesis import example, given
from hypothesis import strategies as st

from controller.globs import GlobSet

patterns = st.text("ab*?.", max_size=8)
names = st.text("ab.", max_size=12)


@given(st.lists(patterns.filter(bool), min_size=1, max_size=3), names)
@example(["*a*a*a*c"], "aaaaaaaa")
@example(["a*"], "a")
@example(["*a"], "a")
@example(["a*a"], "a")
@example(["?*?"], "a")
@example(["**"], "")
def test_matches_what_fnmatch_matches(pats: list[str], name: str) -> None:
    expected = any(fnmatch.fnmatchcase(name, p) for p in pats)
    assert GlobSet(tuple(pats)).matches(name) is expected


def test_hostile_patterns_answer_at_once() -> None:
    """Ten stars against 100,000 characters: a backtracking regex never returns.

    Not a timing assertion (the bench gives figures): the run either finishes
    or the suite hangs, which is the failure this guards against.
    """
    name = "a" * 100_000
    hostile = GlobSet(("*a*a*a*a*a*a*c", "*a" * 10 + "*c", "*?" * 10 + "c"))
    assert not hostile.matches(name)
    assert hostile.matches(name + "c")
