"""Every registry fault x every ``onLookupFailure``, through the real webhook, within the budget.

The registry client's own suite (``tests/registry/test_faults.py``) shows each
fault becomes a clear ``LookupFailed``. This one shows what a *cluster* sees:
the AdmissionReview answer for a Deployment whose image sits behind a faulty
registry, for each setting of ``lineage.onLookupFailure``:

* ``Deny``: refused (403), the message names the rule, the setting and the fault;
* ``Warn``: admitted with a ``lookup-failed`` warning;
* ``Allow``: admitted without a word;

always within the budget the apiserver's ``timeoutSeconds`` leaves. A registry that
hangs (a *timed* fault) is cut off by the client's 0.3 s timeout under a 2 s review
(0.5 s for lookups). Every other fault is judged by what it is, not by a timer: its
registry gets a client timeout and a review that a loaded machine cannot run out of
(else a slow round trip is reported as a timeout and hides the fault under test).
While the faulty review hangs, the same webhook answers other reviews (images on a
healthy registry) and its health probe promptly: one bad registry must not take every
deploy down with it. Connections are opened before anything is timed, as the apiserver
keeps its own open: what is timed is the webhook, not this test's TLS handshakes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.faulty_proxy import FaultyProxy
from support.hardening import (
    CLIENT_TIMEOUT,
    QUERY,
    TIMEOUT,
    BlackHole,
    Family,
    bases_policy,
    deployment,
    push_family,
)
from support.registry import RegistryProcess

from controller.registry.cache import RegistryCache
from controller.registry.config import RegistryHost

#: An answer must come back before the apiserver gives up, with room for its own overhead.
DEADLINE = TIMEOUT - 0.4
#: Faults that are not about time: the apiserver's timeout and the registry client's,
#: long enough that no round trip on a loaded machine reaches them.
UNTIMED_TIMEOUT = 5.0
UNTIMED_CLIENT_TIMEOUT = 3.0
UNTIMED_QUERY = f"?timeout={UNTIMED_TIMEOUT:g}s"
#: The healthy registry is not under test: its lookups get the client's default room.
HEALTHY_CLIENT_TIMEOUT = 5.0
#: Healthy reviews answered while a faulty one is pending.
HEALTHY_WITHIN = 1.0


@dataclass(frozen=True)
class Fault:
    """A proxy fault and the words the denial must contain (``{host}`` is the proxy)."""

    kind: str
    says: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = "manifest"  # manifest | config | base: which request of the lineage fails

    @property
    def timed(self) -> bool:
        """A fault a timeout must end (its message names the client's timeout)."""
        return "did not answer within" in self.says


FAULTS = {
    "connect-timeout": Fault("", f"did not answer within {CLIENT_TIMEOUT:g}s"),
    "headers-timeout": Fault("delay", f"did not answer within {CLIENT_TIMEOUT:g}s", {"seconds": 5}),
    "body-timeout": Fault("slow_body", f"did not answer within {CLIENT_TIMEOUT:g}s", {"seconds": 5}),
    "trickling-body": Fault("trickle", f"did not answer within {CLIENT_TIMEOUT:g}s", {"seconds": 0.05}),
    "connection-reset": Fault("reset", "registry {host} closed the connection"),
    "http-500": Fault("status", "registry {host} answered HTTP 500", {"status": 500}),
    "http-502": Fault("status", "registry {host} answered HTTP 502", {"status": 502}),
    "http-503-json": Fault(
        "status",
        "UNAVAILABLE: maintenance (HTTP 503 from {host})",
        {"status": 503, "body": b'{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}'},
    ),
    "429-retry-after": Fault(
        "status",
        "registry {host} is rate-limiting requests (HTTP 429, retry after 30s)",
        {"status": 429, "headers": {"Retry-After": "30"}},
    ),
    "wrong-digest": Fault("corrupt", "does not match the registry's Docker-Content-Digest"),
    "wrong-config-digest": Fault("corrupt", "does not match its digest", where="config"),
    "oversized-body": Fault("oversized", "manifest over 4 MiB refused"),
    "oversized-chunked": Fault("oversized_chunked", "manifest over 4 MiB refused"),
    "endless-body": Fault("endless", "manifest over 4 MiB refused"),
    "redirect-loop": Fault("redirect_loop", "too many redirects ({host} GET"),
    "auth-loop": Fault("unauthorized_loop", "authentication refused by {host} (401 after token)"),
    "base-unreachable": Fault("status", "stops at", {"status": 500}, where="base"),
}
SETTINGS = ["Deny", "Warn", "Allow"]


# Pushed once per module: every test has its own webhook and registry client (so no
# cached answer or remembered failure crosses tests), and faults live in the proxy.
# Short names, as real ones are: the denial line is clipped at 600 bytes.


@pytest.fixture(scope="module")
def family(registry: RegistryProcess, _proxy_server: FaultyProxy) -> Family:
    return push_family(registry, "fm/team", host=_proxy_server.host)


@pytest.fixture(scope="module")
def healthy(registry: RegistryProcess) -> Family:
    """The same kind of family served straight from the registry, on another host: no faults there."""
    return push_family(registry, "fm/ok", host=registry.host)


def inject(proxy: FaultyProxy, fault: Fault, family: Family) -> None:
    pattern = {
        "manifest": rf"/{family.repo}/app/manifests/",
        "config": rf"/{family.repo}/app/blobs/",
        "base": rf"/{family.repo}/python/blobs/",
    }[fault.where]
    proxy.fault(fault.kind, pattern, **fault.options)


async def _timed(coro: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = await coro
    return time.monotonic() - started, result


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("name", list(FAULTS))
async def test_fault_through_the_webhook(
    start_webhook: Any,
    registry: RegistryProcess,
    proxy: FaultyProxy,
    black_hole: BlackHole,
    family: Family,
    healthy: Family,
    name: str,
    setting: str,
) -> None:
    fault = FAULTS[name]
    if name == "connect-timeout":  # a registry whose accept queue is full: the SYN is never answered
        host, image = black_hole.host, f"{black_hole.host}/{family.repo}/app:1.0.0"
    else:
        host, image = proxy.host, family.image
        inject(proxy, fault, family)
    timeout, client_timeout = (
        (TIMEOUT, CLIENT_TIMEOUT) if fault.timed else (UNTIMED_TIMEOUT, UNTIMED_CLIENT_TIMEOUT)
    )
    query, deadline = f"?timeout={timeout:g}s", timeout - 0.4
    hook, _ = await start_webhook(
        hosts=[
            RegistryHost(proxy.host, insecure=True, timeout=client_timeout),
            RegistryHost(black_hole.host, insecure=True, timeout=client_timeout),
            RegistryHost(registry.host, insecure=True, timeout=HEALTHY_CLIENT_TIMEOUT),
        ],
        docs=[
            bases_policy(
                f"{proxy.host}/{family.repo}/python",
                f"{registry.host}/{healthy.repo}/python",
                on_failure=setting,
            )
        ],
    )
    review = deployment(app=image, proxy=image)
    good = deployment(app=healthy.image, proxy=healthy.image)
    # warm (under the default 10 s review): the healthy path is cached, connections are open
    assert (await hook.response(good))["allowed"] is True
    await asyncio.gather(*(hook.get("/healthz") for _ in range(7)))

    faulty = asyncio.ensure_future(_timed(hook.response(review, query=query)))
    await asyncio.sleep(0.05)
    meanwhile = await asyncio.gather(
        *(_timed(hook.response(good, query=QUERY)) for _ in range(5)), _timed(hook.get("/healthz"))
    )
    elapsed, response = await faulty

    for took, answer in meanwhile[:-1]:
        assert answer["allowed"] is True and "warnings" not in answer
        assert took < HEALTHY_WITHIN, f"a healthy review took {took:.2f}s next to the fault"
    assert meanwhile[-1][1] == (200, "ok\n") and meanwhile[-1][0] < HEALTHY_WITHIN
    assert elapsed < deadline, f"answered after {elapsed:.2f}s; the apiserver waits {timeout:g}s"
    assert response["uid"] == review["request"]["uid"]
    says = fault.says.format(host=host)
    if setting == "Deny":
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        message = response["status"]["message"]
        assert 'container "app" image ' in message and "policy bases, rule lookup-failed" in message
        assert "lineage.onLookupFailure: Deny" in message
        assert says in message, message
        assert "internal error" not in message
    elif setting == "Warn":
        assert response["allowed"] is True
        assert any(w.startswith('lookup-failed, container "app"') for w in response["warnings"])
        assert "status" not in response
    else:
        assert response == {"uid": review["request"]["uid"], "allowed": True}


async def test_a_failure_is_remembered_briefly_then_asked_again(
    start_webhook: Any, proxy: FaultyProxy, family: Family
) -> None:
    """A 502 refuses a deploy; the failure is remembered for the failure TTL (3 s: a flapping
    registry is not hammered), then the registry is asked again and the deploy passes."""
    now = [1000.0]
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True, timeout=UNTIMED_CLIENT_TIMEOUT)],
        docs=[bases_policy(f"{proxy.host}/{family.repo}/python")],
        cache=RegistryCache(clock=lambda: now[0]),
    )
    review = deployment(app=family.image, proxy=family.image)
    proxy.fault("status", rf"/{family.repo}/app/manifests/", status=502, times=1)
    assert (await hook.response(review, query=UNTIMED_QUERY))["allowed"] is False

    now[0] += 2.0
    remembered = await hook.response(review, query=UNTIMED_QUERY)
    assert remembered["allowed"] is False and "HTTP 502" in remembered["status"]["message"]
    assert proxy.count(r"/app/manifests/") == 1

    now[0] += 1.5
    assert (await hook.response(review, query=UNTIMED_QUERY))["allowed"] is True
    assert proxy.count(r"/app/manifests/") == 2


async def test_a_flood_of_reviews_for_a_hung_registry_stays_bounded(
    start_webhook: Any, proxy: FaultyProxy, family: Family
) -> None:
    """Fifty concurrent reviews of the same hung image: one registry request, every answer in time."""
    proxy.fault("delay", rf"/{family.repo}/app/manifests/", seconds=5)
    hook, _ = await start_webhook(
        hosts=[RegistryHost(proxy.host, insecure=True)],
        docs=[bases_policy(f"{proxy.host}/{family.repo}/python", on_failure="Warn")],
    )
    review = deployment(app=family.image, proxy=family.image)
    # fifty connections open first, as the apiserver keeps them: the handshakes are not timed
    await asyncio.gather(*(hook.get("/healthz") for _ in range(50)))

    answers = await asyncio.gather(*(_timed(hook.response(review, query=QUERY)) for _ in range(50)))

    assert all(answer["allowed"] is True and answer["warnings"] for _, answer in answers)
    assert max(took for took, _ in answers) < DEADLINE
    assert proxy.count(r"/app/manifests/") == 1  # joined one lookup instead of fifty
