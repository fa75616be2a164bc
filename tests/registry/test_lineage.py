"""Lineage resolution against a real docker-registry 2.8.2: claims checked by layers.

Each test pushes its own small family under a unique repository — a
debian-like base, a python-like image built on it, an app built on python —
with the annotations and labels that test is about, then resolves the app.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from support.images import Layer, Pushed, layer
from support.registry import RegistryProcess, free_port

from controller.lineage.model import End, Level, Lineage, PlatformLineage
from controller.lineage.resolve import LineageResolver
from controller.reference import Reference, parse
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost

NAME, DIGEST = media.BASE_NAME, media.BASE_DIGEST


def claim(pushed: Pushed, *, pinned: bool = True, tag: str | None = None) -> dict[str, str]:
    """``base.name`` (+ ``base.digest``) annotations/labels naming ``pushed``."""
    name = f"{pushed.host}/{pushed.repository}:{tag or pushed.tag}"
    return {NAME: name, DIGEST: pushed.digest} if pinned else {NAME: name}


def short(level: Level) -> str:
    """A level's name without the digest: what a reader scans for."""
    return "scratch" if level.reference is None else level.reference.without_digest().normalized


def chain(pl: PlatformLineage) -> list[tuple[str, str, bool | None]]:
    return [(short(lv), str(lv.source), lv.verified) for lv in pl.levels]


def only(lineage: Lineage) -> PlatformLineage:
    assert lineage.failure is None, lineage.failure
    assert len(lineage.platforms) == 1, lineage.platforms
    return lineage.platforms[0]


@dataclass
class Layers:
    debian: Layer
    python: Layer
    app: Layer
    other: Layer


@dataclass
class Family:
    root: str  # host/repo prefix
    debian: Pushed
    python: Pushed
    app: Pushed

    def ref(self, name: str, tag: str) -> Reference:
        return parse(f"{self.root}/{name}:{tag}")


def layers_for(repo: str) -> Layers:
    """Layers unique to the test, so no test can match another's."""
    return Layers(
        layer({"etc/os-release": f"ID=debian {repo}\n"}),
        layer({"usr/bin/python3": f"python {repo}\n"}),
        layer({"app/main.py": f"print({repo!r})\n"}),
        layer({"etc/os-release": f"ID=other {repo}\n"}),
    )


def push_family(
    registry: RegistryProcess,
    repo: str,
    *,
    debian: dict[str, Any] | None = None,
    python: dict[str, Any] | None = None,
    app: dict[str, Any] | None = None,
    app_layers: list[Layer] | None = None,
) -> Family:
    """debian:12-slim ← python:3.12 ← app:1; ``python``/``app`` may be callables of the earlier images."""
    lay = layers_for(repo)
    deb = registry.push_image(
        f"{repo}/debian", "12-slim", [lay.debian], created="2024-01-01T00:00:00Z", **(debian or {})
    )
    py_kwargs = python(deb) if callable(python) else (python or {})
    py = registry.push_image(
        f"{repo}/python",
        "3.12",
        [lay.debian, lay.python],
        created="2024-02-01T00:00:00Z",
        **py_kwargs,
    )
    app_kwargs = app(deb, py) if callable(app) else (app or {})
    application = registry.push_image(
        f"{repo}/app", "1", app_layers or [lay.debian, lay.python, lay.app], **app_kwargs
    )
    return Family(f"{registry.host}/{repo}", deb, py, application)


@pytest.fixture
def resolver(registry_client: RegistryClient) -> LineageResolver:
    return LineageResolver(registry_client)


# --------------------------------------------------------------------------- claims


