"""Writing an answer's warnings again costs a lookup, bounded; the fast paths of ``clip()``
say exactly what the regular expressions say.

The same pod template is reviewed again and again (each pod of a ReplicaSet, a retried
apply, a dry run); shortening its warnings was most of an answer's time on a warm cache
(bench/review_parse.py, bench/messages.py).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.findings import Finding, grouped_findings
from controller.policy.model import Action, RuleCode
from controller.policy.verdict import Violation
from controller.webhook import messages
from controller.workloads import ContainerImage

DEPRECATED = (
    "image {image} is built on docker.io/library/python:3.8-slim (deprecated: Python 3.8: end "
    "of life 2024-10-07; source: endoflife.date, snapshot 2026-08-22); use "
    "docker.io/library/python:3.13-slim"
)


def groups(n: int, prefix: str = "svc") -> list[tuple[Finding, object]]:
    out = []
    for i in range(n):
        image = f"127.0.0.1:5055/shop/{prefix}-{i}:1.0"
        where = ContainerImage(f"container-number-{i}", image, f"/spec/containers/{i}/image")
        violation = Violation("platform-bases", RuleCode.DEPRECATED_BASE, Action.WARN, DEPRECATED.format(image=image))
        out.append(Finding(where, violation))
    return grouped_findings(out)  # type: ignore[return-value]


def test_the_same_warnings_again_are_looked_up_not_rewritten() -> None:
    messages.forget_words()
    review = groups(5)
    first = messages.warning_lines(review)  # type: ignore[arg-type]
    assert len(first) == 5 and all("use python:3.13-slim" in w for w in first), first
    written = messages.words_cached()["warnings"]
    assert (written.hits, written.misses) == (0, 5)
    again = messages.warning_lines(groups(5))  # type: ignore[arg-type]
    assert again == first
    looked_up = messages.words_cached()["warnings"]
    assert (looked_up.hits, looked_up.misses) == (5, 5)


def test_the_cache_is_bounded_whatever_a_review_sends() -> None:
    messages.forget_words()
    for batch in range(12):
        messages.warning_lines(groups(250, prefix=f"flood{batch}"))  # type: ignore[arg-type]
    assert messages.words_cached()["warnings"].currsize == messages.WORDS_CACHED
    assert messages.words_cached()["messages"].currsize == messages.WORDS_CACHED
    # an evicted entry is written again, the same words
    messages.forget_words()
    assert messages.warning_lines(groups(1, prefix="flood0")) == messages.warning_lines(
        groups(1, prefix="flood0")  # type: ignore[arg-type]
    )


_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TYPOGRAPHY = str.maketrans(
    {"\u2192": "->", "\u2190": "<-", "\u2026": "...", "\u2014": "-", "\u2013": "-",
     "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}
)  # fmt: skip


def by_regex(text: str, *, ascii_only: bool) -> str:
    """What ``_one_line`` did with regular expressions only, before its fast paths."""
    line = _SPACES.sub(" ", text).strip()
    if ascii_only:
        return _NOT_PRINTABLE.sub("?", line.translate(_TYPOGRAPHY))
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", _CONTROL.sub(" ", line))


PIECES = st.sampled_from(
    ["a", "Z", " ", "  ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2028", "\u200b", "\x00", "\x7f",
     "\u2192", "\u2014", "\u2026", "\u2019", "\u201c", "\u00e9", "\u65e5", "\ud800", ":", "(", ";"]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=16).map("".join), st.booleans())
def test_clip_says_what_the_regular_expressions_say(text: str, ascii_only: bool) -> None:
    assert messages.clip(text, 10_000, ascii_only=ascii_only) == by_regex(text, ascii_only=ascii_only)
