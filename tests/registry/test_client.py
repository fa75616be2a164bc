"""The registry client against a real docker-registry 2.8.2: formats, digests, tags, configs, mirrors."""

from __future__ import annotations

import hashlib

import pytest
from support.faulty_proxy import FaultyProxy
from support.images import DOCKER, DOCKER_LIST, OCI, OCI_INDEX, Pushed, layer
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.client import Fetched, RegistryClient
from controller.registry.config import RegistryHost

BASE = layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n"})
APP = layer({"app/main.py": "print('hello')\n"})


def push_all(registry: RegistryProcess, repo: str) -> dict[str, Pushed]:
    """One image of every kind under ``repo``: tags oci, oci-index, docker, docker-list."""
    oci_amd = registry.push_image(repo, "oci", [BASE, APP], labels={"team": "a"})
    oci_arm = registry.push_image(repo, None, [BASE, APP], arch="arm64", variant="v8")
    index = registry.push_index(
        repo, "oci-index", [(oci_amd, "linux/amd64"), (oci_arm, "linux/arm64/v8")], attestations=True
    )
    docker = registry.push_image(repo, "docker", [BASE, APP], media_type=DOCKER)
    docker_arm = registry.push_image(repo, None, [BASE], media_type=DOCKER, arch="arm64")
    docker_list = registry.push_index(
        repo, "docker-list", [(docker, "linux/amd64"), (docker_arm, "linux/arm64")], media_type=DOCKER_LIST
    )
    return {"oci": oci_amd, "oci-index": index, "docker": docker, "docker-list": docker_list}


KINDS = [
    ("oci", OCI, media.ImageManifest),
    ("oci-index", OCI_INDEX, media.ImageIndex),
    ("docker", DOCKER, media.ImageManifest),
    ("docker-list", DOCKER_LIST, media.ImageIndex),
]


@pytest.fixture(scope="module")
def formats(registry: RegistryProcess) -> dict[str, Pushed]:
    return push_all(registry, "t/client-formats")


@pytest.mark.parametrize(("tag", "media_type", "cls"), KINDS, ids=[k[0] for k in KINDS])
@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_fetch_returns_the_stored_bytes_digest(
    formats: dict[str, Pushed], registry_client: RegistryClient,
    tag: str, media_type: str, cls: type, by: str,
) -> None:
    pushed = formats[tag]
    ref = parse(pushed.tagged if by == "tag" else pushed.reference)

    fetched = await registry_client.fetch_manifest(ref)

    # the exact bytes we pushed: no schema1 conversion, no platform child picked for us
    assert fetched.digest == pushed.digest == "sha256:" + hashlib.sha256(pushed.body).hexdigest()
    assert fetched.media_type == media_type
    assert isinstance(fetched.manifest, cls)
    assert fetched.size == len(pushed.body)
    assert fetched.reference == ref


async def test_fetch_by_digest_argument_overrides_the_tag(
    formats: dict[str, Pushed], registry_client: RegistryClient
) -> None:
    pushed = formats
    ref = parse(pushed["oci-index"].tagged)

    fetched = await registry_client.fetch_manifest(ref, pushed["docker"].digest)

    assert fetched.digest == pushed["docker"].digest
    assert fetched.media_type == DOCKER


async def test_index_keeps_platforms_and_attestations(
    formats: dict[str, Pushed], registry_client: RegistryClient
) -> None:
    pushed = formats

    fetched = await registry_client.fetch_manifest(parse(pushed["oci-index"].tagged))

    assert isinstance(fetched.manifest, media.ImageIndex)
    platforms = [str(d.platform) for d in fetched.manifest.manifests]
    attestations = [d.is_attestation for d in fetched.manifest.manifests]
    assert platforms == ["linux/amd64", "linux/arm64/v8", "unknown/unknown", "unknown/unknown"]
    assert attestations == [False, False, True, True]


async def test_fetch_config_gives_diff_ids_labels_and_platform(
    formats: dict[str, Pushed], registry_client: RegistryClient
) -> None:
    pushed = formats["oci"]
    fetched = await registry_client.fetch_manifest(parse(pushed.reference))
    assert isinstance(fetched.manifest, media.ImageManifest)

    config = await registry_client.fetch_config(fetched.reference, fetched.manifest)

    assert config.diff_ids == (BASE.diff_id, APP.diff_id)
    assert config.labels == {"team": "a"}
    assert str(config.platform) == "linux/amd64"
    assert config.created is not None and config.created.year == 2024