async def test_annotation_claims_verified_up_to_scratch(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(
        registry,
        unique_repo,
        debian={"annotations": {NAME: "scratch"}},
        python=lambda deb: {"annotations": claim(deb)},
        app=lambda deb, py: {"annotations": claim(py)},
    )

    lineage = await resolver.resolve(fam.ref("app", "1"))

    assert lineage.digest == fam.app.digest
    pl = only(lineage)
    assert pl.platform == "linux/amd64"
    assert chain(pl) == [
        (f"{fam.root}/app:1", "image", None),
        (f"{fam.root}/python:3.12", "annotation", True),
        (f"{fam.root}/debian:12-slim", "annotation", True),
    ]
    assert pl.end is End.SCRATCH and pl.base_known
    assert [lv.digest for lv in pl.levels] == [fam.app.digest, fam.python.digest, fam.debian.digest]
    assert [lv.created.isoformat() if lv.created else None for lv in pl.levels] == [
        "2024-01-01T00:00:00+00:00",
        "2024-02-01T00:00:00+00:00",
        "2024-01-01T00:00:00+00:00",
    ]
    assert all(lv.moved_to is None and lv.note == "" for lv in pl.levels)


async def test_label_claim_by_tag_is_verified_and_named_with_its_digest(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(
        registry, unique_repo, app=lambda deb, py: {"labels": claim(py, pinned=False)}
    )

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1))

    assert chain(pl) == [
        (f"{fam.root}/app:1", "image", None),
        (f"{fam.root}/python:3.12", "label", True),
    ]
    assert pl.levels[1].reference == fam.ref("python", "3.12").with_digest(fam.python.digest)
    # python itself claims nothing: the chain could not go further even without the depth cut
    assert pl.end is End.UNCLAIMED


async def test_lying_label_is_contradicted(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    lay = layers_for(unique_repo)
    other = registry.push_image(f"{unique_repo}/other", "12", [lay.other])
    fam = push_family(registry, unique_repo, app={"labels": claim(other)})

    pl = only(await resolver.resolve(fam.ref("app", "1")))

    assert chain(pl)[1] == (f"{fam.root}/other:12", "label", False)
    assert pl.levels[1].note == (
        f"claimed base {fam.root}/other:12 (label) is not a layer prefix of the image"
    )


@pytest.mark.parametrize(
    ("catalog", "expected", "note"),
    [
        (
            ["python:3.12"],
            [
                ("app:1", "image", None),
                ("python:3.12", "layers", True),
                ("debian:12-slim", "label", True),
            ],
            "the label names {root}/debian:12-slim, an ancestor further up (labels are inherited from base images)",
        ),
        ([], [("app:1", "image", None), ("debian:12-slim", "label", True)], ""),
    ],
    ids=["catalog-finds-the-skipped-level", "without-catalog-the-label-is-all-we-have"],
)
async def test_inherited_label_skipping_a_level(
    registry: RegistryProcess,
    unique_repo: str,
    resolver: LineageResolver,
    catalog: list[str],
    expected: list[tuple[str, str, bool | None]],
    note: str,
) -> None:
    # python says (by label) it is built on debian; app inherits that label unchanged.
    fam = push_family(
        registry,
        unique_repo,
        python=lambda deb: {"labels": claim(deb)},
        app=lambda deb, py: {"labels": claim(deb)},
    )

    pl = only(
        await resolver.resolve(
            fam.ref("app", "1"),
            catalog=[fam.ref(c.split(":")[0], c.split(":")[1]) for c in catalog],
        )
    )

    assert chain(pl) == [(f"{fam.root}/{n}", s, v) for n, s, v in expected]
    assert pl.levels[1].note == note.format(root=fam.root)


async def test_buildinfo_picks_the_source_that_is_a_layer_prefix(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    builder = registry.push_image(
        f"{unique_repo}/golang", "1.21", [layer({"usr/local/go": unique_repo})]
    )

    def buildinfo(deb: Pushed, py: Pushed) -> dict[str, Any]:
        sources = [
            {
                "type": "docker-image",
                "ref": f"{builder.host}/{builder.repository}:1.21",
                "pin": builder.digest,
            },
            {"type": "docker-image", "ref": f"{py.host}/{py.repository}:3.12", "pin": py.digest},
        ]
        info = base64.b64encode(json.dumps({"sources": sources}).encode()).decode()
        return {"config_extra": {"moby.buildkit.buildinfo.v1": info}}

    fam = push_family(registry, unique_repo, app=buildinfo)

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1))

    assert chain(pl)[1] == (f"{fam.root}/python:3.12", "buildinfo", True)
    assert pl.levels[1].digest == fam.python.digest


async def test_squashed_image_claim_is_unverifiable(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    squashed = layer(
        {"etc/os-release": "ID=debian\n", "usr/bin/python3": "python\n", "app/main.py": "1\n"}
    )
    fam = push_family(
        registry, unique_repo, app=lambda deb, py: {"annotations": claim(py)}, app_layers=[squashed]
    )

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1))

    assert chain(pl)[1] == (f"{fam.root}/python:3.12", "annotation", None)
    assert pl.levels[1].note == (
        f"claimed base {fam.root}/python:3.12 (annotation) cannot be checked: "
        "the image has a single layer (squashed?)"
    )


