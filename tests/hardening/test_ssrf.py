"""An image name must not make the webhook probe the cluster network (docs/threat-model.md), end to end.

Whoever may create a pod chooses its image names, and whoever controls a
registry chooses what its manifests claim and where it redirects. None of it
may steer the controller to a loopback, private, link-local or metadata
address that the operator did not configure. Each test puts a listener on such
an address where the host allows it and asserts that no connection ever
arrives; a positive control shows the same listener *is* reached once its
address is configured, so the witness can fail.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.hardening import QUERY, Listener, bases_policy, pod
from support.images import layer
from support.registry import RegistryProcess

from controller.registry import media
from controller.registry.config import RegistryHost

QUIET = 0.2  # seconds a listener is given for a late connection to show up


def lookup_policy(allowed: str = "*", **spec: Any) -> dict[str, Any]:
    """A lineage policy that needs the registry for every image (so every image is looked up)."""
    doc = bases_policy(allowed, on_failure="Deny")
    doc["spec"]["lineage"].update(spec)
    return doc


async def denied_for(hook: Any, image: str) -> str:
    started = time.monotonic()
    response = await hook.response(pod(image), query=QUERY)
    assert time.monotonic() - started < 1.0  # refused, not timed out connecting
    assert response["allowed"] is False, response
    message: str = response["status"]["message"]
    assert "rule lookup-failed" in message
    return message


@pytest.mark.parametrize(
    ("fixture_name", "template", "kind"),
    [
        ("listener_127_0_0_2", "127.0.0.2:{port}/team/app:1.0.0", "loopback"),
        ("listener_localhost", "localhost:{port}/team/app:1.0.0", "loopback"),
        ("listener_localhost", "2130706433:{port}/team/app:1.0.0", "loopback"),
        ("listener_localhost", "0.0.0.0:{port}/team/app:1.0.0", "reserved"),
        ("listener_ipv6", "[::1]:{port}/team/app:1.0.0", "loopback"),
    ],
    ids=["127.0.0.2", "localhost-name", "decimal-ip-name", "unspecified", "ipv6-loopback"],
)
async def test_an_image_on_a_local_address_is_never_contacted(
    start_webhook: Any, request: pytest.FixtureRequest, fixture_name: str, template: str, kind: str
) -> None:
    listener: Listener = request.getfixturevalue(fixture_name)
    hook, client = await start_webhook(hosts=[], docs=[lookup_policy()])
    image = template.format(port=listener.port)

    message = await denied_for(hook, image)

    assert f"resolves to a {kind} address" in message
    assert "configure it explicitly to allow" in message
    await asyncio.sleep(QUIET)
    assert listener.accepted == []
    assert client.stats.total == 0


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("169.254.169.254/latest/meta-data:1", "cloud metadata"),
        ("[fd00:ec2::254]/latest/api:1", "cloud metadata"),
        ("100.100.100.200/latest/meta:1", "cloud metadata"),
        ("10.0.0.1/team/app:1.0.0", "private"),
        ("192.168.0.10:5000/team/app:1.0.0", "private"),
        ("172.16.0.1/team/app:1.0.0", "private"),
        ("169.254.10.1/team/app:1.0.0", "link-local"),
        ("[fe80::1]:5000/team/app:1.0.0", "link-local"),
    ],
    ids=["aws-gcp-metadata", "aws-metadata-v6", "alibaba-metadata", "rfc1918-10", "rfc1918-192",
         "rfc1918-172", "link-local-v4", "link-local-v6"],
)
async def test_an_image_on_a_private_or_metadata_address_is_refused_without_a_request(
    start_webhook: Any, image: str, kind: str
) -> None:
    """Addresses a test cannot listen on: no request is even attempted (the client counts none)."""
    hook, client = await start_webhook(hosts=[], docs=[lookup_policy()])

    message = await denied_for(hook, image)

    assert f"resolves to a {kind} address" in message
    assert client.stats.total == 0


async def test_configured_explicitly_the_same_address_is_contacted(
    start_webhook: Any, listener_127_0_0_2: Listener
) -> None:
    """The positive control: the operator's explicit entry opens exactly that host."""
    host = f"127.0.0.2:{listener_127_0_0_2.port}"
    hook, _ = await start_webhook(hosts=[RegistryHost(host, insecure=True)], docs=[lookup_policy()])

    message = await denied_for(hook, f"{host}/team/app:1.0.0")

    assert f"registry {host} closed the connection" in message
    assert listener_127_0_0_2.accepted  # the witness works


