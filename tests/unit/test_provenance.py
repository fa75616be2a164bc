"""Reading BuildKit provenance: purls, SLSA v0.2 and v1 statements, subjects, bounds."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support.provenance import SLSA_V02, SLSA_V1, material, purl, statement

from controller.errors import LookupFailed
from controller.lineage import provenance
from controller.lineage.provenance import (
    StatementError,
    candidates,
    parse_purl,
    parse_statement,
    referrer_manifests,
    statement_layers,
)
from controller.registry.media import Platform, parse_manifest
from controller.registry.referrers import fallback_tag

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
IMG = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("uri", "reference", "platform"),
    [
        (
            "pkg:docker/alpine@3.17?platform=linux%2Famd64",
            "docker.io/library/alpine:3.17",
            "linux/amd64",
        ),
        ("pkg:docker/library/alpine@3.17", "docker.io/library/alpine:3.17", None),
        ("pkg:docker/docker/dockerfile@1", "docker.io/docker/dockerfile:1", None),
        (
            "pkg:docker/ghcr.io/org/app@v2?platform=linux%2Farm64%2Fv8",
            "ghcr.io/org/app:v2",
            "linux/arm64/v8",
        ),
        ("pkg:docker/127.0.0.1:5000/team/base@12-slim", "127.0.0.1:5000/team/base:12-slim", None),
        ("pkg:docker/127.0.0.1%3A5000/team/base@12-slim", "127.0.0.1:5000/team/base:12-slim", None),
        (f"pkg:docker/alpine@3.17?digest={D1}", f"docker.io/library/alpine:3.17@{D1}", None),
        (
            f"pkg:docker/alpine?digest={D1}&platform=linux/amd64",
            f"docker.io/library/alpine@{D1}",
            "linux/amd64",
        ),
        (f"pkg:docker/alpine@{D1.replace(':', '%3A')}", f"docker.io/library/alpine@{D1}", None),
        ("pkg:docker/alpine", "docker.io/library/alpine:latest", None),
    ],
    ids=[
        "library-short",
        "library-explicit",
        "hub-namespace",
        "other-registry",
        "host-with-port",
        "escaped-port",
        "digest-qualifier",
        "digest-only",
        "digest-version",
        "no-version",
    ],
)
def test_parse_purl(uri: str, reference: str, platform: str | None) -> None:
    ref, plat = parse_purl(uri)
    assert ref.normalized == reference
    assert plat == (Platform.parse(platform) if platform else None)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://github.com/x/y.git", "not a package URL"),
        ("pkg:npm/left-pad@1.0.0", "not a pkg:docker"),
        ("pkg:docker/@1", "names no image"),
        ("pkg:docker/Upper/Case@1", "invalid reference"),
        (f"pkg:docker/alpine@{D1}?digest={D2}", "contradicts"),
        ("pkg:docker/alpine@1?platform=linux", "bad platform"),
    ],
    ids=["git-url", "npm", "empty-name", "bad-name", "two-digests", "bad-platform"],
)
def test_parse_purl_refuses_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_purl(uri)


def frontend() -> dict[str, Any]:
    return material("docker/dockerfile", "1", D2)


@pytest.mark.parametrize("version", [SLSA_V02, SLSA_V1], ids=["slsa-v0.2", "slsa-v1"])
def test_statement_lists_every_image_the_build_pulled(version: str) -> None:
    body = statement(
        IMG,
        [frontend(), material("golang", "1.22", D1), material("alpine", "3.19", "c" * 64)],
        version=version,
    )
    st = parse_statement(json.dumps(body).encode())
    assert st is not None and st.predicate_type == version
    assert st.describes(IMG) and not st.describes(ARM)
    assert [m.reference.normalized for m in st.images] == [
        f"docker.io/docker/dockerfile:1@{D2}",
        f"docker.io/library/golang:1.22@{D1}",
        "docker.io/library/alpine:3.19@sha256:" + "c" * 64,
    ]
    assert st.images[1].platform == Platform("linux", "amd64")


def test_only_the_statements_own_subject_gets_its_candidates() -> None:
    amd = parse_statement(json.dumps(statement(IMG, [material("alpine", "3.19", D1)])).encode())
    arm = parse_statement(
        json.dumps(statement(ARM, [material("alpine", "3.19", D2, "linux/arm64")])).encode()
    )
    assert amd is not None and arm is not None
    assert [r.digest for r in candidates([arm, amd], IMG)] == [D1]
    assert [r.digest for r in candidates([arm, amd], ARM)] == [D2]
    assert candidates([arm], IMG) == ()


def test_dsse_envelope_is_unwrapped() -> None:
    inner = json.dumps(statement(IMG, [material("alpine", "3.19", D1)])).encode()
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(inner).decode(),
        "signatures": [],
    }
    st = parse_statement(json.dumps(envelope).encode())
    assert st is not None and [m.reference.digest for m in st.images] == [D1]


def test_materials_without_a_usable_digest_are_skipped_with_the_reason() -> None:
    body = statement(
        IMG,
        [
            {"uri": purl("alpine", "3.19")},  # no digest: the tag may have moved since the build
            {"uri": purl("debian", "12"), "digest": {"sha256": "not-hex"}},
            {"uri": "pkg:docker/Bad@1", "digest": {"sha256": "1" * 64}},
            material("busybox", "1.36", D1),
        ],
    )
    st = parse_statement(json.dumps(body).encode())
    assert st is not None
    assert [m.reference.normalized for m in st.images] == [f"docker.io/library/busybox:1.36@{D1}"]
    assert len(st.skipped) == 3 and "has no sha256 digest" in st.skipped[0]


def test_other_predicates_are_not_provenance() -> None:
    body = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [],
        "predicate": {},
    }
    assert parse_statement(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"_type": "something/else"}', "not an in-toto statement"),
        (b'{"payloadType": "x", "payload": "%%%"}', "DSSE payload"),
    ],
    ids=["binary", "array", "not-in-toto", "bad-dsse"],
)
def test_unreadable_statements_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(StatementError, match=reason):
        parse_statement(body)


@pytest.mark.parametrize(
    ("make", "bound"),
    [
        (lambda: b" " * (provenance.MAX_STATEMENT_BYTES + 1), "MAX_STATEMENT_BYTES"),
        (
            lambda: json.dumps(
                statement(
                    IMG, [{"uri": f"https://x/{i}"} for i in range(provenance.MAX_MATERIALS + 1)]
                )
            ).encode(),
            "MAX_MATERIALS",
        ),
        (
            lambda: json.dumps(
                statement(
                    IMG,
                    [material(f"img{i}", "1", D1) for i in range(provenance.MAX_CANDIDATES + 1)],
                )
            ).encode(),
            "MAX_CANDIDATES",
        ),
    ],
    ids=["statement-size", "materials", "candidates"],
)
def test_bounds_fail_the_lookup_naming_the_bound(make: Any, bound: str) -> None:
    with pytest.raises(LookupFailed, match=bound) as info:
        parse_statement(make())
    assert info.value.context["bound"] == bound


def _index(*entries: dict[str, Any]) -> Any:
    return parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list(entries),
            }
        ).encode(),
        None,
    )


def _manifest(layers: list[dict[str, Any]]) -> Any:
    return parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": D1,
                    "size": 2,
                },
                "layers": layers,
            }
        ).encode(),
        None,
    )


def _layer(predicate: str | None, size: int = 100) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": "application/vnd.in-toto+json", "digest": D2, "size": size}
    if predicate:
        out["annotations"] = {"in-toto.io/predicate-type": predicate}
    return out


def test_statement_layers_pass_over_sboms_and_bound_the_rest() -> None:
    kept = statement_layers(
        _manifest([_layer("https://spdx.dev/Document"), _layer(SLSA_V02), _layer(None)])
    )
    assert len(kept) == 2
    with pytest.raises(LookupFailed, match="MAX_STATEMENTS"):
        statement_layers(_manifest([_layer(SLSA_V1)] * (provenance.MAX_STATEMENTS + 1)))
    with pytest.raises(LookupFailed, match="MAX_STATEMENT_BYTES"):
        statement_layers(_manifest([_layer(SLSA_V1, size=provenance.MAX_STATEMENT_BYTES + 1)]))


def test_referrers_worth_opening() -> None:
    base = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1}
    index = _index(
        {**base, "digest": D1, "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json"},
        {
            **base,
            "digest": D2,
            "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
        },
        {**base, "digest": IMG},
        *(
            {**base, "digest": ARM, "artifactType": "application/vnd.in-toto+json"}
            for _ in range(20)
        ),
    )
    opened = referrer_manifests(index)
    assert [d.digest for d in opened[:2]] == [D2, IMG]
    assert len(opened) == provenance.MAX_REFERRERS


def test_fallback_tag() -> None:
    assert fallback_tag(D1) == "sha256-" + "1" * 64
