"""The catalog of known bases: what each watched tag has pointed at, by layers.

Layer detection (against ``lineage.catalog``) needs the *historic* diff_id sets per tag, not only
the current digest: Docker Official Images re-push their tags often, and an
image built last month sits on last month's ``python:3.12-slim``. So the
catalog keeps every digest a catalog tag has had while the controller watched
it, bounded per tag (least recently seen first out) so a tag that churns daily
cannot grow it without end.

No I/O here: :class:`~controller.lineage.resolve.LineageResolver` fills it. It
is plain in-memory state owned by whoever builds the resolver (one per process),
never a module global.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from controller.errors import InvalidReference
from controller.lineage.identity import TagHistory
from controller.platforms import key as platform_key  # re-exported: one home for platforms
from controller.reference import Reference, parse

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CatalogMatch",
    "Scope",
    "is_prefix",
    "platform_key",
    "tag_key",
]

#: How many digests one tag keeps per platform; the oldest seen goes first.
DIGESTS_PER_TAG = 32
#: How many tags (per platform) the catalog keeps; the least recently refreshed goes first.
MAX_TAGS = 2048


def tag_key(ref: Reference) -> str:
    """``name:tag`` when the reference has a tag, else ``name@digest``: what a catalog entry is *of*."""
    return ref.without_digest().normalized if ref.tag is not None else ref.normalized


def is_prefix(base: tuple[str, ...], child: tuple[str, ...]) -> bool:
    """Base B is a layer-ancestor of image I iff B's diff_ids are a prefix of I's (equal is fine)."""
    return len(base) <= len(child) and child[: len(base)] == base


@dataclass(frozen=True)
class Scope:
    """The part of the catalog one lookup may read: the bases its own policies name.

    The catalog is filled by every policy of the process, cluster-wide and
    namespaced alike, so that a base's history is kept once. Reading it must not
    be shared the same way: an entry a namespaced policy contributed (an image
    with the same layers as another team's, claiming some other base) would
    otherwise be the "longest prefix" of that team's image too, and decide its
    verdict. So every read names the catalog set of the lookup asking — the
    ``lineage.catalog`` and pinned bases of the policies applicable to the
    review's namespace, which the lineage memo key already holds — and sees
    only those tags (``tags``) and, for naming a digest-only claim from the tag
    history, only their repositories (``names``).
    """

    tags: frozenset[str]
    names: frozenset[str]

    @classmethod
    def of(cls, refs: Iterable[Reference]) -> Scope:
        """The scope of a lookup whose catalog set is ``refs``."""
        refs = tuple(refs)
        return cls(frozenset(tag_key(r) for r in refs), frozenset(r.name for r in refs))


@dataclass(frozen=True)
class CatalogEntry:
    reference: Reference  # the catalog ref, carrying the digest it resolved to (index or manifest)
    platform: str  # normalized
    digest: str  # the platform manifest digest
    diff_ids: tuple[str, ...]


@dataclass(frozen=True)
class CatalogMatch:
    """The longest catalog prefix of an image's layers.

    ``reference`` is the most specific of the tied tags (the longest tag), with
    the digest it resolved to; ``tied`` lists every reference that matched
    equally well (the same digest under several tags, or rebuilt copies with the
    same layers), for messages: ``debian:12-slim`` is ``debian:bookworm-slim``.
    """

    reference: Reference
    digest: str
    diff_ids: tuple[str, ...]
    tied: tuple[Reference, ...] = ()

    @property
    def others(self) -> tuple[Reference, ...]:
        """The tied references other than the chosen one."""
        return tuple(r for r in self.tied if tag_key(r) != tag_key(self.reference))


class Catalog:
    """Every digest each catalog tag has had while the controller watched it, plus pinned digests.

    Keyed by (tag, platform); each key keeps up to ``digests_per_tag`` entries in
    least-recently-seen order. An index over each entry's *whole* layer list
    (platform, diff_ids) lets :meth:`longest_prefix` ask, for each length a
    catalog entry has, "is this prefix of the image a catalog image?": a few
    dictionary lookups, however many digests the catalog holds. (Indexing by the
    first diff_id alone is not enough: most bases share their distribution's
    first layer, so that bucket is nearly the whole catalog.)
    """

    def __init__(
        self,
        *,
        digests_per_tag: int = DIGESTS_PER_TAG,
        max_tags: int = MAX_TAGS,
        history: TagHistory | None = None,
    ) -> None:
        if digests_per_tag < 1 or max_tags < 1:
            raise ValueError("catalog bounds must be positive")
        #: Which tags each digest had, as the identity index resolved them (it indexes the
        #: catalog's tags too): a digest-only base claim the catalog's own entries cannot
        #: name is named from it. The catalog keeps layers; the history keeps names.
        self.history = history if history is not None else TagHistory()
        self._per_tag = digests_per_tag
        self._max_tags = max_tags
        # (tag key, platform) -> digest -> entry, least recently seen first
        self._tags: OrderedDict[tuple[str, str], OrderedDict[str, CatalogEntry]] = OrderedDict()
        # (platform, diff_ids) -> {(tag key, digest)}: entries with exactly these layers
        self._by_layers: dict[tuple[str, tuple[str, ...]], set[tuple[str, str]]] = {}
        # platform -> number of layers -> how many entries have that many
        self._lengths: dict[str, dict[int, int]] = {}
        # index or manifest digest -> tag key -> how many entries name it; for digest-only claims
        self._resolved: dict[str, dict[str, int]] = {}
        self._refs: dict[str, Reference] = {}  # tag key -> reference without digest
        self._platforms: dict[str, set[str]] = {}  # tag key -> platforms it has entries for
        #: Tag keys the cluster policies name: the bound evicts every other tag first, so a
        #: tenant naming thousands of catalog tags cannot push a cluster base's history out.
        self._shared: frozenset[str] = frozenset()

    def share(self, refs: Iterable[Reference]) -> None:
        """Name the catalog tags of the cluster policies (replacing the previous set).

        They are the only catalog state every namespace relies on; what namespaced
        policies add is evicted before them when the catalog is full.
        """
        self._shared = frozenset(tag_key(r) for r in refs)

    def _victim(self) -> tuple[str, str]:
        """The (tag, platform) the bound evicts: the least recently seen one no cluster
        policy names, else (when cluster policies alone fill it) the least recently seen."""
        for key in self._tags:
            if key[0] not in self._shared:
                return key
        return next(iter(self._tags))

    def __len__(self) -> int:
        return sum(len(d) for d in self._tags.values())

    def __iter__(self) -> Iterator[CatalogEntry]:
        for digests in self._tags.values():
            yield from digests.values()

    def remember(
        self, ref: Reference, platform: str, digest: str, diff_ids: tuple[str, ...]
    ) -> None:
        """Record that ``ref`` (for ``platform``) is the image ``digest`` with these layers.

        ``ref.digest``, when set, is what the tag resolved to (an index digest for
        a multi-platform tag); it is kept so digest-only claims can be named.
        """
        key = (tag_key(ref), platform_key(platform))
        self._refs[key[0]] = ref.without_digest() if ref.tag is not None else ref
        self._platforms.setdefault(key[0], set()).add(key[1])
        digests = self._tags.get(key)
        if digests is None:
            digests = self._tags[key] = OrderedDict()
        self._tags.move_to_end(key)
        old = digests.pop(digest, None)
        if old is not None:
            self._unindex(key, old)
        entry = CatalogEntry(
            ref if ref.digest else ref.with_digest(digest), key[1], digest, diff_ids
        )
        digests[digest] = entry
        self._index(key, entry)
        while len(digests) > self._per_tag:
            _, evicted = digests.popitem(last=False)
            self._unindex(key, evicted)
        while len(self._tags) > self._max_tags:
            old_key = self._victim()
            old_digests = self._tags.pop(old_key)
            for evicted in old_digests.values():
                self._unindex(old_key, evicted)
            platforms = self._platforms.get(old_key[0], set())
            platforms.discard(old_key[1])
            if not platforms:
                self._platforms.pop(old_key[0], None)
                self._refs.pop(old_key[0], None)

    def _index(self, key: tuple[str, str], entry: CatalogEntry) -> None:
        if entry.diff_ids:
            self._by_layers.setdefault((key[1], entry.diff_ids), set()).add((key[0], entry.digest))
            lengths = self._lengths.setdefault(key[1], {})
            lengths[len(entry.diff_ids)] = lengths.get(len(entry.diff_ids), 0) + 1
        for d in _digests(entry):
            names = self._resolved.setdefault(d, {})
            names[key[0]] = names.get(key[0], 0) + 1

    def _unindex(self, key: tuple[str, str], entry: CatalogEntry) -> None:
        if entry.diff_ids:
            layers = (key[1], entry.diff_ids)
            bucket = self._by_layers.get(layers)
            if bucket is not None and (key[0], entry.digest) in bucket:
                bucket.discard((key[0], entry.digest))
                if not bucket:
                    del self._by_layers[layers]
                lengths = self._lengths[key[1]]
                lengths[len(entry.diff_ids)] -= 1
                if not lengths[len(entry.diff_ids)]:
                    del lengths[len(entry.diff_ids)]
                    if not lengths:
                        del self._lengths[key[1]]
        for d in _digests(entry):
            names = self._resolved.get(d, {})
            count = names.get(key[0], 0) - 1
            if count > 0:
                names[key[0]] = count
            else:
                names.pop(key[0], None)
                if not names:
                    self._resolved.pop(d, None)

    def knows(self, ref: Reference, digest: str) -> bool:
        """Whether ``ref``'s tag was already seen at ``digest`` (index or platform manifest)."""
        return tag_key(ref) in self._resolved.get(digest, {})

    def touch(self, ref: Reference, digest: str) -> None:
        """Mark ``ref`` at ``digest`` as seen again, so the bound evicts older digests first."""
        name = tag_key(ref)
        for platform in self._platforms.get(name, ()):
            digests = self._tags[(name, platform)]
            for entry in list(digests.values()):
                if digest in _digests(entry):
                    digests.move_to_end(entry.digest)
                    self._tags.move_to_end((name, platform))

    def has(self, ref: Reference) -> bool:
        """Whether the catalog holds anything for ``ref``'s tag (or pinned digest)."""
        return tag_key(ref) in self._platforms

    def name_of(self, digest: str, *, scope: Scope | None = None) -> Reference | None:
        """A catalog reference that resolved to ``digest`` (most specific tag), with that digest.

        With ``scope``, only the scope's tags name it (and, from the tag history,
        only tags of the scope's repositories); ``None`` reads the whole catalog,
        which only a caller judging for nobody in particular may do.
        """
        keys = [
            k for k in self._resolved.get(digest, {}) if scope is None or k in scope.tags
        ]
        if not keys:
            return self._named_by_history(digest, scope)
        best = min(keys, key=lambda k: _rank(self._refs[k]))
        return self._refs[best].with_digest(digest)

    def _named_by_history(self, digest: str, scope: Scope | None) -> Reference | None:
        """A tag the identity index (or an earlier refresh) saw naming ``digest``."""
        refs: list[Reference] = []
        for name, tag in self.history.tags_of(digest):
            if scope is not None and name not in scope.names:
                continue
            try:
                refs.append(parse(f"{name}:{tag}"))
            except InvalidReference:
                continue
        return min(refs, key=_rank).with_digest(digest) if refs else None

    def longest_prefix(
        self,
        diff_ids: tuple[str, ...],
        *,
        platform: str,
        exclude_digest: str | None = None,
        exclude: Collection[str] = (),
        scope: Scope | None = None,
    ) -> CatalogMatch | None:
        """The catalog entry with the most layers that are a prefix of ``diff_ids``.

        Entries without layers (scratch, empty images) never match: they are a
        prefix of everything and prove nothing. ``exclude_digest``/``exclude``
        keep the image itself (and the levels already in a chain) from matching
        themselves. Ties go to the most specific tag (the longest tag string,
        then the name, for a stable answer); every tied reference is listed.
        ``scope`` keeps the search to the lookup's own catalog set (see
        :class:`Scope`); ``None`` searches every entry.
        """
        if not diff_ids:
            return None
        wanted = platform_key(platform)
        skip = set(exclude)
        if exclude_digest is not None:
            skip.add(exclude_digest)
        best: list[CatalogEntry] = []
        lengths = self._lengths.get(wanted, {})
        for length in sorted((n for n in lengths if n <= len(diff_ids)), reverse=True):
            for tag, digest in self._by_layers.get((wanted, diff_ids[:length]), ()):
                if scope is not None and tag not in scope.tags:
                    continue
                entry = self._tags[(tag, wanted)][digest]
                if digest not in skip and entry.reference.digest not in skip:
                    best.append(entry)
            if best:
                break
        if not best:
            return None
        best.sort(key=lambda e: _rank(e.reference))
        chosen = best[0]
        tied: list[Reference] = []
        for entry in best:
            if all(tag_key(r) != tag_key(entry.reference) for r in tied):
                tied.append(entry.reference)
        return CatalogMatch(chosen.reference, chosen.digest, chosen.diff_ids, tuple(tied))


    def prefixes(
        self,
        diff_ids: tuple[str, ...],
        *,
        platform: str,
        exclude: Collection[str] = (),
        scope: Scope | None = None,
    ) -> list[CatalogMatch]:
        """Every catalog base (one per length, as :meth:`longest_prefix` picks) whose layers
        are a prefix of ``diff_ids``, most layers first.

        Depth-free: it answers "which known bases is this image built on, however far
        up?" from the image's own layers, with a few dictionary lookups and no request.
        """
        out: list[CatalogMatch] = []
        remaining = diff_ids
        while remaining:
            match = self.longest_prefix(remaining, platform=platform, exclude=exclude, scope=scope)
            if match is None:
                break
            out.append(match)
            remaining = match.diff_ids[:-1]
        return out


def _digests(entry: CatalogEntry) -> set[str]:
    return {d for d in (entry.digest, entry.reference.digest) if d}


def _rank(ref: Reference) -> tuple[int, str, str]:
    """Longer tags are more specific (``3.12.3-slim`` over ``3-slim``); the name breaks ties stably."""
    return (-len(ref.tag or ""), ref.name, ref.tag or "")
