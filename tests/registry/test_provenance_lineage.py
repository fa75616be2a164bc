"""Lineage from BuildKit provenance, against the real docker-registry 2.8.2.

Each test pushes what ``docker buildx build --push`` leaves behind: a
multi-stage build (a ``golang`` builder stage, a ``debian`` runtime stage, the
``docker/dockerfile`` frontend), an index with one platform image per
architecture and one attestation manifest per platform image, no annotation
and no label. The base must come out of the provenance statement, verified by
layers, per platform.
"""

from __future__ import annotations

import json

import pytest
from support.images import layer
from support.provenance import (
    ARCHES,
    SLSA_V02,
    SLSA_V1,
    material,
    push_build,
    push_buildx_index,
    push_referrer,
    sbom,
    statement,
)
from support.registry import RegistryProcess

from controller.lineage import provenance
from controller.lineage.model import End, Lineage, PlatformLineage
from controller.lineage.resolve import LineageResolver
from controller.reference import parse
from controller.registry import media
from controller.registry.client import RegistryClient


def chain(pl: PlatformLineage) -> list[tuple[str, str, bool | None]]:
    return [
        (
            lv.reference.without_digest().normalized if lv.reference else "scratch",
            str(lv.source),
            lv.verified,
        )
        for lv in pl.levels
    ]


@pytest.fixture
def resolver(registry_client: RegistryClient) -> LineageResolver:
    return LineageResolver(registry_client)


def platforms(lineage: Lineage) -> dict[str, PlatformLineage]:
    assert lineage.failure is None, lineage.failure
    return {p.platform: p for p in lineage.platforms}


@pytest.mark.parametrize(
    ("version", "pin"),
    [(SLSA_V02, "index"), (SLSA_V1, "platform")],
    ids=["slsa-v0.2-pins-the-index", "slsa-v1-pins-the-platform-manifest"],
)
async def test_multi_stage_build_base_comes_from_provenance_per_platform(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver, version: str, pin: str
) -> None:
    build = push_build(registry, unique_repo)
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [
            (
                build.app[a],
                p,
                [
                    statement(build.app[a], build.materials(a, pin=pin), version=version),
                    sbom(build.app[a]),
                ],
            )
            for a, p in ARCHES.items()
        ],
    )

    found = platforms(await resolver.resolve(parse(f"{build.root}/app:1")))

    assert sorted(found) == ["linux/amd64", "linux/arm64/v8"]
    for arch, key in (("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8")):
        pl = found[key]
        # golang (the builder stage) and the frontend were pulled too: layers rule them out
        assert chain(pl) == [
            (f"{build.root}/app:1", "image", None),
            (f"{build.root}/debian:12-slim", "provenance", True),
        ]
        assert pl.levels[1].digest == build.debian[arch].digest
        assert pl.end is End.UNCLAIMED


async def test_a_statement_about_another_platform_is_not_used(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    build = push_build(registry, unique_repo)
    # amd64's attestation manifest carries the arm64 statement (subject = the arm64 image)
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [
            (
                build.app["amd64"],
                "linux/amd64",
                [statement(build.app["arm64"], build.materials("arm64"))],
            ),
            (
                build.app["arm64"],
                "linux/arm64/v8",
                [statement(build.app["arm64"], build.materials("arm64"))],
            ),
        ],
    )

    found = platforms(await resolver.resolve(parse(f"{build.root}/app:1")))

    assert chain(found["linux/amd64"]) == [(f"{build.root}/app:1", "image", None)]
    assert found["linux/amd64"].end is End.UNCLAIMED
    note = found["linux/amd64"].levels[0].note
    assert note.startswith("provenance not used: a statement in sha256:")
    assert note.endswith(f"is about {build.app['arm64'].digest}, not {build.app['amd64'].digest}")
    assert chain(found["linux/arm64/v8"])[1] == (f"{build.root}/debian:12-slim", "provenance", True)


