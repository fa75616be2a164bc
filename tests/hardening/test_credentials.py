"""Registry credentials go only to the host they belong to, and never into answers or logs.

Two proxies in front of one real registry play two registry hosts: ``proxy``
holds the credentials, ``other`` holds none (another registry, or the blob
storage a 307 points at). Both record every request's headers, so the tests
can say exactly where an ``Authorization`` header went. Credentials are
configured by the operator; everything that could carry them elsewhere (an
image name, a base claim, a redirect, a registry's error text) is not.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.credentials import TLS_USER
from support.faulty_proxy import FaultyProxy
from support.hardening import QUERY, bases_policy, pod
from support.images import Pushed, layer
from support.programs import Program, provider_plugin
from support.registry import RegistryProcess, start_registry

from controller import logs
from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.config import RegistryHost
from controller.registry.helpers import CredentialProviders

TOKEN = "tok-8f1c3b9e5a7d44e2b6c0"
USER, PASSWORD = "robot", "pw-41d9e7c2a8f05b36"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def _other_server(registry: RegistryProcess) -> Iterator[FaultyProxy]:
    other = FaultyProxy(registry.url).start()
    yield other
    other.stop()


@pytest.fixture
def other(_other_server: FaultyProxy) -> Iterator[FaultyProxy]:
    """A second host in front of the same registry, configured without credentials."""
    _other_server.clear()
    yield _other_server
    _other_server.clear()


def push_cross_host(registry: RegistryProcess, repo: str, base_host: str) -> tuple[Pushed, Pushed]:
    """python:3.12 and app:1.0.0 whose base claim names ``base_host`` (another registry)."""
    os_layer, py_layer = layer({"etc/os-release": repo}), layer({"usr/bin/python3": repo})
    python = registry.push_image(f"{repo}/python", "3.12", [os_layer, py_layer], annotations={media.BASE_NAME: "scratch"})
    app = registry.push_image(
        f"{repo}/app",
        "1.0.0",
        [os_layer, py_layer, layer({"srv/app": repo})],
        annotations={media.BASE_NAME: f"{base_host}/{repo}/python:3.12", media.BASE_DIGEST: python.digest},
    )
    return python, app


def credentials(kind: str) -> dict[str, str]:
    return {"token": TOKEN} if kind == "token" else {"username": USER, "password": PASSWORD}


def expected_authorization(kind: str) -> str:
    return f"Bearer {TOKEN}" if kind == "token" else f"Basic {BASIC}"


def ask_for_basic(proxy: FaultyProxy, kind: str) -> None:
    """Basic credentials are sent after a challenge (then up front): make the registry ask once."""
    if kind == "basic":
        proxy.fault("status", "/manifests/", status=401, headers={"WWW-Authenticate": 'Basic realm="r"'}, times=1)


@pytest.mark.parametrize("kind", ["token", "basic"])
async def test_credentials_go_only_to_their_own_host(
    start_webhook: Any, registry: RegistryProcess, proxy: FaultyProxy, other: FaultyProxy,
    unique_repo: str, kind: str,
) -> None:
    """The image's host gets them on every request; the base's host, named by the image, never."""
    push_cross_host(registry, unique_repo, other.host)
    ask_for_basic(proxy, kind)
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True, **credentials(kind)), RegistryHost(other.host, insecure=True)],
        docs=[bases_policy(f"{other.host}/{unique_repo}/python")],
    )

    response = await hook.response(pod(f"{proxy.host}/{unique_repo}/app:1.0.0"), query=QUERY)

    assert response["allowed"] is True, response  # the lineage crossed hosts and was judged
    sent = [s.headers.get("Authorization") for s in proxy.seen]
    assert sent[-1] == expected_authorization(kind) and len(sent) >= 2
    assert {s.headers.get("Authorization") for s in other.seen} == {None}
    assert len(other.seen) >= 2  # the base really was fetched from the other host


@pytest.mark.parametrize("kind", ["token", "basic"])
async def test_a_cross_host_blob_redirect_drops_the_credentials(
    start_webhook: Any, registry: RegistryProcess, proxy: FaultyProxy, other: FaultyProxy,
    unique_repo: str, kind: str,
) -> None:
    """Blob storage behind a 307 (S3, GCS) is another host: it gets the signed URL, not our secret."""
    _, app = push_cross_host(registry, unique_repo, proxy.host)
    storage = f"http://{other.host}/_storage/{unique_repo}/app/blobs/{app.config_digest}"
    proxy.fault("redirect", f"/{unique_repo}/app/blobs/", location=storage)
    ask_for_basic(proxy, kind)
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True, **credentials(kind)), RegistryHost(other.host, insecure=True)],
        docs=[bases_policy(f"{proxy.host}/{unique_repo}/python")],
    )

    response = await hook.response(pod(f"{proxy.host}/{unique_repo}/app:1.0.0"), query=QUERY)

    assert response["allowed"] is True, response  # the redirected config was read and judged
    (fetched,) = [s for s in other.seen if s.path.startswith("/_storage/")]
    assert "Authorization" not in fetched.headers
    redirected = [s for s in proxy.seen if f"/{unique_repo}/app/blobs/" in s.path]
    assert [s.headers.get("Authorization") for s in redirected] == [expected_authorization(kind)]


async def test_a_manifest_redirect_to_another_host_is_refused_before_any_request(
    start_webhook: Any, registry: RegistryProcess, proxy: FaultyProxy, other: FaultyProxy, unique_repo: str
) -> None:
    push_cross_host(registry, unique_repo, proxy.host)
    proxy.fault("redirect", "/manifests/", location=f"http://{other.host}/v2/{unique_repo}/app/manifests/1.0.0")
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True, token=TOKEN), RegistryHost(other.host, insecure=True)],
        docs=[bases_policy(f"{proxy.host}/{unique_repo}/python")],
    )

    response = await hook.response(pod(f"{proxy.host}/{unique_repo}/app:1.0.0"), query=QUERY)

    assert response["allowed"] is False
    assert f"redirected a manifest request to another host ({other.host}); refused" in response["status"]["message"]
    assert other.seen == []


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[pytest.LogCaptureFixture, io.StringIO]]:
    """Every record at DEBUG, raw (caplog) and as the JSON lines ``serve`` writes."""
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    handler = logs.configure(level="DEBUG", stream=stream)
    yield caplog, stream
    logs.unconfigure(handler)


ECHO = json.dumps(
    {"errors": [{"code": "DENIED", "message": f"token {TOKEN} / Basic {BASIC} / {PASSWORD} refused"}]}
).encode()
FAILURES = {
    # the registry refuses the credentials
    "refused": {"status": 401, "headers": {"WWW-Authenticate": 'Basic realm="r",error="invalid_token"'}},
    # a registry (or a proxy before it) that echoes the request back in its error text:
    # on an auth refusal, and on any other error
    "echoed-403": {"status": 403, "body": ECHO},
    "echoed-500": {"status": 500, "body": ECHO},
    "html-echo": {"status": 500, "body": f"<pre>Authorization: Bearer {TOKEN}</pre>".encode()},
}


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("kind", ["token", "basic"])
async def test_no_secret_in_answers_logs_or_metrics(
    start_webhook: Any, registry: RegistryProcess, proxy: FaultyProxy, unique_repo: str,
    captured: tuple[pytest.LogCaptureFixture, io.StringIO], failure: str, kind: str,
) -> None:
    caplog, stream = captured
    push_cross_host(registry, unique_repo, proxy.host)
    ask_for_basic(proxy, kind)
    proxy.fault("status", "/manifests/", **FAILURES[failure])
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True, **credentials(kind))],
        docs=[bases_policy(f"{proxy.host}/{unique_repo}/python"),
              bases_policy("*", name="warned", mode="Warn"),
              bases_policy("*", name="audited", mode="Audit")],
    )
    review = pod(f"{proxy.host}/{unique_repo}/app:1.0.0")

    status, answer = await hook.review(review, query=QUERY)
    _, metrics = await hook.get("/metrics")

    assert status == 200 and answer["response"]["allowed"] is False
    assert "rule lookup-failed" in answer["response"]["status"]["message"]
    assert any(s.headers.get("Authorization") for s in proxy.seen)  # the secret was in play
    shown = {
        "answer": json.dumps(answer),
        "json log": stream.getvalue(),
        "raw log": caplog.text + "".join(repr(getattr(r, "fields", "")) for r in caplog.records),
        "metrics": metrics,
    }
    assert '"decision"' in shown["json log"]
    secrets = (TOKEN,) if kind == "token" else (PASSWORD, BASIC)  # what this run configured
    leaks = [f"{secret!r} in the {where}" for where, text in shown.items() for secret in secrets if secret in text]
    assert leaks == [], "\n".join(leaks)


# --------------------------------------------------------------------------- credential provider plugins


ROBOT_B = ("robot-b", "robot-b-Pa55word")


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


@pytest.fixture(scope="module")
def two_hosts(
    tls_registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FaultyProxy, FaultyProxy, str, str]]:
    """Hosts A and B: two htpasswd registries (users of their own), each behind a recording proxy;
    an image pushed to each. The proxies record every Authorization header each host receives."""
    reg_b = start_registry(tmp_path_factory.mktemp("registry-b"), tls=True, htpasswd=ROBOT_B)
    layers = [layer({"etc/os-release": "ID=plugin-hosts\n"})]
    tls_registry.push_image("plugin-hosts/app", "1", layers)
    reg_b.push_image("plugin-hosts/app", "1", layers)
    host_a = FaultyProxy(tls_registry.url, upstream_ssl=tls_registry.ssl_context()).start()
    host_b = FaultyProxy(reg_b.url, upstream_ssl=reg_b.ssl_context()).start()
    yield host_a, host_b, f"{host_a.host}/plugin-hosts/app:1", f"{host_b.host}/plugin-hosts/app:1"
    host_a.stop()
    host_b.stop()
    reg_b.stop()


def global_plugin(tmp_path: Path, hosts: list[str], store: dict[str, tuple[str, str]]) -> tuple[Program, Any]:
    """A plugin answering ``cacheKeyType: Global`` with ``store`` as its ``auth``, for 10 minutes."""
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(bin_dir, "node-credentials", store)
    config = tmp_path / "providers.json"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [
                    {
                        "name": "node-credentials",
                        "matchImages": hosts,
                        "defaultCacheDuration": "10m",
                        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                        "args": [str(plugin.store)],
                        "env": [{"name": "CACHE_KEY_TYPE", "value": "Global"}],
                    }
                ],
            }
        )
    )
    return plugin, CredentialProviders.load(config, bin_dir)


async def test_a_global_plugin_answer_for_host_a_never_reaches_host_b(
    two_hosts: tuple[FaultyProxy, FaultyProxy, str, str], make_client: Any, tmp_path: Path
) -> None:
    """The answer is cached as a map and matched per image: B's image matches no key of it."""
    host_a, host_b, image_a, image_b = two_hosts
    host_a.clear()
    host_b.clear()
    plugin, providers = global_plugin(tmp_path, [host_a.host, host_b.host], {host_a.host: TLS_USER})
    client = make_client(host_a, host_b, credential_providers=providers)

    assert (await client.fetch_manifest(parse(image_a))).digest  # review 1: A, with A's robot
    with pytest.raises(LookupFailed, match=r"requires credentials \(Basic\) and none are configured"):
        await client.fetch_manifest(parse(image_b))  # review 2: B

    assert basic(TLS_USER) in {s.headers.get("Authorization") for s in host_a.seen}
    assert {s.headers.get("Authorization") for s in host_b.seen} == {None}  # it was A's Basic, 3 times
    assert len(host_b.seen) >= 1 and len(plugin.calls()) == 1


async def test_an_empty_match_for_one_host_is_not_remembered_for_another(
    two_hosts: tuple[FaultyProxy, FaultyProxy, str, str], make_client: Any, tmp_path: Path
) -> None:
    """Asked about A first, the plugin answers (Global) with B's entry only: A goes anonymous,
    and B then gets B's credentials from the cached map (they were "none" for 10 minutes)."""
    host_a, host_b, image_a, image_b = two_hosts
    host_a.clear()
    host_b.clear()
    plugin, providers = global_plugin(tmp_path, [host_a.host, host_b.host], {host_b.host: ROBOT_B})
    client = make_client(host_a, host_b, credential_providers=providers)

    with pytest.raises(LookupFailed, match=r"requires credentials \(Basic\) and none are configured"):
        await client.fetch_manifest(parse(image_a))
    assert (await client.fetch_manifest(parse(image_b))).digest

    assert {s.headers.get("Authorization") for s in host_a.seen} == {None}
    assert {s.headers.get("Authorization") for s in host_b.seen} == {None, basic(ROBOT_B)}
    assert len(plugin.calls()) == 1  # B was answered from the cached map, not by another run
