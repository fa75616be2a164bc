"""An image name must not make the controller probe the cluster network (docs/threat-model.md)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.preconditions import unavailable

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.addresses import GuardedResolver, PrivateAddressError, address_kind
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost

BASE = layer({"etc/os-release": "ID=rhel\n"})
LOOPBACK = r"(?:127\.0\.0\.1|::1)"  # what ``localhost`` resolves to first depends on the host


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("10.0.0.5:5000/team/app:v1", "registry host 10.0.0.5:5000 resolves to a private address"),
        ("192.168.1.10/team/app:v1", "registry host 192.168.1.10 resolves to a private address"),
        ("169.254.169.254/latest/meta-data:v1", "registry host 169.254.169.254 resolves to a cloud metadata address"),
        ("[fd00:ec2::254]/latest/api:v1", "registry host [fd00:ec2::254] resolves to a cloud metadata address"),
        ("100.100.100.200/latest/meta:v1", "registry host 100.100.100.200 resolves to a cloud metadata address"),
        ("100.64.0.1:443/team/app:v1", "registry host 100.64.0.1:443 resolves to a private address"),
        ("127.0.0.1:1/team/app:v1", "registry host 127.0.0.1:1 resolves to a loopback address"),
        ("[::1]:5000/team/app:v1", "registry host [::1]:5000 resolves to a loopback address"),
        ("0.0.0.0:5000/team/app:v1", "registry host 0.0.0.0:5000 resolves to a reserved address"),
        ("169.254.10.1/team/app:v1", "registry host 169.254.10.1 resolves to a link-local address"),
        ("localhost:5000/team/app:v1", "registry host localhost:5000 resolves to a loopback address (127.0.0.1)"),
        ("2130706433:5000/team/app:v1", "registry host 2130706433:5000 resolves to a loopback address (127.0.0.1)"),
    ],
    ids=[
        "rfc1918-10", "rfc1918-192", "aws-metadata", "aws-metadata-v6", "alibaba-metadata", "cgnat",
        "loopback", "loopback-v6", "unspecified", "link-local", "localhost-name", "decimal-ip-name",
    ],
)
@pytest.mark.parametrize("call", ["fetch_manifest", "resolve_digest"])
async def test_private_hosts_are_refused_without_contact(
    make_client: Any, image: str, message: str, call: str
) -> None:
    client: RegistryClient = make_client(timeout=5)  # nothing configured
    started = time.monotonic()

    with pytest.raises(LookupFailed) as info:
        await getattr(client, call)(parse(image))

    host = message.split()[2]
    hint = f"configure it explicitly to allow: an entry `- host: {host}` under `registries:` in --registry-config (in the chart: registryConfig)"
    expected = re.escape(f"{message}; {hint}").replace(r"127\.0\.0\.1", LOOPBACK)
    assert re.fullmatch(expected, str(info.value)), str(info.value)
    assert info.value.context["code"] == "PRIVATE_ADDRESS"
    assert client.stats.total == 0
    assert time.monotonic() - started < 1.0  # refused, not timed out connecting


async def test_configured_address_elsewhere_does_not_allow_another_name(
    proxy: FaultyProxy, make_client: Any, unique_repo: str
) -> None:
    """127.0.0.1:PORT is configured; ``localhost:PORT`` reaches the same listener but is not."""
    proxy.fault("status", "", status=500)
    client: RegistryClient = make_client(proxy)

    with pytest.raises(LookupFailed, match="resolves to a loopback address"):
        await client.fetch_manifest(parse(f"localhost:{proxy.port}/{unique_repo}:v1"))

    assert proxy.count("") == 0


@pytest.fixture
def listener_127_0_0_2() -> Iterator[tuple[str, list[object]]]:
    """A TCP listener on 127.0.0.2 that records every accepted connection."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError as exc:  # pragma: no cover - depends on the host's loopback setup
        unavailable(f"cannot bind 127.0.0.2: {exc} (the SSRF tests need a loopback listener)")
    sock.listen(8)
    sock.settimeout(0.1)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                continue
            accepted.append(addr)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.2:{sock.getsockname()[1]}", accepted
    stop.set()
    thread.join(2)
    sock.close()