async def test_claim_naming_the_image_itself_is_ignored(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    repo = f"{unique_repo}/app"
    fam = push_family(
        registry, unique_repo, app={"annotations": {NAME: f"{registry.host}/{repo}:1"}}
    )

    pl = only(await resolver.resolve(fam.ref("app", "1")))

    assert chain(pl) == [(f"{fam.root}/app:1", "image", None)]
    assert pl.end is End.UNCLAIMED
    assert pl.levels[0].note == (
        f"claimed base {fam.root}/app:1 (annotation) is this image or one below it: ignored"
    )


@pytest.mark.parametrize("with_catalog", [True, False], ids=["named-by-catalog", "unnamed"])
async def test_digest_only_claim(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver, with_catalog: bool
) -> None:
    fam = push_family(
        registry, unique_repo, app=lambda deb, py: {"annotations": {DIGEST: py.digest}}
    )
    catalog = [fam.ref("python", "3.12")] if with_catalog else []

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1, catalog=catalog))

    if with_catalog:
        assert chain(pl)[1] == (f"{fam.root}/python:3.12", "annotation", True)
        assert pl.levels[0].note == ""
    else:
        assert chain(pl) == [(f"{fam.root}/app:1", "image", None)]
        assert pl.end is End.UNCLAIMED and not pl.base_known
        assert pl.levels[0].note == (
            f"claims base {fam.python.digest} (annotation) without a name, "
            "and no catalog base has that digest"
        )


# --------------------------------------------------------------------------- detection by layers


async def test_no_claim_detected_by_catalog_layers(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo)
    # the same python image under a more specific tag: the match names it and lists the other
    registry.push_manifest(
        f"{unique_repo}/python", "3.12.1", fam.python.body, fam.python.media_type
    )
    catalog = [fam.ref("python", "3.12"), fam.ref("python", "3.12.1"), fam.ref("debian", "12-slim")]

    pl = only(await resolver.resolve(fam.ref("app", "1"), catalog=catalog))

    assert chain(pl) == [
        (f"{fam.root}/app:1", "image", None),
        (f"{fam.root}/python:3.12.1", "layers", True),
        (f"{fam.root}/debian:12-slim", "layers", True),
    ]
    assert pl.levels[1].note == f"the same layers as {fam.root}/python:3.12"
    assert pl.end is End.KNOWN_BASE
    assert [lv.digest for lv in pl.levels] == [fam.app.digest, fam.python.digest, fam.debian.digest]


async def test_catalog_image_itself_is_a_known_base(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo)

    pl = only(
        await resolver.resolve(fam.ref("debian", "12-slim"), catalog=[fam.ref("debian", "12-slim")])
    )

    assert chain(pl) == [(f"{fam.root}/debian:12-slim", "image", None)]
    assert pl.end is End.KNOWN_BASE and pl.base_known


async def test_no_claim_no_catalog_is_unclaimed(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo)

    pl = only(await resolver.resolve(fam.ref("app", "1")))

    assert chain(pl) == [(f"{fam.root}/app:1", "image", None)]
    assert pl.end is End.UNCLAIMED and not pl.base_known


async def test_catalog_remembers_every_digest_a_tag_had(
    registry: RegistryProcess, unique_repo: str, make_client: Any
) -> None:
    """An app built on last week's python is still detected after python:3.12 moved on."""
    fam = push_family(registry, unique_repo)
    catalog = [fam.ref("python", "3.12")]
    resolver = LineageResolver(make_client(registry))
    assert await resolver.refresh_catalog(catalog) == {}
    # python:3.12 is rebuilt and re-pushed under the same tag; a client past the tag TTL sees it
    lay = layers_for(unique_repo)
    new = registry.push_image(
        f"{unique_repo}/python", "3.12", [lay.debian, layer({"usr/bin/python3": "3.12.9"})]
    )
    fresh = LineageResolver(make_client(registry), catalog=resolver.catalog)
    assert await fresh.refresh_catalog(catalog) == {}  # what the operator's timer does

    pl = only(await fresh.resolve(fam.ref("app", "1"), max_depth=1, catalog=catalog))

    assert chain(pl)[1] == (f"{fam.root}/python:3.12", "layers", True)
    assert pl.levels[1].digest == fam.python.digest
    assert pl.levels[1].moved_to == new.digest
    assert len(resolver.catalog) == 2  # both digests of python:3.12 are remembered