async def test_a_base_claim_pointing_inside_is_not_followed(
    start_webhook: Any, registry: RegistryProcess, unique_repo: str, listener_127_0_0_2: Listener
) -> None:
    """A registry's content is attacker-controlled too: its base annotation is only a claim."""
    evil = f"127.0.0.2:{listener_127_0_0_2.port}/internal/base:1"
    app = registry.push_image(
        unique_repo,
        "1.0.0",
        [layer({"srv/app": unique_repo})],
        annotations={media.BASE_NAME: evil, media.BASE_DIGEST: "sha256:" + "e" * 64},
    )
    hook, _ = await start_webhook(hosts=[RegistryHost(registry.host, insecure=True)], docs=[lookup_policy()])

    response = await hook.response(pod(app.tagged), query=QUERY)

    assert response["allowed"] is False
    assert "resolves to a loopback address" in response["status"]["message"]
    await asyncio.sleep(QUIET)
    assert listener_127_0_0_2.accepted == []


async def test_a_catalog_entry_pointing_inside_is_not_fetched(
    start_webhook: Any, registry: RegistryProcess, unique_repo: str, listener_127_0_0_2: Listener
) -> None:
    """A policy author's mistake (or a malicious namespaced policy) cannot open the network either."""
    app = registry.push_image(unique_repo, "1.0.0", [layer({"srv/app": unique_repo})])
    catalog = [f"127.0.0.2:{listener_127_0_0_2.port}/internal/base:1"]
    hook, _ = await start_webhook(
        hosts=[RegistryHost(registry.host, insecure=True)], docs=[lookup_policy("docker.io/library/python", catalog=catalog)]
    )

    response = await hook.response(pod(app.tagged), query=QUERY)

    assert response["allowed"] is False
    assert "rule unknown-base" in response["status"]["message"]
    await asyncio.sleep(QUIET)
    assert listener_127_0_0_2.accepted == []


@pytest.mark.parametrize("where", ["manifest", "blob"])
async def test_a_redirect_inside_is_not_followed(
    start_webhook: Any, proxy: FaultyProxy, registry: RegistryProcess, unique_repo: str,
    listener_127_0_0_2: Listener, where: str,
) -> None:
    registry.push_image(unique_repo, "1.0.0", [layer({"srv/app": unique_repo})])
    target = f"http://127.0.0.2:{listener_127_0_0_2.port}/storage/blob"
    proxy.fault("redirect", "/manifests/" if where == "manifest" else "/blobs/", location=target)
    hook, _ = await start_webhook(hosts=[RegistryHost(proxy.host, insecure=True)], docs=[lookup_policy()])

    message = await denied_for(hook, f"{proxy.host}/{unique_repo}:1.0.0")

    expected = "redirected a manifest request to another host" if where == "manifest" else "loopback address"
    assert expected in message
    await asyncio.sleep(QUIET)
    assert listener_127_0_0_2.accepted == []


async def test_a_token_realm_inside_is_not_asked(
    start_webhook: Any, proxy: FaultyProxy, registry: RegistryProcess, unique_repo: str,
    listener_127_0_0_2: Listener,
) -> None:
    """A 401 names where to get a token; that URL is registry-controlled and guarded the same way."""
    registry.push_image(unique_repo, "1.0.0", [layer({"srv/app": unique_repo})])
    realm = f"https://127.0.0.2:{listener_127_0_0_2.port}/token"
    proxy.fault(
        "status", "/manifests/", status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'},
    )
    hook, _ = await start_webhook(hosts=[RegistryHost(proxy.host, insecure=True)], docs=[lookup_policy()])

    message = await denied_for(hook, f"{proxy.host}/{unique_repo}:1.0.0")

    assert "resolves to a loopback address" in message
    await asyncio.sleep(QUIET)
    assert listener_127_0_0_2.accepted == []
