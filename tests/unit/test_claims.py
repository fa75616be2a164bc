"""Pure parts of lineage resolution: reading base claims, layer prefixes, platforms, the catalog."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from controller.lineage.catalog import Catalog, is_prefix
from controller.lineage.claims import (
    Claim,
    annotation_claim,
    buildinfo_claim,
    buildpacks_claim,
    check_layers,
    read_claim,
)
from controller.lineage.model import Source
from controller.lineage.platforms import platform_entries, platform_wanted, select_child
from controller.reference import parse
from controller.registry.media import ImageConfig, Platform, parse_config, parse_manifest

NAME = "org.opencontainers.image.base.name"
DIGEST = "org.opencontainers.image.base.digest"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
L = ["sha256:" + c * 64 for c in "abcdef"]


def config(labels: dict[str, str] | None = None, **top: Any) -> ImageConfig:
    body = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": L[:2]},
        **top,
    }
    return parse_config(json.dumps(body).encode())


def claimed(claim: Claim | None) -> tuple[str, list[str], str | None, bool] | None:
    """What a user would read: source, normalized candidates, bare digest, scratch."""
    if claim is None:
        return None
    return (
        str(claim.source),
        [c.normalized for c in claim.candidates],
        claim.digest,
        claim.scratch,
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({NAME: "alpine:3.18"}, ("annotation", ["docker.io/library/alpine:3.18"], None, False)),
        (
            {NAME: "alpine:3.18", DIGEST: D1},
            ("annotation", [f"docker.io/library/alpine:3.18@{D1}"], None, False),
        ),
        (
            {NAME: "ghcr.io/acme/base:1@" + D2, DIGEST: D1},
            ("annotation", [f"ghcr.io/acme/base:1@{D1}"], None, False),
        ),
        (
            {NAME: "ghcr.io/acme/base@" + D2},
            ("annotation", [f"ghcr.io/acme/base@{D2}"], None, False),
        ),
        ({NAME: "python"}, ("annotation", ["docker.io/library/python:latest"], None, False)),
        ({NAME: "scratch"}, ("annotation", [], None, True)),
        ({NAME: "Scratch", DIGEST: D1}, ("annotation", [], None, True)),
        ({DIGEST: D1}, ("annotation", [], D1, False)),
        ({NAME: "Not A Name!", DIGEST: D1}, ("annotation", [], D1, False)),
        (
            {NAME: "alpine:3.18", DIGEST: "sha256:short"},
            ("annotation", ["docker.io/library/alpine:3.18"], None, False),
        ),
        ({NAME: "Not A Name!"}, None),
        ({NAME: "  "}, None),
        ({}, None),
    ],
    ids=[
        "short-name-normalized",
        "name-and-digest",
        "digest-key-wins-over-name-digest",
        "name-with-digest",
        "no-tag-means-latest",
        "scratch",
        "scratch-any-case-ignores-digest",
        "digest-only",
        "bad-name-keeps-digest",
        "bad-digest-dropped",
        "bad-name-no-claim",
        "blank-name",
        "nothing",
    ],
)
def test_annotation_claim(values: dict[str, str], expected: Any) -> None:
    assert claimed(annotation_claim(values, Source.ANNOTATION)) == expected


def _buildinfo(sources: list[dict[str, str]]) -> str:
    return base64.b64encode(
        json.dumps({"frontend": "dockerfile.v0", "sources": sources}).encode()
    ).decode()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {
                "manifest_annotations": {NAME: "debian:12"},
                "descriptor_annotations": {NAME: "debian:11"},
                "index_annotations": {NAME: "debian:10"},
                "config": config({NAME: "debian:9"}),
            },
            ("annotation", ["docker.io/library/debian:12"], None, False),
        ),
        (
            {
                "manifest_annotations": {"org.opencontainers.image.version": "1"},
                "descriptor_annotations": {NAME: "debian:11"},
                "index_annotations": {NAME: "debian:10"},
                "config": config({NAME: "debian:9"}),
            },
            ("index-annotation", ["docker.io/library/debian:11"], None, False),
        ),
        (
            {
                "manifest_annotations": {},
                "index_annotations": {NAME: "debian:10"},
                "config": config({NAME: "debian:9"}),
            },
            ("index-annotation", ["docker.io/library/debian:10"], None, False),
        ),
        (
            {"manifest_annotations": {}, "config": config({NAME: "debian:9", DIGEST: D1})},
            ("label", [f"docker.io/library/debian:9@{D1}"], None, False),
        ),
        (
            {"manifest_annotations": {NAME: "!!bad"}, "config": config({NAME: "debian:9"})},
            ("label", ["docker.io/library/debian:9"], None, False),
        ),
        (
            {"manifest_annotations": {}, "descriptor_annotations": {NAME: "scratch"}},
            ("index-annotation", [], None, True),
        ),
        (
            {
                "manifest_annotations": {},
                "config": config(
                    {
                        "io.buildpacks.lifecycle.metadata": json.dumps(
                            {
                                "runImage": {
                                    "topLayer": L[0],
                                    "reference": f"index.docker.io/paketobuildpacks/run@{D2}",
                                    "image": "paketobuildpacks/run:base-cnb",
                                },
                                "stack": {"runImage": {"image": "paketobuildpacks/run:base-cnb"}},
                            }
                        ),
                        # a buildinfo label loses to the Buildpacks metadata
                        "moby.buildkit.buildinfo.v1": _buildinfo(
                            [
                                {
                                    "type": "docker-image",
                                    "ref": "docker.io/library/alpine:3",
                                    "pin": D1,
                                }
                            ]
                        ),
                    }
                ),
            },
            ("buildpacks", [f"docker.io/paketobuildpacks/run:base-cnb@{D2}"], None, False),
        ),
        (
            {
                "manifest_annotations": {},
                "config": config(
                    {
                        "io.buildpacks.lifecycle.metadata": json.dumps(
                            {"stack": {"runImage": {"image": "cnbs/sample-stack-run:bionic"}}}
                        )
                    }
                ),
            },
            ("buildpacks", ["docker.io/cnbs/sample-stack-run:bionic"], None, False),
        ),
        (
            {
                "manifest_annotations": {},
                "config": config(
                    {
                        "moby.buildkit.buildinfo.v1": _buildinfo(
                            [
                                {
                                    "type": "docker-image",
                                    "ref": "docker.io/library/alpine:3.18",
                                    "pin": D1,
                                }
                            ]
                        )
                    }
                ),
            },
            ("buildinfo", [f"docker.io/library/alpine:3.18@{D1}"], None, False),
        ),
        (
            {
                "manifest_annotations": {},
                "config": config(
                    **{
                        "moby.buildkit.buildinfo.v1": _buildinfo(
                            [
                                {"type": "git", "ref": "https://github.com/acme/app.git#main"},
                                {
                                    "type": "docker-image",
                                    "ref": "docker.io/library/golang:1.21",
                                    "pin": D1,
                                },
                                {
                                    "type": "docker-image",
                                    "ref": "docker.io/library/alpine:3.18",
                                    "pin": D2,
                                },
                            ]
                        )
                    }
                ),
            },
            (
                "buildinfo",
                [f"docker.io/library/golang:1.21@{D1}", f"docker.io/library/alpine:3.18@{D2}"],
                None,
                False,
            ),
        ),
        (
            {
                "manifest_annotations": {},
                "config": config({"moby.buildkit.buildinfo.v1": "%%% not base64"}),
            },
            None,
        ),
        (
            {
                "manifest_annotations": {},
                "config": config({"io.buildpacks.lifecycle.metadata": "{not json"}),
            },
            None,
        ),
        ({"manifest_annotations": {}, "config": config({"maintainer": "someone"})}, None),
        ({"manifest_annotations": {}}, None),
    ],
    ids=[
        "manifest-annotation-first",
        "descriptor-before-index",
        "index-annotation",
        "label",
        "unusable-annotation-falls-through",
        "scratch-on-descriptor",
        "buildpacks-run-image-pinned",
        "buildpacks-stack-run-image",
        "buildinfo-label",
        "buildinfo-config-field-multi-stage",
        "buildinfo-garbage",
        "buildpacks-garbage",
        "unrelated-labels",
        "nothing-at-all",
    ],
)
def test_read_claim_order_and_sources(kwargs: dict[str, Any], expected: Any) -> None:
    assert claimed(read_claim(**kwargs)) == expected


def test_buildpacks_daemon_image_id_is_not_a_pin() -> None:
    labels = {
        "io.buildpacks.lifecycle.metadata": json.dumps(
            {"runImage": {"reference": D1, "image": "cnbs/run:bionic"}}
        )
    }
    assert claimed(buildpacks_claim(labels)) == (
        "buildpacks",
        ["docker.io/cnbs/run:bionic"],
        None,
        False,
    )


def test_buildinfo_without_images_is_no_claim() -> None:
    cfg = config(
        {"moby.buildkit.buildinfo.v1": _buildinfo([{"type": "http", "ref": "https://x/y"}])}
    )
    assert buildinfo_claim(cfg) is None


def test_claim_described_for_messages() -> None:
    claim = annotation_claim({NAME: "debian:12-slim", DIGEST: D1}, Source.LABEL)
    assert claim is not None
    assert claim.described == "docker.io/library/debian:12-slim (label)"


@pytest.mark.parametrize(
    ("base", "child", "verified", "note"),
    [
        (L[:1], L[:3], True, ""),
        (L[:3], L[:3], True, ""),
        (
            L[1:2],
            L[:3],
            False,
            "claimed base docker.io/library/debian:12 (label) is not a layer prefix of the image",
        ),
        (
            L[:4],
            L[:3],
            False,
            "claimed base docker.io/library/debian:12 (label) is not a layer prefix of the image",
        ),
        (
            L[:2],
            L[5:6],
            None,
            "claimed base docker.io/library/debian:12 (label) cannot be checked: the image has a single layer (squashed?)",
        ),
        (
            (),
            L[:3],
            None,
            "claimed base docker.io/library/debian:12 (label) has no layers, so layers cannot confirm it",
        ),
    ],
    ids=[
        "strict-prefix",
        "zero-own-layers",
        "not-a-prefix",
        "base-longer",
        "squashed",
        "empty-base",
    ],
)
def test_check_layers(base: list[str], child: list[str], verified: bool | None, note: str) -> None:
    claim = Claim(Source.LABEL, (parse("debian:12"),))
    check = check_layers(tuple(base), tuple(child), claim=claim, base_ref=parse(f"debian:12@{D1}"))
    assert (check.verified, check.note) == (verified, note)


@pytest.mark.parametrize(
    ("base", "child", "expected"),
    [
        ((), (), True),
        ((), ("a",), True),
        (("a",), ("a", "b"), True),
        (("b",), ("a", "b"), False),
        (("a", "b"), ("a",), False),
    ],
    ids=["empty-empty", "empty-prefixes-all", "prefix", "other-first", "longer"],
)
def test_is_prefix(base: tuple[str, ...], child: tuple[str, ...], expected: bool) -> None:
    assert is_prefix(base, child) is expected


INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": D1,
            "size": 1,
            "platform": {"os": "linux", "architecture": "amd64"},
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": D2,
            "size": 1,
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": D3,
            "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": D1,
            },
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "4" * 64,
            "size": 1,
            "platform": {"os": "linux", "architecture": "s390x"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        },
        {
            "mediaType": "application/vnd.example.unknown+json",
            "digest": "sha256:" + "5" * 64,
            "size": 1,
        },
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": "sha256:" + "6" * 64,
            "size": 1,
        },
    ],
}


def test_platform_entries_skip_attestations_and_unknown_types() -> None:
    index = parse_manifest(json.dumps(INDEX).encode(), None)
    manifests, nested = platform_entries(index)  # type: ignore[arg-type]
    assert [(d.digest, str(d.platform)) for d in manifests] == [
        (D1, "linux/amd64"),
        (D2, "linux/arm64/v8"),
    ]
    assert [d.digest for d in nested] == ["sha256:" + "6" * 64]


@pytest.mark.parametrize(
    ("platform", "wanted", "expected"),
    [
        ("linux/arm64/v8", ["linux/arm64"], True),
        ("linux/arm64", ["linux/arm64/v8"], True),
        ("linux/arm", ["linux/arm/v7"], True),
        ("linux/arm/v6", ["linux/arm"], False),
        ("linux/amd64", ["linux/arm64"], False),
        ("linux/amd64", None, True),
        (None, ["linux/amd64"], False),
    ],
    ids=[
        "arm64-v8",
        "v8-arm64",
        "arm-v7-default",
        "arm-v6",
        "other-arch",
        "no-filter",
        "no-platform",
    ],
)
def test_platform_wanted(platform: str | None, wanted: list[str] | None, expected: bool) -> None:
    p = Platform.parse(platform) if platform else None
    assert platform_wanted(p, wanted) is expected


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("linux/arm64", D2),
        ("linux/amd64", D1),
        ("linux/amd64/v3", D1),
        ("linux/riscv64", None),
        ("unknown/unknown", None),
    ],
    ids=["arm64-matches-v8", "exact", "variant-falls-back-to-arch", "missing", "never-attestation"],
)
def test_select_child(platform: str, expected: str | None) -> None:
    index = parse_manifest(json.dumps(INDEX).encode(), None)
    chosen = select_child(index.manifests, Platform.parse(platform))  # type: ignore[union-attr]
    assert (chosen.digest if chosen else None) == expected


# --------------------------------------------------------------------------- catalog


def _catalog() -> Catalog:
    cat = Catalog()
    cat.remember(parse("debian:12-slim@" + D1), "linux/amd64", "sha256:" + "a1" * 32, (L[0],))
    cat.remember(parse("debian:bookworm-slim@" + D1), "linux/amd64", "sha256:" + "a1" * 32, (L[0],))
    cat.remember(
        parse("python:3.12-slim@" + D2), "linux/amd64", "sha256:" + "b1" * 32, (L[0], L[1])
    )
    cat.remember(
        parse("python:3.12.3-slim@" + D2), "linux/amd64", "sha256:" + "b1" * 32, (L[0], L[1])
    )
    cat.remember(
        parse("python:3.12-slim@" + D2), "linux/arm64/v8", "sha256:" + "c1" * 32, (L[2], L[3])
    )
    cat.remember(parse("busybox:empty"), "linux/amd64", "sha256:" + "e0" * 32, ())
    return cat


@pytest.mark.parametrize(
    ("diff_ids", "platform", "exclude", "expected"),
    [
        (
            L[:3],
            "linux/amd64",
            (),
            ("docker.io/library/python:3.12.3-slim@" + D2, ["3.12.3-slim", "3.12-slim"]),
        ),
        (
            L[:2],
            "linux/amd64",
            (),
            ("docker.io/library/python:3.12.3-slim@" + D2, ["3.12.3-slim", "3.12-slim"]),
        ),
        (
            L[:2],
            "linux/amd64",
            ("sha256:" + "b1" * 32,),
            ("docker.io/library/debian:bookworm-slim@" + D1, ["bookworm-slim", "12-slim"]),
        ),
        (
            L[:2],
            "linux/amd64",
            (D2,),
            ("docker.io/library/debian:bookworm-slim@" + D1, ["bookworm-slim", "12-slim"]),
        ),
        (
            (L[0], L[4]),
            "linux/amd64",
            (),
            ("docker.io/library/debian:bookworm-slim@" + D1, ["bookworm-slim", "12-slim"]),
        ),
        (L[2:5], "linux/arm64", (), ("docker.io/library/python:3.12-slim@" + D2, ["3.12-slim"])),
        (L[2:5], "linux/amd64", (), None),
        (L[4:], "linux/amd64", (), None),
        ((), "linux/amd64", (), None),
    ],
    ids=[
        "longest-wins-most-specific-tag",
        "equal-length-is-a-match",
        "exclude-platform-digest",
        "exclude-index-digest",
        "shorter-prefix",
        "per-platform-normalized",
        "other-platform-never",
        "no-match-scratch-never-matches",
        "empty-image",
    ],
)
def test_catalog_longest_prefix(
    diff_ids: list[str], platform: str, exclude: tuple[str, ...], expected: Any
) -> None:
    match = _catalog().longest_prefix(tuple(diff_ids), platform=platform, exclude=exclude)
    if expected is None:
        assert match is None
        return
    assert match is not None
    assert (match.reference.normalized, [r.tag for r in match.tied]) == expected


def test_catalog_exclude_digest_keyword() -> None:
    match = _catalog().longest_prefix(
        tuple(L[:2]), platform="linux/amd64", exclude_digest="sha256:" + "b1" * 32
    )
    assert match is not None and match.reference.tag == "bookworm-slim"
    assert [r.tag for r in match.others] == ["12-slim"]


def test_catalog_names_digests() -> None:
    cat = _catalog()
    assert str(cat.name_of(D2)) == "docker.io/library/python:3.12.3-slim@" + D2
    assert (
        str(cat.name_of("sha256:" + "c1" * 32))
        == "docker.io/library/python:3.12-slim@sha256:" + "c1" * 32
    )
    assert cat.name_of(D3) is None
    assert cat.knows(parse("python:3.12-slim"), D2)
    assert not cat.knows(parse("python:3.13-slim"), D2)


def test_catalog_keeps_history_and_is_bounded() -> None:
    cat = Catalog(digests_per_tag=2)
    ref = parse("debian:12-slim")
    for i, c in enumerate("123"):
        cat.remember(
            ref.with_digest("sha256:" + c * 64), "linux/amd64", "sha256:" + c * 64, (L[i],)
        )
    assert len(cat) == 2
    # the oldest digest was evicted, with its layers and its name
    assert cat.longest_prefix((L[0],), platform="linux/amd64") is None
    assert cat.name_of("sha256:" + "1" * 64) is None
    # older digests of the tag still match: that is the history
    match = cat.longest_prefix((L[1], L[5]), platform="linux/amd64")
    assert match is not None and match.digest == "sha256:" + "2" * 64
    # touching a digest makes it the most recently seen, so the next eviction spares it
    cat.touch(ref, "sha256:" + "2" * 64)
    cat.remember(
        ref.with_digest("sha256:" + "4" * 64), "linux/amd64", "sha256:" + "4" * 64, (L[3],)
    )
    assert cat.name_of("sha256:" + "2" * 64) is not None
    assert cat.name_of("sha256:" + "3" * 64) is None


def test_catalog_bounds_tags() -> None:
    cat = Catalog(max_tags=1)
    cat.remember(parse("a:1"), "linux/amd64", D1, (L[0],))
    assert cat.has(parse("a:1")) and not cat.has(parse("a:2"))
    cat.remember(parse("b:1"), "linux/amd64", D2, (L[1],))
    assert [str(e.reference) for e in cat] == [f"docker.io/library/b:1@{D2}"]
    assert cat.name_of(D1) is None
    assert not cat.has(parse("a:1")) and cat.has(parse("b:1@" + D3))


def _sources(count: int, *, distinct: bool = True) -> list[dict[str, str]]:
    return [
        {"type": "docker-image", "ref": f"docker.io/library/img{i if distinct else 0}:1", "pin": D1}
        for i in range(count)
    ]


def test_buildinfo_reading_stops_at_the_first_candidate_past_the_bound() -> None:
    claim = buildinfo_claim(config(**{"moby.buildkit.buildinfo.v1": _buildinfo(_sources(40))}))
    assert claim is not None and len(claim.candidates) == 32
    assert claim.exceeded == (
        "its BuildKit buildinfo records more than 32 candidate base images "
        "(max_candidates_per_claim = 32)"
    )
    small = buildinfo_claim(
        config(**{"moby.buildkit.buildinfo.v1": _buildinfo(_sources(40))}), max_candidates=40
    )
    assert small is not None and small.exceeded is None and len(small.candidates) == 40


def test_buildinfo_duplicates_are_one_candidate() -> None:
    claim = buildinfo_claim(
        config(**{"moby.buildkit.buildinfo.v1": _buildinfo(_sources(300, distinct=False))})
    )
    assert claim is not None and claim.exceeded is None
    assert [c.normalized for c in claim.candidates] == [f"docker.io/library/img0:1@{D1}"]


def test_a_buildinfo_record_too_large_to_read_is_not_decoded() -> None:
    raw = _buildinfo(_sources(2_000))
    claim = buildinfo_claim(config(**{"moby.buildkit.buildinfo.v1": raw}))
    assert claim == Claim(
        Source.BUILDINFO,
        exceeded=f"its BuildKit buildinfo record is {len(raw)} bytes, over the 65536 bytes baseguard reads",
    )


def test_catalog_bound_evicts_tenants_tags_before_the_cluster_policies() -> None:
    """A namespaced policy naming many catalog tags cannot push a cluster base's history out:
    when the catalog is full, what no cluster policy names goes first."""
    cat = Catalog(max_tags=2)
    cluster = parse("python:3.8-slim")
    cat.share([cluster])
    cat.remember(cluster.with_digest(D1), "linux/amd64", D1, (L[0],))
    for i in range(5):
        tenant = parse(f"ghcr.io/evil/flood:{i}")
        cat.remember(tenant.with_digest(D2), "linux/amd64", D2, (L[1],))
    assert cat.has(cluster)
    assert cat.has(parse("ghcr.io/evil/flood:4")) and not cat.has(parse("ghcr.io/evil/flood:0"))
    match = cat.longest_prefix((L[0], L[5]), platform="linux/amd64")
    assert match is not None and match.reference.tag == "3.8-slim"