async def test_catalog_failures_do_not_stop_other_entries(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo)
    missing = fam.ref("python", "does-not-exist")

    failures = await resolver.refresh_catalog([missing, fam.ref("python", "3.12")])

    assert list(failures) == [missing.normalized]
    assert "MANIFEST_UNKNOWN" in failures[missing.normalized]
    assert [e.digest for e in resolver.catalog] == [fam.python.digest]


# --------------------------------------------------------------------------- platforms


@dataclass
class MultiArch:
    root: str
    debian: dict[str, Pushed]
    python: dict[str, Pushed]
    app: dict[str, Pushed]
    app_index: Pushed


def push_multi_arch(registry: RegistryProcess, repo: str) -> MultiArch:
    """debian and python as indexes (amd64, arm64/v8); python's children pin debian's *index*.

    The app index carries BuildKit attestation entries (unknown/unknown).
    """
    arches = {"amd64": None, "arm64": "v8"}
    deb, py, app = {}, {}, {}
    for arch, variant in arches.items():
        base = layer({"etc/os-release": f"debian {arch} {repo}"})
        deb[arch] = registry.push_image(f"{repo}/debian", None, [base], arch=arch, variant=variant)
    deb_index = registry.push_index(
        f"{repo}/debian",
        "12-slim",
        [(deb["amd64"], "linux/amd64"), (deb["arm64"], "linux/arm64/v8")],
    )
    for arch, variant in arches.items():
        layers = [
            layer({"etc/os-release": f"debian {arch} {repo}"}),
            layer({"py": f"{arch} {repo}"}),
        ]
        py[arch] = registry.push_image(
            f"{repo}/python", None, layers, arch=arch, variant=variant, annotations=claim(deb_index)
        )
    py_index = registry.push_index(
        f"{repo}/python", "3.12", [(py["amd64"], "linux/amd64"), (py["arm64"], "linux/arm64/v8")]
    )
    for arch, variant in arches.items():
        layers = [
            layer({"etc/os-release": f"debian {arch} {repo}"}),
            layer({"py": f"{arch} {repo}"}),
            layer({"app": f"{arch} {repo}"}),
        ]
        app[arch] = registry.push_image(f"{repo}/app", None, layers, arch=arch, variant=variant)
    app_index = registry.push_index(
        f"{repo}/app",
        "1",
        [(app["amd64"], "linux/amd64"), (app["arm64"], "linux/arm64/v8")],
        # the index descriptors carry the claim (DOI style), pinning python's index
        descriptor_annotations={"linux/amd64": claim(py_index), "linux/arm64/v8": claim(py_index)},
        attestations=True,
    )
    return MultiArch(f"{registry.host}/{repo}", deb, py, app, app_index)


@pytest.fixture(scope="module")
def multi_arch(registry: RegistryProcess) -> MultiArch:
    """Pushed once per module: these tests only read it."""
    return push_multi_arch(registry, "t/lineage-multi-arch")


async def test_multi_arch_index_every_platform_with_its_own_chain(
    multi_arch: MultiArch, resolver: LineageResolver
) -> None:
    fam = multi_arch

    lineage = await resolver.resolve(parse(f"{fam.root}/app:1"))

    assert lineage.failure is None and lineage.digest == fam.app_index.digest
    assert [p.platform for p in lineage.platforms] == ["linux/amd64", "linux/arm64/v8"]
    for pl, arch in zip(lineage.platforms, ["amd64", "arm64"], strict=True):
        assert chain(pl) == [
            (f"{fam.root}/app:1", "image", None),
            (f"{fam.root}/python:3.12", "index-annotation", True),
            (f"{fam.root}/debian:12-slim", "annotation", True),
        ]
        # base.digest named an index each time: the child for this platform was taken
        assert [lv.digest for lv in pl.levels] == [
            fam.app[arch].digest,
            fam.python[arch].digest,
            fam.debian[arch].digest,
        ]
        assert pl.end is End.UNCLAIMED


