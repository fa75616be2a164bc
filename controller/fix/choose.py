"""Which reference replaces another: the policies' answer, given what the registry said.

PURE: the tag list and digests come in as arguments. ``--update`` chooses, in order:

1. the ``replacement`` of a ``bases.deprecated`` entry that matches the image
   (what the policy author asked for, as written);
2. else the newest tag of the same repository that every covering policy allows
   and none deprecates, of the same *variant* and *precision* as the current
   one: ``3.8-slim`` → ``3.13-slim`` (never ``3.13`` nor ``3.13.1-slim``),
   ``3.8.10-slim`` → the newest ``3.13.x-slim``, ``-alpine3.18`` stays Alpine
   (``-alpine3.21`` is the same variant), and only a newer version than the
   current one.

"Allows" is judged by what the policy says about the repository itself: its
``registries.allowed``, its ``pinning.disallowedTags``, its ``bases.deprecated``
entries, and its ``bases.allowed`` entries when one of them names this
repository (an allowlist of bases says nothing about the tags of an application
image it does not name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.policy.model import CompiledPolicy, DeprecatedEntry
from controller.policy.rungs import Rung, entry_matches
from controller.reference import Reference

_SHAPE = re.compile(r"^(v?)(\d+(?:\.\d+)*)(.*)$")
_NUMBERS = re.compile(r"\d+")


@dataclass(frozen=True)
class TagShape:
    """A version tag split: ``v`` prefix, numeric parts, and the variant after them.

    ``variant`` is the suffix with its numbers blanked (``-alpine3.18`` →
    ``-alpine#.#``), so Alpine releases are one variant; ``suffix_numbers`` orders
    tags within it.
    """

    prefix: str
    version: tuple[int, ...]
    variant: str
    suffix_numbers: tuple[int, ...]

    @property
    def precision(self) -> int:
        return len(self.version)

    @property
    def order(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.version, self.suffix_numbers


def tag_shape(tag: str) -> TagShape | None:
    """The shape of ``tag``, or ``None`` for a tag with no leading version (``bookworm``, ``latest``)."""
    m = _SHAPE.match(tag)
    if m is None:
        return None
    prefix, numbers, suffix = m.groups()
    if suffix[:1].isalnum():  # 3.14.0rc1, 3.12a: a pre-release, not a variant of 3.12
        return TagShape(prefix, tuple(int(n) for n in numbers.split(".")), "~" + _blank(suffix), ())
    return TagShape(
        prefix,
        tuple(int(n) for n in numbers.split(".")),
        _blank(suffix),
        tuple(int(n) for n in _NUMBERS.findall(suffix)),
    )


def _blank(suffix: str) -> str:
    return _NUMBERS.sub("#", suffix)


def same_kind(current: TagShape, candidate: TagShape) -> bool:
    """Same prefix, variant and precision: a tag a person would call "the same, newer"."""
    return (
        current.prefix == candidate.prefix
        and current.variant == candidate.variant
        and current.precision == candidate.precision
        and not candidate.variant.startswith("~")
    )


def _rung(ref: Reference, tag: str) -> Rung:
    return Rung(
        name=ref.name,
        tag=tag,
        digests=frozenset({ref.digest} if ref.digest else ()),
        display=f"{ref.name}:{tag}",
        depth=0,
        tags=frozenset({tag}),
    )


def deprecation(ref: Reference, policies: Iterable[CompiledPolicy]) -> DeprecatedEntry | None:
    """The first ``bases.deprecated`` entry of the covering policies that matches ``ref``
    (its ``enforceAfter`` ignored: a deadline ahead is still a deprecation)."""
    tag = ref.effective_tag
    if tag is None:
        return None
    rung = _rung(ref, tag)
    for policy in policies:
        for entry in policy.bases_deprecated:
            if entry_matches(entry, rung):
                return entry
    return None


def permitted(ref: Reference, tag: str, policies: Iterable[CompiledPolicy]) -> bool:
    """Whether every covering policy allows ``ref``'s repository at ``tag`` (module docstring)."""
    rung = _rung(Reference(ref.registry, ref.repository, tag), tag)
    for policy in policies:
        if policy.registries_allowed is not None and not policy.registries_allowed.matches(ref.name):
            return False
        if policy.pinning.disallowed_tags.matches(tag):
            return False
        if any(entry_matches(e, rung) for e in policy.bases_deprecated):
            return False
        entries = [e for e in policy.bases_allowed or () if e.image.matches(ref.name)]
        if entries and not any(entry_matches(e, rung) for e in entries):
            return False
    return True


def newest_tag(ref: Reference, tags: Sequence[str], policies: Sequence[CompiledPolicy]) -> str | None:
    """The newest permitted tag of ``ref``'s kind (module docstring), newer than its own; or ``None``."""
    current = ref.tag
    shape = tag_shape(current) if current else None
    if shape is None:
        return None
    best: tuple[tuple[tuple[int, ...], tuple[int, ...]], str] | None = None
    for tag in tags:
        candidate = tag_shape(tag)
        if candidate is None or not same_kind(shape, candidate) or candidate.order <= shape.order:
            continue
        if not permitted(ref, tag, policies):
            continue
        if best is None or (candidate.order, tag) > best:
            best = (candidate.order, tag)
    return best[1] if best else None