async def test_docker_config_blob_is_fetched_too(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "d", [BASE], media_type=DOCKER, arch="arm64", variant="v8")
    fetched = await registry_client.fetch_manifest(parse(pushed.tagged))
    assert isinstance(fetched.manifest, media.ImageManifest)

    config = await registry_client.fetch_config(fetched.reference, fetched.manifest)

    assert config.diff_ids == (BASE.diff_id,)
    assert str(config.platform) == "linux/arm64/v8"


async def test_resolve_digest_uses_head_only(
    registry: RegistryProcess, proxy: FaultyProxy, make_client, unique_repo: str
) -> None:
    pushed = registry.push_index(
        unique_repo, "list", [(registry.push_image(unique_repo, None, [BASE], media_type=DOCKER), "linux/amd64")],
        media_type=DOCKER_LIST,
    )
    client: RegistryClient = make_client(proxy)

    digest = await client.resolve_digest(parse(f"{proxy.host}/{unique_repo}:list"))

    assert digest == pushed.digest
    assert proxy.count("/manifests/", method="HEAD") == 1
    assert proxy.count("/manifests/", method="GET") == 0
    head = next(s for s in proxy.seen if s.method == "HEAD")
    assert head.headers["Accept"] == media.ACCEPT


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (405, {}),
        (501, {}),
        (404, {}),
        (200, {"Content-Type": OCI}),  # 200 without Docker-Content-Digest
    ],
    ids=["405", "501", "404-no-body", "200-no-digest-header"],
)
async def test_resolve_digest_falls_back_to_get(
    registry: RegistryProcess, proxy: FaultyProxy, make_client, unique_repo: str,
    status: int, headers: dict[str, str],
) -> None:
    pushed = registry.push_image(unique_repo, "oci", [BASE, APP])
    proxy.fault("status", "/manifests/", method="HEAD", status=status, headers=headers)
    client: RegistryClient = make_client(proxy)

    digest = await client.resolve_digest(parse(f"{proxy.host}/{unique_repo}:oci"))

    assert digest == pushed.digest
    assert proxy.count("/manifests/oci", method="HEAD") == 1
    assert proxy.count("/manifests/oci", method="GET") == 1
    # the GET filled the content cache: fetching now costs nothing
    fetched = await client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}:oci"))
    assert fetched.digest == pushed.digest
    assert proxy.count("/manifests/") == 2


async def test_resolve_digest_of_pinned_reference_asks_nobody(
    proxy: FaultyProxy, make_client
) -> None:
    client: RegistryClient = make_client(proxy)
    digest = "sha256:" + "a" * 64

    assert await client.resolve_digest(parse(f"{proxy.host}/team/app:v1@{digest}")) == digest
    assert proxy.count("") == 0


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("{host}/{repo}:missing", "{host}/{repo}:missing: MANIFEST_UNKNOWN: manifest unknown (HTTP 404 from {host})"),
        (
            "{host}/{repo}@sha256:" + "0" * 64,
            "{host}/{repo}@sha256:" + "0" * 64 + ": MANIFEST_UNKNOWN: manifest unknown (HTTP 404 from {host})",
        ),
        ("{host}/nobody/here:v1", "{host}/nobody/here:v1: MANIFEST_UNKNOWN: manifest unknown (HTTP 404 from {host})"),
    ],
    ids=["unknown-tag", "unknown-digest", "unknown-repository"],
)
async def test_not_found_says_what_and_where(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str, image: str, message: str
) -> None:
    registry.push_image(unique_repo, "present", [BASE])
    ref = parse(image.format(host=registry.host, repo=unique_repo))

    with pytest.raises(LookupFailed) as info:
        await registry_client.fetch_manifest(ref)

    assert str(info.value) == message.format(host=registry.host, repo=unique_repo)
    assert info.value.context["status"] == 404


