"""A misbehaving registry (real registry behind a fault-injecting proxy) → LookupFailed, in bounded time.

Elapsed-time assertions bound the *worst case* (budget + slack), they do not
measure speed: a hung body or an endless stream must not hold an admission.

Only the faults that hang (``budget`` > 0) run under the short client timeout they are
about. The others get a timeout no round trip on a loaded machine reaches: under the
short one, a slow hop was reported as a timeout and hid the fault under test (a redirect
loop is four hops through the proxy). Their elapsed bound stays; no timer meets it for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry import media
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryHost

BASE = layer({"etc/os-release": "ID=alpine\n"})
TIMEOUT = 0.5
SLACK = 1.5
#: The client timeout for faults that are not about time: far above ``SLACK``.
UNTIMED_TIMEOUT = 5.0


@dataclass(frozen=True)
class Case:
    kind: str
    message: str  # substring, with {host} and {path}
    fault: dict[str, Any] = field(default_factory=dict)
    by: str = "tag"  # "tag" | "digest" | "config"
    budget: float = 0.0  # seconds the fault may legitimately cost, on top of the slack


CASES = [
    Case("delay", "registry {host} did not answer within 0.5s (GET {path})", {"seconds": 3}, budget=TIMEOUT),
    Case("slow_body", "registry {host} did not answer within 0.5s (GET {path})", {"seconds": 3}, budget=TIMEOUT),
    Case("trickle", "registry {host} did not answer within 0.5s (GET {path})", {"seconds": 0.05}, budget=TIMEOUT),
    Case("reset", "registry {host} closed the connection (GET {path})"),
    Case("status", "registry {host} answered HTTP 502 (GET {path})", {"status": 502}),
    Case(
        "status",
        "registry {host} answered HTTP 500 (GET {path})",
        {"status": 500, "body": b"<html>oops</html>"},
    ),
    Case(
        "status",
        "UNKNOWN: something broke (HTTP 503 from {host})",
        {"status": 503, "body": b'{"errors":[{"code":"UNKNOWN","message":"something broke"}]}'},
    ),
    Case(
        "status",
        "registry {host} is rate-limiting requests (HTTP 429, retry after 7s)",
        {"status": 429, "headers": {"Retry-After": "7"},
         "body": b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'},
    ),
    Case("corrupt", "does not match the registry's Docker-Content-Digest"),
    Case("corrupt", "does not match its digest (got sha256:", by="digest"),
    Case("corrupt", "does not match its digest (got sha256:", by="config"),
    Case("oversized", "manifest over 4 MiB refused ({host} GET {path}, Content-Length 5242880)"),
    Case("oversized_chunked", "manifest over 4 MiB refused ({host} GET {path})"),
    Case("endless", "manifest over 4 MiB refused ({host} GET {path})"),
    Case("oversized", "config over 4 MiB refused", by="config"),
    Case("redirect_loop", "too many redirects ({host} GET {path})"),
    Case("redirect_loop", "too many redirects ({host} GET {path})", by="config"),
    Case("unauthorized_loop", "authentication refused by {host} (401 after token)"),
]
IDS = [
    "delay-before-headers", "slow-body", "trickle-forever", "connection-reset", "502-empty",
    "500-html", "503-json-error", "429-retry-after", "corrupt-by-tag", "corrupt-by-digest",
    "corrupt-config", "oversized-content-length", "oversized-chunked", "endless-body",
    "oversized-config", "redirect-loop-manifest", "redirect-loop-blob", "401-loop",
]


@pytest.fixture
def image(registry: RegistryProcess, unique_repo: str) -> Any:
    return registry.push_image(unique_repo, "v1", [BASE], labels={"x": "y"})


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_fault_is_a_clear_lookup_failure_within_budget(
    proxy: FaultyProxy, make_client: Any, image: Any, case: Case
) -> None:
    client: RegistryClient = make_client(proxy, timeout=TIMEOUT if case.budget else UNTIMED_TIMEOUT)
    ref = parse(f"{proxy.host}/{image.repository}:v1")
    manifest = None
    if case.by == "config":
        fetched = await make_client(proxy, timeout=UNTIMED_TIMEOUT).fetch_manifest(ref)  # not under test
        assert isinstance(fetched.manifest, media.ImageManifest)
        manifest = fetched.manifest
        path = f"/v2/{image.repository}/blobs/{image.config_digest}"
        proxy.fault(case.kind, "/blobs/", **case.fault)
    else:
        path = f"/v2/{image.repository}/manifests/" + ("v1" if case.by == "tag" else image.digest)
        proxy.fault(case.kind, "/manifests/", **case.fault)

    started = time.monotonic()
    with pytest.raises(LookupFailed) as info:
        if manifest is not None:
            await client.fetch_config(ref, manifest)
        elif case.by == "digest":
            await client.fetch_manifest(ref, image.digest)
        else:
            await client.fetch_manifest(ref)
    elapsed = time.monotonic() - started

    assert case.message.format(host=proxy.host, path=path) in str(info.value)
    assert elapsed < case.budget + SLACK, f"took {elapsed:.2f}s"


async def test_401_loop_asks_for_one_token_and_retries_once(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    client: RegistryClient = make_client(proxy)
    proxy.fault("unauthorized_loop", "/manifests/")

    with pytest.raises(LookupFailed):
        await client.fetch_manifest(parse(f"{proxy.host}/{image.repository}:v1"))

    assert proxy.count("/manifests/") == 2
    assert proxy.count("^/_token") == 1


async def test_429_failure_is_remembered_for_retry_after(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    now = [1000.0]
    from controller.registry.cache import RegistryCache

    client: RegistryClient = make_client(proxy, cache=RegistryCache(clock=lambda: now[0]))
    proxy.fault("status", "/manifests/", status=429, headers={"Retry-After": "7"}, times=1)
    ref = parse(f"{proxy.host}/{image.repository}:v1")

    for advance in (0.0, 3.5, 3.0):  # 0, 3.5 and 6.5 s later: still inside Retry-After
        now[0] += advance
        with pytest.raises(LookupFailed, match="HTTP 429"):
            await client.fetch_manifest(ref)
    assert proxy.count("/manifests/") == 1

    now[0] += 1.0  # 7.5 s: asks again, and the registry has recovered
    assert (await client.fetch_manifest(ref)).digest == image.digest
    assert proxy.count("/manifests/") == 2


async def test_a_timeout_does_not_poison_the_connection_pool(
    proxy: FaultyProxy, make_client: Any, image: Any
) -> None:
    client: RegistryClient = make_client(proxy, timeout=TIMEOUT)
    proxy.fault("slow_body", "/manifests/", seconds=2, times=1)
    ref = parse(f"{proxy.host}/{image.repository}:v1")
    with pytest.raises(LookupFailed, match="did not answer"):
        await client.fetch_manifest(ref, image.digest)
    client.cache.failures.clear()

    assert (await client.fetch_manifest(ref, image.digest)).digest == image.digest


async def test_refused_connection_says_cannot_connect(make_client: Any) -> None:
    from support.registry import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    client: RegistryClient = make_client(RegistryHost(host, insecure=True), timeout=TIMEOUT)

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(f"{host}/team/app:v1"))

    assert str(info.value).startswith(f"cannot connect to registry {host}: ")
    assert str(info.value).endswith("(GET /v2/team/app/manifests/v1)")


async def test_manifest_redirect_to_another_host_is_refused(
    proxy: FaultyProxy, registry: RegistryProcess, make_client: Any, image: Any
) -> None:
    target = f"{registry.url}/v2/{image.repository}/manifests/v1"
    proxy.fault("redirect", "/manifests/", location=target)
    client: RegistryClient = make_client(proxy, registry)

    with pytest.raises(LookupFailed) as info:
        await client.fetch_manifest(parse(f"{proxy.host}/{image.repository}:v1"))

    assert (
        f"registry {proxy.host} redirected a manifest request to another host ({registry.host}); refused"
        in str(info.value)
    )


async def test_same_host_redirect_is_followed(
    proxy: FaultyProxy, make_client: Any, image: Any, unique_repo: str
) -> None:
    proxy.fault("redirect", "/manifests/moved", location=f"/v2/{unique_repo}/manifests/v1")
    client: RegistryClient = make_client(proxy)

    fetched = await client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}:moved"))

    assert fetched.digest == image.digest