async def test_unconfigured_loopback_listener_gets_no_connection(
    make_client: Any, listener_127_0_0_2: tuple[str, list[object]]
) -> None:
    host, accepted = listener_127_0_0_2
    port = host.split(":")[1]
    client: RegistryClient = make_client(RegistryHost(f"127.0.0.1:{port}", insecure=True))

    with pytest.raises(LookupFailed, match=f"registry host {host} resolves to a loopback address"):
        await client.fetch_manifest(parse(f"{host}/team/app:v1"))

    await asyncio.sleep(0.2)
    assert accepted == []


async def test_explicit_entry_allows_a_private_host(
    registry: Any, proxy: FaultyProxy, make_client: Any, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "v1", [BASE])
    name = f"localhost:{proxy.port}"
    client: RegistryClient = make_client(RegistryHost(name, insecure=True))

    assert (await client.fetch_manifest(parse(f"{name}/{unique_repo}:v1"))).digest == pushed.digest


async def test_redirect_into_the_private_network_is_refused(
    registry: Any, proxy: FaultyProxy, make_client: Any, unique_repo: str
) -> None:
    pushed = registry.push_image(unique_repo, "v1", [BASE])
    target = f"localhost:{proxy.port}"
    proxy.fault("redirect", "/blobs/", location=f"http://{target}/_storage/{unique_repo}/blobs/{pushed.config_digest}")
    client: RegistryClient = make_client(proxy)
    ref = parse(f"{proxy.host}/{unique_repo}:v1")
    fetched = await client.fetch_manifest(ref)
    assert isinstance(fetched.manifest, media.ImageManifest)

    with pytest.raises(LookupFailed) as info:
        await client.fetch_config(ref, fetched.manifest)

    assert re.fullmatch(
        re.escape(f"registry host {target} resolves to a loopback address (")
        + LOOPBACK
        + re.escape(
            f"); configure it explicitly to allow: an entry `- host: {target}` under `registries:` "
            "in --registry-config (in the chart: registryConfig)"
        ),
        str(info.value),
    ), str(info.value)
    assert proxy.count("^/_storage/") == 0


async def test_unresolvable_host_says_so(make_client: Any) -> None:
    client: RegistryClient = make_client(timeout=2)

    with pytest.raises(LookupFailed, match=r"^cannot resolve registry host registry\.invalid"):
        await client.fetch_manifest(parse("registry.invalid/team/app:v1"))


async def test_resolver_guard_catches_names_at_connect_time() -> None:
    """The connector's resolver re-checks the addresses actually used (DNS rebinding)."""
    guarded = GuardedResolver(lambda host: False)
    allowed = GuardedResolver(lambda host: host == "localhost")
    try:
        with pytest.raises(PrivateAddressError, match=r"localhost resolves to a loopback address \(127\.0\.0\.1\)"):
            await guarded.resolve("localhost", 80, socket.AF_INET)
        results = await allowed.resolve("localhost", 80, socket.AF_INET)
        assert {r["host"] for r in results} == {"127.0.0.1"}
    finally:
        await guarded.close()
        await allowed.close()


async def test_dns_rebinding_between_check_and_connect_is_refused_by_the_client(
    make_client: Any, listener_127_0_0_2: tuple[str, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that is public when checked and loopback when connected never gets a connection.

    The client's own connector must re-check (its GuardedResolver): the per-request
    check alone would connect to whatever the second DNS answer says.
    """
    host, accepted = listener_127_0_0_2
    port = int(host.split(":")[1])
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers: list[str] = []

    async def rebinding(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name != "rebind.example":
            return await real(name, *args, **kwargs)
        address = "93.184.216.34" if not answers else "127.0.0.2"  # public first, then loopback
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    client: RegistryClient = make_client(timeout=2)

    with pytest.raises(LookupFailed, match=r"rebind\.example.*loopback address \(127\.0\.0\.2\)"):
        await client.fetch_manifest(parse(f"rebind.example:{port}/team/app:v1"))

    await asyncio.sleep(0.2)
    assert answers[0] == "93.184.216.34" and "127.0.0.2" in answers, answers
    assert accepted == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "reserved"),
        ("fc00::1", "private"),
        ("not-an-ip", "unparsable"),
    ],
    ids=["public-v4", "public-v6", "mapped-private", "mapped-metadata", "scoped-link-local", "multicast", "ula", "junk"],
)
def test_address_kind(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind
