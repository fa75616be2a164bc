"""The catalog's layer index finds what a scan of every entry finds, through evictions.

``Catalog.longest_prefix`` looks entries up by their whole layer list instead
of scanning; the bounded catalog also evicts old digests and tags, and each
eviction must take the entry out of the index. A random history of
``remember`` calls under tiny bounds, then queries, compared with brute force.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.lineage.catalog import Catalog, is_prefix, platform_key, tag_key
from controller.reference import parse

LAYERS = [f"sha256:{c * 64}" for c in "0123456"]
DIGESTS = [f"sha256:{c * 64}" for c in "abcdef"]
REFS = [parse(t) for t in ("debian:12", "debian:bookworm", "python:3.12", "python:3.12.3-slim", "alpine")]
PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm64/v8"]

layer_lists = st.lists(st.sampled_from(LAYERS), max_size=4).map(tuple)
remembers = st.tuples(
    st.sampled_from(REFS),
    st.none() | st.sampled_from(DIGESTS),  # what the tag resolved to (an index digest)
    st.sampled_from(PLATFORMS),
    st.sampled_from(DIGESTS),
    layer_lists,
)


def brute(cat: Catalog, diff_ids: tuple[str, ...], platform: str, skip: set[str]) -> tuple[int, set[str]]:
    """(longest matching layer count, every tied entry as tag@digest) by scanning every entry."""
    wanted = platform_key(platform)
    found = [
        e
        for e in cat
        if e.platform == wanted
        and e.diff_ids
        and e.digest not in skip
        and e.reference.digest not in skip
        and is_prefix(e.diff_ids, diff_ids)
    ]
    if not found:
        return 0, set()
    longest = max(len(e.diff_ids) for e in found)
    return longest, {f"{tag_key(e.reference)}@{e.digest}" for e in found if len(e.diff_ids) == longest}


@given(
    history=st.lists(remembers, max_size=25),
    per_tag=st.integers(1, 3),
    max_tags=st.integers(1, 6),
    queries=st.lists(
        st.tuples(layer_lists, st.sampled_from(PLATFORMS), st.sets(st.sampled_from(DIGESTS), max_size=2)),
        min_size=1,
        max_size=6,
    ),
)
def test_longest_prefix_matches_a_scan_of_every_entry(
    history: list[tuple], per_tag: int, max_tags: int, queries: list[tuple]
) -> None:
    cat = Catalog(digests_per_tag=per_tag, max_tags=max_tags)
    for ref, resolved, platform, digest, layers in history:
        cat.remember(ref.with_digest(resolved) if resolved else ref, platform, digest, layers)

    for diff_ids, platform, skip in queries:
        match = cat.longest_prefix(diff_ids, platform=platform, exclude=skip)
        longest, tied = brute(cat, diff_ids, platform, skip)
        if not tied:
            assert match is None
            continue
        assert match is not None
        assert len(match.diff_ids) == longest
        assert is_prefix(match.diff_ids, diff_ids)
        assert f"{tag_key(match.reference)}@{match.digest}" in tied
        assert {tag_key(r) for r in match.tied} == {t.rsplit("@", 1)[0] for t in tied}
