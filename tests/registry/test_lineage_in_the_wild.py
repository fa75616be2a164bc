"""Shapes seen in the wild, kept working, against the real docker-registry 2.8.2.

- Docker Official Images: each platform manifest *and* its index entry carry a
  short ``base.name`` (``debian:bookworm-slim``, no registry, no ``library/``)
  and a ``base.digest`` naming the base's *platform* manifest; the base's own
  index entries say ``base.name: scratch``. Short names mean Docker Hub, which
  the test serves from the local registry configured as a ``docker.io`` mirror.
- Inherited labels copied verbatim into a child built with Docker v2 manifest
  lists (schema2 manifests): the label names the grandparent.
"""

from __future__ import annotations

import hashlib

from support.images import DOCKER, DOCKER_LIST, layer
from support.registry import RegistryProcess

from controller.lineage.model import End, PlatformLineage
from controller.lineage.resolve import LineageResolver
from controller.reference import parse
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost

ARCHES = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}


def chain(pl: PlatformLineage) -> list[tuple[str, str, bool | None]]:
    return [
        (
            lv.reference.without_digest().normalized if lv.reference else "scratch",
            str(lv.source),
            lv.verified,
        )
        for lv in pl.levels
    ]


def _variant(platform: str) -> str | None:
    parts = platform.split("/")
    return parts[2] if len(parts) == 3 else None


async def test_docker_official_images_short_names_per_platform(
    registry: RegistryProcess, unique_repo: str
) -> None:
    suffix = hashlib.sha256(unique_repo.encode()).hexdigest()[:8]
    debian_tag, python_tag = f"bookworm-slim-{suffix}", f"3.12-slim-{suffix}"
    debian, python = {}, {}
    for arch, platform in ARCHES.items():
        os_layer = layer({"etc/os-release": f"debian {arch} {suffix}"})
        debian[arch] = registry.push_image(
            "library/debian", None, [os_layer], arch=arch, variant=_variant(platform)
        )
        doi = {media.BASE_NAME: f"debian:{debian_tag}", media.BASE_DIGEST: debian[arch].digest}
        python[arch] = registry.push_image(
            "library/python",
            None,
            [os_layer, layer({"usr/local/bin/python3": f"{arch} {suffix}"})],
            arch=arch,
            variant=_variant(platform),
            annotations=doi,
        )
    registry.push_index(
        "library/debian",
        debian_tag,
        [(debian[a], p) for a, p in ARCHES.items()],
        descriptor_annotations={p: {media.BASE_NAME: "scratch"} for p in ARCHES.values()},
        attestations=True,
    )
    registry.push_index(
        "library/python",
        python_tag,
        [(python[a], p) for a, p in ARCHES.items()],
        descriptor_annotations={
            p: {media.BASE_NAME: f"debian:{debian_tag}", media.BASE_DIGEST: debian[a].digest}
            for a, p in ARCHES.items()
        },
        attestations=True,
    )
    hub = RegistryHost("docker.io", mirrors=(registry.host,))
    async with RegistryClient(
        RegistryConfig.of(hub, RegistryHost(registry.host, insecure=True))
    ) as client:
        lineage = await LineageResolver(client).resolve(parse(f"python:{python_tag}"))
        hosts = set(client.stats.by_host)

    assert lineage.failure is None, lineage.failure
    found = {p.platform: p for p in lineage.platforms}
    assert sorted(found) == ["linux/amd64", "linux/arm64/v8"]
    for arch, key in ARCHES.items():
        pl = found[key]
        assert chain(pl) == [
            (f"docker.io/library/python:{python_tag}", "image", None),
            (f"docker.io/library/debian:{debian_tag}", "annotation", True),
        ]
        assert pl.levels[1].digest == debian[arch].digest
        # base.digest named debian's platform manifest, which itself says nothing (the
        # scratch claim sits on debian's index entry): the chain ends there, unclaimed.
        assert pl.end is End.UNCLAIMED and pl.failure is None
    # Short names are Docker Hub's, and the mirror answered everything: no request left
    # for Docker Hub (a base's referrers are not asked for).
    assert hosts == {registry.host}


async def test_inherited_labels_through_docker_v2_manifest_lists(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    """python labels itself as built on debian; app copies those labels verbatim.

    Everything is Docker schema2 manifests in manifest lists, and the label's
    ``base.digest`` names debian's manifest list: the child for each platform is taken.
    """
    root = f"{registry.host}/{unique_repo}"
    debian, python, app, os_layers, py_layers = {}, {}, {}, {}, {}
    for arch, platform in ARCHES.items():
        os_layers[arch] = layer({"etc/os-release": f"debian {arch} {unique_repo}"})
        debian[arch] = registry.push_image(
            f"{unique_repo}/debian",
            None,
            [os_layers[arch]],
            arch=arch,
            variant=_variant(platform),
            media_type=DOCKER,
        )
    debian_list = registry.push_index(
        f"{unique_repo}/debian",
        "12-slim",
        [(debian[a], p) for a, p in ARCHES.items()],
        media_type=DOCKER_LIST,
    )
    labels = {media.BASE_NAME: f"{root}/debian:12-slim", media.BASE_DIGEST: debian_list.digest}
    for arch, platform in ARCHES.items():
        py_layers[arch] = layer({"usr/bin/python3": f"{arch} {unique_repo}"})
        python[arch] = registry.push_image(
            f"{unique_repo}/python",
            None,
            [os_layers[arch], py_layers[arch]],
            arch=arch,
            variant=_variant(platform),
            media_type=DOCKER,
            labels=labels,
        )
        app[arch] = registry.push_image(
            f"{unique_repo}/app",
            None,
            [os_layers[arch], py_layers[arch], layer({"app": f"{arch} {unique_repo}"})],
            arch=arch,
            variant=_variant(platform),
            media_type=DOCKER,
            labels=labels,
        )
    registry.push_index(
        f"{unique_repo}/python",
        "3.12",
        [(python[a], p) for a, p in ARCHES.items()],
        media_type=DOCKER_LIST,
    )
    registry.push_index(
        f"{unique_repo}/app", "1", [(app[a], p) for a, p in ARCHES.items()], media_type=DOCKER_LIST
    )

    lineage = await LineageResolver(registry_client).resolve(
        parse(f"{root}/app:1"), catalog=[parse(f"{root}/python:3.12")]
    )

    assert lineage.failure is None, lineage.failure
    found = {p.platform: p for p in lineage.platforms}
    for arch, key in ARCHES.items():
        pl = found[key]
        assert chain(pl) == [
            (f"{root}/app:1", "image", None),
            (f"{root}/python:3.12", "layers", True),
            (f"{root}/debian:12-slim", "label", True),
        ]
        assert pl.levels[1].note == (
            f"the label names {root}/debian:12-slim, an ancestor further up "
            "(labels are inherited from base images)"
        )
        assert [lv.digest for lv in pl.levels] == [
            app[arch].digest,
            python[arch].digest,
            debian[arch].digest,
        ]
