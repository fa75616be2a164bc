"""``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` through a real proxy process, the address guard intact.

The proxy (``tests/support/forward_proxy.py``) runs as its own process and logs
every request line. Lookups of the real registries must go through it (as
absolute-URI requests for plain http, as ``CONNECT`` tunnels for TLS, where it
never sees the credentials), ``NO_PROXY`` must bypass it, and an image name on
a private address must still be refused before anything reaches the proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.credentials import TLS_USER
from support.forward_proxy import ForwardProxy
from support.images import layer
from support.registry import RegistryProcess, free_port

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost

BASE = layer({"etc/os-release": "ID=proxied\n"})


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy(tmp_path_factory.mktemp("forward-proxy") / "requests.log").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied(forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> ForwardProxy:
    forward_proxy.clear()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)
    return forward_proxy


async def test_plain_http_lookups_go_through_http_proxy(
    registry: RegistryProcess, make_client: Any, proxied: ForwardProxy, unique_repo: str
) -> None:
    image = registry.push_image(unique_repo, "v1", [BASE])
    client: RegistryClient = make_client(registry)

    assert (await client.fetch_manifest(parse(image.tagged))).digest == image.digest
    assert {"method": "GET", "target": f"http://{registry.host}/v2/{unique_repo}/manifests/v1",
            "authorization": False} in proxied.seen()


async def test_tls_lookups_tunnel_through_https_proxy_with_credentials_unseen(
    tls_registry: RegistryProcess, make_client: Any, proxied: ForwardProxy
) -> None:
    image = tls_registry.push_image("proxied/app", "v1", [BASE])
    client: RegistryClient = make_client(
        RegistryHost(tls_registry.host, ca_file=tls_registry.ca_file, username=TLS_USER[0], password=TLS_USER[1])
    )

    assert (await client.fetch_manifest(parse(image.tagged))).digest == image.digest
    seen = proxied.seen()
    assert seen and all(s["method"] == "CONNECT" and s["target"] == tls_registry.host for s in seen)
    assert not any(s["authorization"] for s in seen)


async def test_no_proxy_bypasses_the_proxy(
    registry: RegistryProcess, make_client: Any, proxied: ForwardProxy, unique_repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.svc")
    image = registry.push_image(unique_repo, "v1", [BASE])
    client: RegistryClient = make_client(registry)

    assert (await client.fetch_manifest(parse(image.tagged))).digest == image.digest
    assert proxied.seen() == []


@pytest.mark.parametrize("host", ["127.0.0.2:{port}", "localhost:{port}", "169.254.169.254"])
async def test_the_address_guard_still_refuses_private_registry_hosts_behind_a_proxy(
    make_client: Any, proxied: ForwardProxy, host: str, tmp_path: Path
) -> None:
    """The proxy would resolve the name on its side; the guard refuses before anything is sent."""
    name = host.format(port=free_port())
    client: RegistryClient = make_client()
    with pytest.raises(LookupFailed) as info:
        await client.resolve_digest(parse(f"{name}/team/app:1"))
    assert info.value.context["code"] == "PRIVATE_ADDRESS"
    assert "configure it explicitly to allow" in info.value.message
    assert proxied.seen() == []
