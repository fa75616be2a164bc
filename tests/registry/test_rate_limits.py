"""A registry's rate limit (429, ``Retry-After``, ``RateLimit-*``): named, counted, not hammered.

Docker Hub answers 429 with ``RateLimit-Limit: 100;w=21600`` and friends. The
lookup fails with a message that says so (the limit and when it resets), the
host is not asked again before then — not for this image, not for any other
— and the webhook's metrics count both the 429s and the requests held back.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.registry import RegistryProcess

from controller.errors import LookupFailed
from controller.reference import parse
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.limits import rate_limit_of
from controller.webhook.metrics import Metrics

HUB_429 = {
    "Retry-After": "120",
    "RateLimit-Limit": "100;w=21600",
    "RateLimit-Remaining": "0;w=21600",
    "Docker-RateLimit-Source": "203.0.113.7",
}
BODY = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("headers", "reset", "limit"),
    [
        (HUB_429, 120.0, "limit 100 per 21600s, 0 left"),
        ({"RateLimit-Reset": "30", "RateLimit-Limit": "60"}, 30.0, "limit 60"),
        ({"Retry-After": "Tue, 14 Nov 2023 22:16:40 GMT"}, 200.0, None),  # an HTTP date
        ({"X-RateLimit-Reset": "1700000300"}, 300.0, None),  # an epoch timestamp
        ({}, None, None),
    ],
    ids=["docker-hub", "ietf-draft", "http-date", "epoch", "nothing-said"],
)
def test_what_a_429_says(headers: dict[str, str], reset: float | None, limit: str | None) -> None:
    said = rate_limit_of(headers, wall=1_700_000_000.0)
    assert (said.reset_after, said.limit) == (reset, limit)
    assert said.hold == (reset if reset is not None else 30.0)


async def test_a_rate_limited_registry_is_named_counted_and_not_asked_again_before_its_reset(
    proxy: FaultyProxy, registry: RegistryProcess, make_client: Any, unique_repo: str
) -> None:
    one = registry.push_image(f"{unique_repo}/one", "1", [layer({"o": unique_repo})])
    registry.push_image(f"{unique_repo}/two", "1", [layer({"t": unique_repo})])
    clock = Clock()
    client: RegistryClient = make_client(proxy, cache=RegistryCache(clock=clock))
    metrics = Metrics(registry_stats=lambda: client.stats)
    proxy.fault("status", "/manifests/", status=429, headers=HUB_429, body=BODY)

    with pytest.raises(LookupFailed) as first:
        await client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}/one:1"))
    message = first.value.message
    assert f"registry {proxy.host} is rate-limiting requests (HTTP 429, retry after 120s)" in message
    assert "limit 100 per 21600s, 0 left" in message
    assert re.search(r"resets at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", message)

    with pytest.raises(LookupFailed) as other:  # another image, same registry: not asked
        await client.resolve_digest(parse(f"{proxy.host}/{unique_repo}/two:1"))
    assert "rate-limiting requests (HTTP 429" in other.value.message
    assert f"not asking {proxy.host} again for 120s" in other.value.message
    assert proxy.count("/manifests/") == 1

    text = metrics.render().decode()
    assert f'baseguard_registry_rate_limited_total{{registry="{proxy.host}"}} 1.0' in text
    assert f'baseguard_registry_rate_limit_holds_total{{registry="{proxy.host}"}} 1.0' in text

    proxy.clear()  # the limit resets
    clock.now += 121
    assert (await client.fetch_manifest(parse(f"{proxy.host}/{unique_repo}/one:1"))).digest == one.digest
