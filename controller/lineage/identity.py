"""What baseguard has seen each watched tag name: digest → tags, with history.

PURE data. A tag is a claim and a digest is a fact: ``python:3.12-slim@<d>``
runs ``<d>`` whatever the tag says, so rules that look at tags must judge the
tags that ``<d>`` really has. Those come from the identity index
(:mod:`controller.lineage.indexer`), which lists the tags of the repositories
the policies name and resolves them; this module only keeps the answers (the
catalog reads them too, to name a digest-only base claim):

* for every (repository, tag), the digests it names *now* (the index digest and
  each platform manifest's: either may be pinned) and the digests it named
  before, while baseguard watched (bounded per tag, oldest first out), because
  a digest pinned while its tag named it stays that tag's image after the tag
  moves on: pinning is the normal case, never a contradiction;
* for every digest, the tags known to name (or to have named) it.

What it cannot know: a digest it has never seen (pushed before baseguard
started watching and since replaced, or a tag outside the policies' globs).
Such a digest is judged by its stated tag, marked unverified, and by its
lineage. The store is plain in-memory state owned by whoever builds the index
(one per process and credential set), never a module global; the evaluator
gets a frozen :class:`KnownTags` per digest, never the store. What it learned
of one repository can be written out (:meth:`TagHistory.snapshot`,
:func:`encode_history`) and taken back by another process or after a restart
(:func:`decode_history`, :meth:`TagHistory.restore`): the indexer does so
through the shared cache tier.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from controller import digests as digest_names
from controller.globs import GlobSet
from controller.lineage.model import Lineage
from controller.reference import Reference

#: How many past digests one tag keeps; the oldest seen goes first.
HISTORY_PER_TAG = 32
#: How many (repository, tag) pairs the store keeps; the least recently recorded goes first.
MAX_TAGS = 20_000


@dataclass(frozen=True)
class KnownTags:
    """The tags of one repository known to name one digest (now, or in the history seen)."""

    tags: frozenset[str]
    current: frozenset[str] = frozenset()  # the subset that names it now

    def names(self, tag: str | None) -> bool:
        """Whether ``tag`` names (or named) this digest."""
        return tag is not None and tag in self.tags

    def shown(self) -> str:
        """For messages: the most specific tags first (``3.8.20-slim, 3.8-slim``)."""
        return ", ".join(sorted(self.tags, key=lambda t: (-len(t), t)))


def identity_key(name: str, digest: str) -> str:
    """How an assessment files what is known of ``name@digest``."""
    return f"{name}@{digest}"


@dataclass
class _Tag:
    current: frozenset[str]
    history: OrderedDict[str, None]  # digests named before, oldest first


class TagHistory:
    """Every digest each watched tag has named while baseguard looked, by repository.

    :meth:`record` is called by the identity index for each tag it resolved;
    :meth:`known` answers for a digest. Bounded: each tag keeps
    ``history_per_tag`` past digests, and the store ``max_tags`` tags.
    """

    def __init__(
        self, *, history_per_tag: int = HISTORY_PER_TAG, max_tags: int = MAX_TAGS
    ) -> None:
        if history_per_tag < 1 or max_tags < 1:
            raise ValueError("tag history bounds must be positive")
        self._per_tag = history_per_tag
        self._max_tags = max_tags
        self._tags: OrderedDict[tuple[str, str], _Tag] = OrderedDict()
        # digest -> (name, tag) -> True when it names it now
        self._digests: dict[str, dict[tuple[str, str], bool]] = {}
        #: (repository glob, tag globs) the cluster policies watch: evicted last.
        self._shared: tuple[tuple[GlobSet, GlobSet], ...] = ()

    def share(self, targets: Mapping[str, frozenset[str]]) -> None:
        """Name what the cluster policies watch (repository glob → tag globs), replacing the
        previous set: when the store is full, every other tag's history goes first, so a
        tenant's globs listing thousands of tags cannot erase the history every namespace
        relies on (a digest pinned while its tag named it stays that tag's)."""
        self._shared = tuple(
            (GlobSet((name,)), GlobSet(tuple(sorted(tags)))) for name, tags in sorted(targets.items())
        )

    def _is_shared(self, name: str, tag: str) -> bool:
        return any(n.matches(name) and t.matches(tag) for n, t in self._shared)

    def _victim(self) -> tuple[str, str]:
        for key in self._tags:
            if not self._is_shared(*key):
                return key
        return next(iter(self._tags))

    def __len__(self) -> int:
        return len(self._tags)

    def record(self, name: str, tag: str, digests: Iterable[str]) -> None:
        """``name:tag`` names ``digests`` now (its index digest and platform manifests).

        What it named before and no longer does moves to its history.
        """
        key = (name, tag)
        entry = self._tags.get(key)
        if entry is None:
            entry = self._tags[key] = _Tag(frozenset(), OrderedDict())
        now = frozenset(digests)
        self._tags.move_to_end(key)
        for old in entry.current - now:
            entry.history[old] = None
            entry.history.move_to_end(old)
            self._digests.setdefault(old, {})[key] = False
        for digest in now:
            entry.history.pop(digest, None)
            self._digests.setdefault(digest, {})[key] = True
        entry.current = now
        self._bound(name, tag, entry)

    def restore(self, name: str, tag: str, current: Iterable[str], past: Iterable[str]) -> None:
        """What an earlier process saw ``name:tag`` name (``past`` oldest first, then
        ``current``), older than anything recorded here: a tag never seen here starts
        from it; one recorded here keeps its own current digests and adds the rest to
        its history, before its own."""
        key = (name, tag)
        entry = self._tags.get(key)
        if entry is None:
            self.record(name, tag, current)
            entry = self._tags.get(key)
            if entry is None:  # evicted at once: the store is full of what the policies watch
                return
        older = [d for d in dict.fromkeys((*past, *current)) if d not in entry.current and d not in entry.history]
        if not older:
            return
        entry.history = OrderedDict.fromkeys([*older, *entry.history])
        for digest in older:
            self._digests.setdefault(digest, {})[key] = False
        self._bound(name, tag, entry)

    def snapshot(self, name: str) -> dict[str, tuple[list[str], list[str]]]:
        """Every tag of ``name`` recorded: tag → (digests it names now, sorted; those it
        named before, oldest first). What :meth:`restore` takes back."""
        return {
            tag: (sorted(entry.current), list(entry.history))
            for (n, tag), entry in self._tags.items()
            if n == name
        }

    def _bound(self, name: str, tag: str, entry: _Tag) -> None:
        while len(entry.history) > self._per_tag:
            gone, _ = entry.history.popitem(last=False)
            self._forget(name, tag, gone)
        while len(self._tags) > self._max_tags:
            old_name, old_tag = self._victim()
            evicted = self._tags.pop((old_name, old_tag))
            for digest in (*evicted.current, *evicted.history):
                self._forget(old_name, old_tag, digest)

    def _forget(self, name: str, tag: str, digest: str) -> None:
        tags = self._digests.get(digest)
        if tags is not None:
            tags.pop((name, tag), None)
            if not tags:
                del self._digests[digest]

    def current(self, name: str, tag: str) -> frozenset[str]:
        """The digests ``name:tag`` names now, as last recorded (empty when never recorded)."""
        entry = self._tags.get((name, tag))
        return entry.current if entry is not None else frozenset()

    def known(self, name: str, digest: str) -> KnownTags | None:
        """The tags of ``name`` known to name ``digest``; ``None`` when none is."""
        tags = {t: now for (n, t), now in self._digests.get(digest, {}).items() if n == name}
        if not tags:
            return None
        return KnownTags(frozenset(tags), frozenset(t for t, now in tags.items() if now))

    def tags_of(self, digest: str) -> list[tuple[str, str]]:
        """Every (repository, tag) known to name ``digest``, in any repository."""
        return sorted(self._digests.get(digest, {}))

    def facts(
        self,
        keys: Iterable[tuple[str, str]],
        within: Mapping[str, frozenset[str]] | None = None,
    ) -> Mapping[str, KnownTags]:
        """The frozen answers for the given (name, digest) pairs, as the evaluator takes them.

        ``within`` (repository → tag globs) is what the policies of the review's own
        namespace asked the index to watch: the history is filled for every policy of
        the process, and a tag another tenant's globs had listed must not change what
        this review is told (``None``: everything, for callers judging for nobody).
        """
        out: dict[str, KnownTags] = {}
        for name, digest in keys:
            found = self.known(name, digest)
            if found is not None and within is not None:
                found = _within(found, within.get(name))
            if found is not None:
                out[identity_key(name, digest)] = found
        return out


def encode_history(snapshot: Mapping[str, tuple[list[str], list[str]]]) -> bytes:
    """A :meth:`TagHistory.snapshot` as bytes, for a store other processes read."""
    doc = {tag: {"current": current, "past": past} for tag, (current, past) in sorted(snapshot.items())}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_history(
    blob: bytes, *, max_tags: int = MAX_TAGS, per_tag: int = HISTORY_PER_TAG
) -> dict[str, tuple[list[str], list[str]]] | None:
    """What :func:`encode_history` wrote; ``None`` when it is not that (not JSON, a
    digest that is not one, more tags or digests than a history keeps): the caller
    ignores such an entry whole rather than trusting part of it."""
    try:
        doc = json.loads(blob)
    except ValueError:
        return None
    if not isinstance(doc, dict) or len(doc) > max_tags:
        return None
    out: dict[str, tuple[list[str], list[str]]] = {}
    for tag, entry in doc.items():
        if not isinstance(entry, dict):
            return None
        current, past = entry.get("current"), entry.get("past")
        if not isinstance(current, list) or not isinstance(past, list) or len(past) > per_tag:
            return None
        if len(current) > per_tag or not all(
            isinstance(d, str) and digest_names.is_digest(d) for d in (*current, *past)
        ):
            return None
        out[tag] = (current, past)
    return out


def _within(found: KnownTags, patterns: frozenset[str] | None) -> KnownTags | None:
    """``found`` with only the tags that ``patterns`` match; ``None`` when none is left."""
    if not patterns:
        return None
    globs = GlobSet(tuple(sorted(patterns)))
    tags = frozenset(t for t in found.tags if globs.matches(t))
    if not tags:
        return None
    return KnownTags(tags, found.current & tags)


# --------------------------------------------------------------------------- facts for one image


def pinned(ref: Reference, lineage: Lineage | None) -> list[tuple[str, str | None, str]]:
    """Every (repository, written tag, digest) that an image and its base claims pin.

    The image counts only when its reference carries a digest (a bare tag
    names whatever the registry resolved, which cannot contradict it); a
    level counts with both its reference's digest and its platform manifest's.
    """
    out: list[tuple[str, str | None, str]] = []
    if ref.digest is not None:
        out.append((ref.name, ref.effective_tag, ref.digest))
    for platform in lineage.platforms if lineage is not None else ():
        for level in platform.levels[1:]:
            base = level.reference
            if base is None:
                continue
            for digest in dict.fromkeys(d for d in (base.digest, level.digest) if d):
                out.append((base.name, base.tag, digest))
    return list(dict.fromkeys(out))


def unverified_noted(
    lineage: Lineage, history: TagHistory, names: Collection[str]
) -> Lineage:
    """``lineage`` with a note on each pinned level whose digest the index has never seen.

    Only for repositories the index watches (``names``): elsewhere nothing was
    expected to be known. Such a level is judged by its written tag.
    """
    platforms = []
    changed = False
    for platform in lineage.platforms:
        levels = list(platform.levels)
        for i, level in enumerate(levels):
            ref = level.reference if i else lineage.reference
            if ref is None or ref.tag is None or ref.name not in names:
                continue
            digests = [ref.digest] if i == 0 else [ref.digest, level.digest]
            given = [d for d in digests if d]
            if not given or any(history.known(ref.name, d) is not None for d in given):
                continue
            digest = given[0]
            note = (
                f"tag {ref.tag} unverified: the identity index has not seen {digest} in "
                f"{ref.name}, so it is judged by its written tag"
            )
            levels[i] = replace(level, note="; ".join(n for n in (level.note, note) if n))
            changed = True
        platforms.append(replace(platform, levels=tuple(levels)))
    return replace(lineage, platforms=tuple(platforms)) if changed else lineage