@pytest.mark.parametrize(
    ("platforms", "expected"),
    [
        (["linux/arm64"], ["linux/arm64/v8"]),
        (["linux/arm64/v8", "linux/amd64"], ["linux/amd64", "linux/arm64/v8"]),
        (["linux/amd64", "linux/s390x"], ["linux/amd64"]),
    ],
    ids=["arm64-matches-v8", "both-in-index-order", "missing-platform-ignored"],
)
async def test_platform_filter(
    multi_arch: MultiArch, resolver: LineageResolver, platforms: list[str], expected: list[str]
) -> None:
    fam = multi_arch

    lineage = await resolver.resolve(parse(f"{fam.root}/app:1"), platforms=platforms, max_depth=1)

    assert [p.platform for p in lineage.platforms] == expected


async def test_platform_filter_matching_nothing_is_a_failure(
    multi_arch: MultiArch, resolver: LineageResolver
) -> None:
    fam = multi_arch

    lineage = await resolver.resolve(parse(f"{fam.root}/app:1"), platforms=["linux/s390x"])

    assert lineage.platforms == ()
    assert lineage.failure == (
        f"{fam.root}/app:1 has no image for linux/s390x (it has linux/amd64, linux/arm64/v8)"
    )


# --------------------------------------------------------------------------- depth


@pytest.mark.parametrize(
    ("max_depth", "names", "end"),
    [
        (0, ["app:1"], End.MAX_DEPTH),
        (1, ["app:1", "python:3.12"], End.MAX_DEPTH),
        (2, ["app:1", "python:3.12", "debian:12-slim"], End.SCRATCH),
        (4, ["app:1", "python:3.12", "debian:12-slim"], End.SCRATCH),
    ],
    ids=["image-only", "one-level", "exactly-enough", "more-than-enough"],
)
async def test_max_depth(
    registry: RegistryProcess,
    unique_repo: str,
    resolver: LineageResolver,
    max_depth: int,
    names: list[str],
    end: End,
) -> None:
    fam = push_family(
        registry,
        unique_repo,
        debian={"annotations": {NAME: "scratch"}},
        python=lambda deb: {"annotations": claim(deb)},
        app=lambda deb, py: {"annotations": claim(py)},
    )

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=max_depth))

    assert [short(lv) for lv in pl.levels] == [f"{fam.root}/{n}" for n in names]
    assert pl.end is end


# --------------------------------------------------------------------------- stale bases


@pytest.mark.parametrize(
    "after",
    ["index-churn", "same-layers-new-config", "rebuilt", "unchanged"],
)
async def test_base_tag_moved(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver, after: str
) -> None:
    repo = f"{unique_repo}/python"
    lay = layers_for(unique_repo)
    amd = registry.push_image(repo, None, [lay.debian, lay.python])
    arm = registry.push_image(repo, None, [lay.debian, lay.python], arch="arm64", variant="v8")
    index = registry.push_index(repo, "3.12", [(amd, "linux/amd64"), (arm, "linux/arm64/v8")])
    app = registry.push_image(
        f"{unique_repo}/app", "1", [lay.debian, lay.python, lay.app], annotations=claim(index)
    )
    moved_to = None
    if after == "index-churn":  # a platform added: the index digest changes, amd64 does not
        riscv = registry.push_image(repo, None, [lay.debian, lay.python], arch="riscv64")
        registry.push_index(
            repo, "3.12", [(amd, "linux/amd64"), (arm, "linux/arm64/v8"), (riscv, "linux/riscv64")]
        )
    elif after == "same-layers-new-config":  # rebuilt, same filesystem: not a move
        again = registry.push_image(
            repo, None, [lay.debian, lay.python], created="2025-01-01T00:00:00Z"
        )
        registry.push_index(repo, "3.12", [(again, "linux/amd64"), (arm, "linux/arm64/v8")])
    elif after == "rebuilt":
        new = registry.push_image(repo, None, [lay.debian, layer({"usr/bin/python3": "3.12.9"})])
        registry.push_index(repo, "3.12", [(new, "linux/amd64"), (arm, "linux/arm64/v8")])
        moved_to = new.digest

    pl = only(await resolver.resolve(parse(f"{app.host}/{app.repository}:1"), max_depth=1))

    assert chain(pl)[1] == (f"{registry.host}/{repo}:3.12", "annotation", True)
    assert pl.levels[1].digest == amd.digest
    assert pl.levels[1].moved_to == moved_to
    assert pl.levels[1].note == ""