async def test_statements_attached_as_referrers_with_the_fallback_tag(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    build = push_build(registry, unique_repo)
    image = registry.push_image(
        f"{unique_repo}/app", "solo", [build.layers["amd64"], layer({"solo": unique_repo})]
    )
    push_referrer(
        registry.pusher, f"{unique_repo}/app", image, [statement(image, build.materials("amd64"))]
    )

    found = platforms(await resolver.resolve(parse(image.tagged)))

    pl = found["linux/amd64"]
    assert chain(pl) == [
        (image.tagged, "image", None),
        (f"{build.root}/debian:12-slim", "provenance", True),
    ]
    assert pl.levels[1].digest == build.debian["amd64"].digest


async def test_a_contradicted_label_gives_way_to_provenance_and_the_note_says_so(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    build = push_build(registry, unique_repo)
    other = registry.push_image(f"{unique_repo}/other", "1", [layer({"other": unique_repo})])
    lying = {media.BASE_NAME: other.tagged, media.BASE_DIGEST: other.digest}
    image = registry.push_image(
        f"{unique_repo}/app",
        "labelled",
        [build.layers["amd64"], layer({"l": unique_repo})],
        labels=lying,
    )
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "2",
        [(image, "linux/amd64", [statement(image, build.materials("amd64"))])],
    )

    pl = platforms(await resolver.resolve(parse(f"{build.root}/app:2")))["linux/amd64"]

    assert chain(pl)[1] == (f"{build.root}/debian:12-slim", "provenance", True)
    assert pl.levels[1].note == (f"the label's claim {other.tagged} is contradicted by the layers")


async def test_too_many_images_in_one_build_fails_the_lookup_naming_the_bound(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    build = push_build(registry, unique_repo)
    many = [
        material(f"{build.root}/img{i}", "1", build.frontend.digest)
        for i in range(provenance.MAX_CANDIDATES + 1)
    ]
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [(build.app["amd64"], "linux/amd64", [statement(build.app["amd64"], many)])],
    )

    pl = platforms(await resolver.resolve(parse(f"{build.root}/app:1")))["linux/amd64"]

    assert pl.end is End.LOOKUP_FAILED
    assert pl.failure is not None and "MAX_CANDIDATES" in pl.failure


async def test_an_unreadable_statement_is_no_claim(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    build = push_build(registry, unique_repo)
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [(build.app["amd64"], "linux/amd64", [b"not json", json.dumps({"_type": "x"}).encode()])],
    )

    pl = platforms(await resolver.resolve(parse(f"{build.root}/app:1")))["linux/amd64"]

    assert chain(pl) == [(f"{build.root}/app:1", "image", None)]
    assert pl.end is End.UNCLAIMED
    assert "provenance not used: statement sha256:" in pl.levels[0].note
    assert "statement is not JSON" in pl.levels[0].note
    assert "not an in-toto statement" in pl.levels[0].note


async def test_an_inherited_label_gives_way_to_the_closer_base_provenance_names(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    """aspnet labels itself as built on debian (as .NET SDK images do); the app, built FROM
    aspnet with buildx, inherits that label verbatim, and its provenance names aspnet."""
    build = push_build(registry, unique_repo)
    deb = build.debian["amd64"]
    labels = {media.BASE_NAME: f"{build.root}/debian:12-slim", media.BASE_DIGEST: deb.digest}
    aspnet_layer = layer({"usr/share/dotnet": unique_repo})
    aspnet = registry.push_image(
        f"{unique_repo}/aspnet", "8.0", [build.layers["amd64"], aspnet_layer], labels=labels
    )
    app = registry.push_image(
        f"{unique_repo}/app",
        None,
        [build.layers["amd64"], aspnet_layer, layer({"app.dll": unique_repo})],
        labels=labels,
    )
    materials = [
        material(f"{build.root}/dockerfile", "1", build.frontend.digest),
        material(f"{build.root}/aspnet", "8.0", aspnet.digest),
    ]
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [(app, "linux/amd64", [statement(app, materials)])],
    )

    pl = platforms(await resolver.resolve(parse(f"{build.root}/app:1")))["linux/amd64"]

    assert chain(pl) == [
        (f"{build.root}/app:1", "image", None),
        (f"{build.root}/aspnet:8.0", "provenance", True),
        (f"{build.root}/debian:12-slim", "label", True),
    ]
    assert pl.levels[1].note == (
        f"the label names {build.root}/debian:12-slim, an ancestor further up "
        "(labels are inherited from base images)"
    )