async def test_resolve_digest_of_missing_tag_reports_manifest_unknown(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    registry.push_image(unique_repo, "present", [BASE])

    with pytest.raises(LookupFailed, match="MANIFEST_UNKNOWN: manifest unknown"):
        await registry_client.resolve_digest(parse(f"{registry.host}/{unique_repo}:absent"))


async def test_deleted_manifest_is_gone(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "soon-gone", [BASE, APP])
    registry.pusher.delete(unique_repo, pushed.digest)

    with pytest.raises(LookupFailed, match="MANIFEST_UNKNOWN"):
        await registry_client.fetch_manifest(parse(pushed.reference))


async def test_mirror_is_asked_first(
    registry: RegistryProcess, proxy: FaultyProxy, make_client, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "m", [BASE])
    # the image names a host that does not exist; its mirror (the proxy) has it
    origin = RegistryHost("registry.invalid", mirrors=(proxy.host,))
    client: RegistryClient = make_client(origin, RegistryHost(proxy.host, insecure=True))

    fetched = await client.fetch_manifest(parse(f"registry.invalid/{unique_repo}:m"))

    assert fetched.digest == pushed.digest
    assert proxy.count("/manifests/m") == 1


async def test_failing_mirror_falls_back_to_the_registry(
    registry: RegistryProcess, proxy: FaultyProxy, make_client, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "m", [BASE])
    proxy.fault("status", "/manifests/", status=500)
    origin = RegistryHost(registry.host, insecure=True, mirrors=(proxy.host,))
    client: RegistryClient = make_client(origin, RegistryHost(proxy.host, insecure=True))

    fetched = await client.fetch_manifest(parse(f"{registry.host}/{unique_repo}:m"))

    assert fetched.digest == pushed.digest
    assert proxy.count("/manifests/m") == 1


async def test_all_mirrors_failing_reports_the_registry_error(
    registry: RegistryProcess, proxy: FaultyProxy, make_client, unique_repo: str
) -> None:
    registry.push_image(unique_repo, "m", [BASE])
    proxy.fault("status", "/manifests/", status=500)
    origin = RegistryHost(registry.host, insecure=True, mirrors=(proxy.host,))
    client: RegistryClient = make_client(origin, RegistryHost(proxy.host, insecure=True))

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(f"{registry.host}/{unique_repo}:absent"))

    assert registry.host in str(info.value) and "MANIFEST_UNKNOWN" in str(info.value)


async def test_https_is_the_default(registry: RegistryProcess, make_client, unique_repo: str) -> None:
    """A plain-HTTP registry not configured insecure is spoken to over TLS, and fails."""
    client: RegistryClient = make_client(RegistryHost(registry.host))

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(f"{registry.host}/{unique_repo}:x"))

    assert registry.host in str(info.value)
    assert info.value.context["code"] in ("TLS", "DISCONNECTED", "PROTOCOL")


async def test_stats_count_requests_by_method_and_kind(
    registry: RegistryProcess, registry_client: RegistryClient, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "s", [BASE])
    ref = parse(pushed.tagged)

    fetched: Fetched = await registry_client.fetch_manifest(ref)
    assert isinstance(fetched.manifest, media.ImageManifest)
    await registry_client.fetch_config(ref, fetched.manifest)
    await registry_client.fetch_manifest(ref)  # tag cache + content cache
    await registry_client.resolve_digest(ref)  # tag cache

    stats = registry_client.stats
    assert stats.requests("GET", "manifest") == 1
    assert stats.requests("GET", "blob") == 1
    assert stats.total == 2
    assert stats.cache_hits == 2
    assert stats.as_dict()["by_kind"] == {"GET blob": 1, "GET manifest": 1}


async def test_docker_hub_images_through_a_mirror(
    registry: RegistryProcess, proxy: FaultyProxy, make_client
) -> None:
    """``python:3.12`` means docker.io/library/python; a configured mirror answers for it."""
    pushed = registry.push_image("library/python", "3.12-mirror-test", [BASE])
    hub = RegistryHost("docker.io", mirrors=(proxy.host,))
    client: RegistryClient = make_client(hub, RegistryHost(proxy.host, insecure=True))

    fetched = await client.fetch_manifest(parse("python:3.12-mirror-test"))

    assert fetched.digest == pushed.digest
    assert proxy.count("^/v2/library/python/manifests/3.12-mirror-test$") == 1
    assert hub.api_host == "registry-1.docker.io"