async def test_detected_base_tag_moved(
    registry: RegistryProcess, unique_repo: str, make_client: Any
) -> None:
    """The catalog saw python:3.12 when the app was built; the tag has moved on since."""
    fam = push_family(registry, unique_repo)
    catalog = [fam.ref("python", "3.12")]
    before = LineageResolver(make_client(registry))
    await before.refresh_catalog(catalog)
    lay = layers_for(unique_repo)
    new = registry.push_image(f"{unique_repo}/python", "3.12", [lay.debian, layer({"py": "new"})])
    # a client past the tag TTL, with the catalog's memory
    resolver = LineageResolver(make_client(registry), catalog=before.catalog)

    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1, catalog=catalog))

    assert chain(pl)[1] == (f"{fam.root}/python:3.12", "layers", True)
    assert pl.levels[1].moved_to == new.digest


# --------------------------------------------------------------------------- failures


async def test_base_deleted_from_registry_is_unverifiable(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo, app=lambda deb, py: {"annotations": claim(py)})
    registry.pusher.delete(f"{unique_repo}/python", fam.python.digest)

    pl = only(await resolver.resolve(fam.ref("app", "1")))

    assert chain(pl) == [
        (f"{fam.root}/app:1", "image", None),
        (f"{fam.root}/python:3.12", "annotation", None),
    ]
    assert pl.levels[1].note.startswith(
        f"claimed base {fam.root}/python:3.12 (annotation) cannot be checked: it is gone from the registry ("
    )
    assert "MANIFEST_UNKNOWN" in pl.levels[1].note
    assert pl.end is End.UNCLAIMED and pl.failure is None


async def test_unreachable_base_registry_is_a_lookup_failure(
    registry: RegistryProcess, unique_repo: str, make_client: Any
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    fam = push_family(
        registry, unique_repo, app={"annotations": {NAME: f"{dead}/library/python:3.12"}}
    )
    resolver = LineageResolver(make_client(registry, RegistryHost(dead, insecure=True)))

    pl = only(await resolver.resolve(fam.ref("app", "1")))

    assert chain(pl) == [
        (f"{fam.root}/app:1", "image", None),
        (f"{dead}/library/python:3.12", "annotation", None),
    ]
    assert (
        pl.levels[1].note
        == f"claimed base {dead}/library/python:3.12 (annotation) cannot be checked"
    )
    assert pl.end is End.LOOKUP_FAILED
    assert pl.failure is not None and dead in pl.failure


async def test_image_lookup_failure(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    ref = parse(f"{registry.host}/{unique_repo}/app:nope")

    lineage = await resolver.resolve(ref)

    assert lineage.digest is None and lineage.platforms == ()
    assert lineage.failure is not None
    assert lineage.failure.startswith(f"{registry.host}/{unique_repo}/app:nope: MANIFEST_UNKNOWN")


async def test_claimed_base_without_the_platform_is_contradicted(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    lay = layers_for(unique_repo)
    amd = registry.push_image(f"{unique_repo}/debian", None, [lay.debian])
    index = registry.push_index(f"{unique_repo}/debian", "12-slim", [(amd, "linux/amd64")])
    app = registry.push_image(
        f"{unique_repo}/app", "1", [lay.debian, lay.app], arch="arm64", annotations=claim(index)
    )

    pl = only(await resolver.resolve(parse(f"{app.host}/{app.repository}:1")))

    assert pl.platform == "linux/arm64"
    assert chain(pl)[1] == (f"{registry.host}/{unique_repo}/debian:12-slim", "annotation", False)
    assert pl.levels[1].note == (
        f"claimed base {registry.host}/{unique_repo}/debian:12-slim (annotation) has no linux/arm64 image"
    )
    assert pl.end is End.UNCLAIMED


async def test_caller_deadline_cancels_cleanly(
    registry: RegistryProcess, unique_repo: str, resolver: LineageResolver
) -> None:
    fam = push_family(registry, unique_repo, app=lambda deb, py: {"annotations": claim(py)})

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await resolver.resolve(fam.ref("app", "1"), catalog=[fam.ref("debian", "12-slim")])
    # the resolver (and its client) still work afterwards
    pl = only(await resolver.resolve(fam.ref("app", "1"), max_depth=1))
    assert chain(pl)[1] == (f"{fam.root}/python:3.12", "annotation", True)
