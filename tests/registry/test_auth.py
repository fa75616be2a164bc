"""Authentication against real registries: htpasswd basic auth over TLS, and bearer tokens."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from support.credentials import IDENTITY_TOKEN, TLS_USER, TOKEN_USER
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess
from support.token_server import TokenServer

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import Credentials, DockerCredentials, RegistryHost

BASE = layer({"etc/os-release": "ID=wolfi\n"})
APP = layer({"srv/app": "binary"})


# ------------------------------------------------------------------ basic auth over TLS


@pytest.fixture(scope="module")
def tls_image(tls_registry: RegistryProcess) -> Any:
    return tls_registry.push_image("team/tls", "v1", [BASE, APP], labels={"tls": "yes"})


def tls_host(reg: RegistryProcess, **kwargs: Any) -> RegistryHost:
    return RegistryHost(reg.host, ca_file=reg.ca_file, **kwargs)


async def test_basic_auth_with_ca_file(
    tls_registry: RegistryProcess, tls_image: Any, make_client: Any
) -> None:
    client: RegistryClient = make_client(
        tls_host(tls_registry, username=TLS_USER[0], password=TLS_USER[1])
    )

    fetched = await client.fetch_manifest(parse(tls_image.tagged))
    assert isinstance(fetched.manifest, media.ImageManifest)
    config = await client.fetch_config(fetched.reference, fetched.manifest)

    assert fetched.digest == tls_image.digest
    assert config.labels == {"tls": "yes"}
    # one 401 to learn the scheme, then credentials go up front
    assert client.stats.requests("GET", "manifest") == 2
    assert client.stats.requests("GET", "blob") == 1


async def test_basic_auth_from_docker_config(
    tls_registry: RegistryProcess, tls_image: Any, make_client: Any
) -> None:
    auth = base64.b64encode(f"{TLS_USER[0]}:{TLS_USER[1]}".encode()).decode()
    docker = DockerCredentials.parse(json.dumps({"auths": {f"https://{tls_registry.host}/v1/": {"auth": auth}}}))
    client: RegistryClient = make_client(tls_host(tls_registry), docker_config=docker)

    assert (await client.fetch_manifest(parse(tls_image.tagged))).digest == tls_image.digest


@pytest.mark.parametrize(
    ("host_kwargs", "message"),
    [
        (
            {"username": TLS_USER[0], "password": "wrong-password-123"},
            "authentication refused by {host} (401 with basic credentials)",
        ),
        ({}, "registry {host} requires credentials (Basic) and none are configured for {host}"),
    ],
    ids=["bad-password", "no-credentials"],
)
async def test_basic_auth_refused(
    tls_registry: RegistryProcess, tls_image: Any, make_client: Any, caplog: pytest.LogCaptureFixture,
    host_kwargs: dict[str, str], message: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    client: RegistryClient = make_client(tls_host(tls_registry, **host_kwargs))

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(tls_image.tagged))

    assert message.format(host=tls_registry.host) in str(info.value)
    assert info.value.context["status"] == 401
    for secret in ("wrong-password-123", TLS_USER[1]):
        assert secret not in str(info.value)
        assert secret not in repr(info.value.context)
        assert secret not in caplog.text
    assert "Basic " not in caplog.text


async def test_tls_without_the_ca_is_refused(
    tls_registry: RegistryProcess, tls_image: Any, make_client: Any
) -> None:
    client: RegistryClient = make_client(RegistryHost(tls_registry.host, username="u", password="p"))

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(tls_image.tagged))

    assert str(info.value).startswith(f"TLS verification failed for registry {tls_registry.host}: ")
    assert "certificate verify failed" in str(info.value)


async def test_pull_secret_credentials_through_a_view(
    tls_registry: RegistryProcess, tls_image: Any, make_client: Any
) -> None:
    """The operator derives a config with pull-secret creds; the anonymous failure does not leak over."""
    client: RegistryClient = make_client(tls_host(tls_registry))
    ref = parse(tls_image.tagged)
    with pytest.raises(LookupFailed, match="requires credentials"):
        await client.fetch_manifest(ref)

    view = client.with_config(
        client.config.with_credentials({tls_registry.host: Credentials(*TLS_USER)})
    )

    assert (await view.fetch_manifest(ref)).digest == tls_image.digest
    assert view.stats is client.stats  # shared session, cache and counters
    assert client.config.host(tls_registry.host).username is None  # the original is unchanged
    other = parse(f"{tls_registry.host}/team/tls:other")
    with pytest.raises(LookupFailed, match="requires credentials"):
        await client.fetch_manifest(other)
    with pytest.raises(LookupFailed, match="MANIFEST_UNKNOWN"):
        await view.fetch_manifest(other)


# ------------------------------------------------------------------ bearer tokens


@pytest.fixture(scope="module")
def token_images(token_registry: RegistryProcess) -> dict[str, Any]:
    return {
        repo: token_registry.push_image(repo, "v1", [BASE, APP], labels={"repo": repo})
        for repo in ("public/app", "team/app", "secret/app")
    }


def bearer_client(
    make_client: Any, token_registry: RegistryProcess, token_server: TokenServer,
    cache: RegistryCache | None = None, **creds: Any,
) -> RegistryClient:
    client: RegistryClient = make_client(
        RegistryHost(token_registry.host, insecure=True, **creds),
        RegistryHost(token_server.host, insecure=True),
        cache=cache,
    )
    return client


@pytest.mark.parametrize(
    ("repo", "creds", "user"),
    [
        ("public/app", {}, None),
        ("team/app", {"username": TOKEN_USER[0], "password": TOKEN_USER[1]}, "alice"),
        ("public/app", {"username": TOKEN_USER[0], "password": TOKEN_USER[1]}, "alice"),
        ("team/app", {"identity_token": IDENTITY_TOKEN}, "alice"),
    ],
    ids=["anonymous", "basic-to-realm", "creds-on-public", "identity-token"],
)
async def test_bearer_token_is_fetched_once_and_reused(
    token_registry: RegistryProcess, token_server: TokenServer, token_images: dict[str, Any],
    make_client: Any, repo: str, creds: dict[str, str], user: str | None,
) -> None:
    client = bearer_client(make_client, token_registry, token_server, **creds)
    pushed = token_images[repo]
    before = token_server.count

    for _ in range(10):
        fetched = await client.fetch_manifest(parse(pushed.reference))
        client.cache.content.clear()  # force real requests: the token must still be reused
    assert isinstance(fetched.manifest, media.ImageManifest)
    config = await client.fetch_config(fetched.reference, fetched.manifest)

    assert config.labels == {"repo": repo}
    assert token_server.count - before == 1
    last = token_server.requests[-1]
    assert last.user == user
    assert last.scopes == (f"repository:{repo}:pull",)
    assert last.service == token_server.service
    assert last.method == ("POST" if "identity_token" in creds else "GET")
    # 1 challenge + 10 manifests with the token + 1 config
    assert client.stats.requests(kind="manifest") == 11
    assert client.stats.requests(kind="token") == 1


async def test_token_is_renewed_when_it_expires(
    token_registry: RegistryProcess, token_server: TokenServer, token_images: dict[str, Any],
    make_client: Any,
) -> None:
    now = [5000.0]
    client = bearer_client(make_client, token_registry, token_server, cache=RegistryCache(clock=lambda: now[0]))
    ref = parse(token_images["public/app"].reference)
    before = token_server.count

    await client.fetch_manifest(ref)
    client.cache.content.clear()
    now[0] += 280  # the server's expires_in is 300; we renew 10 s early
    await client.fetch_manifest(ref)
    assert token_server.count - before == 1

    client.cache.content.clear()
    now[0] += 15
    await client.fetch_manifest(ref)
    assert token_server.count - before == 2


@pytest.mark.parametrize(
    ("repo", "creds", "message"),
    [
        (
            "team/app",
            {},
            "authentication refused by {reg} (401 after token): insufficient_scope for repository:team/app:pull",
        ),
        (
            "secret/app",
            {"username": TOKEN_USER[0], "password": TOKEN_USER[1]},
            "authentication refused by {reg} (401 after token): insufficient_scope for repository:secret/app:pull",
        ),
        (
            "team/app",
            {"username": TOKEN_USER[0], "password": "not-alices-password"},
            "token server {ts} refused the credentials for {reg} (repository:team/app:pull, HTTP 401)",
        ),
        (
            "team/app",
            {"identity_token": "revoked-identity-token"},
            "token server {ts} refused the credentials for {reg} (repository:team/app:pull, HTTP 401)",
        ),
        ("team/app", {"token": "not-a-valid-jwt"}, "authentication refused by {reg} (401 with the configured token)"),
    ],
    ids=["anonymous-private-repo", "denied-repo", "bad-password", "bad-identity-token", "bad-static-token"],
)
async def test_bearer_refusals(
    token_registry: RegistryProcess, token_server: TokenServer, token_images: dict[str, Any],
    make_client: Any, caplog: pytest.LogCaptureFixture, repo: str, creds: dict[str, str], message: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = bearer_client(make_client, token_registry, token_server, **creds)

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(token_images[repo].tagged))

    assert str(info.value) == message.format(reg=token_registry.host, ts=token_server.host)
    for secret in (*creds.values(), TOKEN_USER[1]):
        assert secret not in str(info.value)
        assert secret not in repr(info.value.context)
        assert secret not in caplog.text
    assert "Bearer " not in caplog.text and "eyJ" not in caplog.text  # no JWT in logs


async def test_plain_http_realm_needs_an_insecure_entry(
    token_registry: RegistryProcess, token_server: TokenServer, token_images: dict[str, Any],
    make_client: Any,
) -> None:
    client: RegistryClient = make_client(RegistryHost(token_registry.host, insecure=True))
    before = token_server.count

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(token_images["public/app"].tagged))

    assert str(info.value) == (
        f"registry {token_registry.host} named a plain-http token realm on {token_server.host}; "
        f"refused (configure {token_server.host} as insecure to allow)"
    )
    assert token_server.count == before


async def test_cross_host_blob_redirect_drops_authorization(
    token_proxy: FaultyProxy, token_server: TokenServer, token_images: dict[str, Any],
    make_client: Any,
) -> None:
    pushed = token_images["public/app"]
    storage = f"localhost:{token_proxy.port}"  # the same listener under another host name
    token_proxy.fault(
        "redirect", "/blobs/", location=f"http://{storage}/_storage/public/app/blobs/{pushed.config_digest}"
    )
    client: RegistryClient = make_client(
        RegistryHost(token_proxy.host, insecure=True),
        RegistryHost(token_server.host, insecure=True),
        RegistryHost(storage, insecure=True),
    )
    ref = parse(f"{token_proxy.host}/public/app@{pushed.digest}")

    fetched = await client.fetch_manifest(ref)
    assert isinstance(fetched.manifest, media.ImageManifest)
    config = await client.fetch_config(ref, fetched.manifest)

    assert config.labels == {"repo": "public/app"}
    blob_requests = [s for s in token_proxy.seen if "/blobs/" in s.path]
    assert [(s.host, "Authorization" in s.headers) for s in blob_requests] == [
        (token_proxy.host, True),
        (storage, False),
    ]


async def test_refused_cached_token_is_renewed_once(
    token_proxy: FaultyProxy, token_server: TokenServer, token_images: dict[str, Any], make_client: Any
) -> None:
    """The registry refuses a token we still believe valid (signer rotated): one fresh token, one retry."""
    pushed = token_images["public/app"]
    client: RegistryClient = make_client(
        RegistryHost(token_proxy.host, insecure=True), RegistryHost(token_server.host, insecure=True)
    )
    before = token_server.count
    await client.fetch_manifest(parse(f"{token_proxy.host}/public/app:v1"))
    challenge = (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}",'
        'scope="repository:public/app:pull",error="invalid_token"'
    )
    token_proxy.fault("status", "/manifests/", status=401, headers={"WWW-Authenticate": challenge}, times=1)
    client.cache.content.clear()

    fetched = await client.fetch_manifest(parse(f"{token_proxy.host}/public/app@{pushed.digest}"))

    assert fetched.digest == pushed.digest
    assert token_server.count - before == 2
    # challenge, token, refused cached token, fresh token
    assert [("Authorization" in s.headers) for s in token_proxy.seen] == [False, True, True, True]
