"""Transport bounds over real TLS sockets: no connection or review can hold the webhook.

Each test opens real sockets to the real listener (``listener.listen``) with a
real handshake, plays a misbehaving client, and checks what a client sees: its
socket closed, or a quick HTTP status with a reason, while honest reviews are
answered meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from support.webhook import Certs, StartWebhook, Webhook, fixture

from controller.webhook.settings import Settings

HEAD = (
    "POST /validate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
)


def quick(**bounds: Any) -> Settings:
    return Settings(host="127.0.0.1", port=0, **bounds)


async def tls(hook: Webhook, certs: Certs) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with its TLS handshake done."""
    return await asyncio.open_connection(
        "127.0.0.1", hook.port, ssl=certs.client_context(), server_hostname="127.0.0.1"
    )


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset); fails past ``seconds``."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except (ConnectionResetError, OSError):
        pass
    return time.monotonic() - start


async def raw_review(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> tuple[int, dict[str, Any]]:
    """One complete request on an open connection: (status, JSON body)."""
    writer.write(HEAD.format(length=len(body)).encode() + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, json.loads(await reader.readexactly(length))


async def trickle(writer: asyncio.StreamWriter, text: bytes, every: float) -> None:
    """Send ``text`` a byte at a time, until the server closes the connection."""
    try:
        for byte in text:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)
    except (ConnectionError, OSError):
        pass


async def test_connections_that_trickle_their_headers_are_closed(
    start_webhook: StartWebhook, certs: Certs
) -> None:
    """Slowloris: 30 TLS connections sending a header byte every 50 ms are all closed
    at the header timeout, and an honest review is answered meanwhile."""
    hook = await start_webhook(settings=quick(header_timeout=1.0))
    conns = [await tls(hook, certs) for _ in range(30)]
    slow = HEAD.format(length=10).encode() * 10
    tricklers = [asyncio.create_task(trickle(w, slow, 0.05)) for _, w in conns]
    answer = await hook.response("deployment-create.json")
    assert answer["allowed"] is False  # judged, not stalled
    waited = await asyncio.gather(*(closed_within(r, 5.0) for r, _ in conns))
    assert max(waited) < 3.0
    await asyncio.gather(*tricklers)
    closed = hook.metrics.sample("baseguard_connections_closed_total", {"reason": "slow-headers"})
    assert closed == 30


async def test_a_kept_alive_connection_may_idle_but_not_trickle_its_next_head(
    start_webhook: StartWebhook, certs: Certs
) -> None:
    hook = await start_webhook(settings=quick(header_timeout=0.5))
    reader, writer = await tls(hook, certs)
    body = json.dumps(fixture("deployment-create.json")).encode()
    assert (await raw_review(reader, writer, body))[0] == 200
    await asyncio.sleep(1.0)  # idle for twice the header timeout: the apiserver reuses it
    assert (await raw_review(reader, writer, body))[0] == 200
    trickler = asyncio.create_task(trickle(writer, HEAD.format(length=10).encode(), 0.1))
    assert await closed_within(reader, 3.0) < 2.0
    await trickler


async def test_a_client_that_never_completes_the_handshake_is_dropped(
    start_webhook: StartWebhook,
) -> None:
    hook = await start_webhook(settings=quick(handshake_timeout=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)  # TCP, no TLS
    writer.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, then silence
    assert await closed_within(reader, 3.0) < 2.0
    writer.close()


async def test_connections_past_the_limit_are_closed_and_the_others_keep_working(
    start_webhook: StartWebhook, certs: Certs
) -> None:
    hook = await start_webhook(settings=quick(max_connections=3))
    held = [await tls(hook, certs) for _ in range(3)]
    reader, _ = await tls(hook, certs)  # the fourth
    assert await closed_within(reader, 2.0) < 1.0
    body = json.dumps(fixture("deployment-create.json")).encode()
    assert (await raw_review(*held[0], body))[0] == 200
    held[1][1].close()
    await held[1][1].wait_closed()
    await asyncio.sleep(0.1)
    again = await tls(hook, certs)  # a freed slot is usable again
    assert (await raw_review(*again, body))[0] == 200
    over = hook.metrics.sample("baseguard_connections_closed_total", {"reason": "over-limit"})
    assert over == 1


async def test_reviews_past_the_in_flight_limit_get_a_quick_429_with_a_reason(
    start_webhook: StartWebhook,
) -> None:
    release, both = asyncio.Event(), asyncio.Event()
    entered = 0

    async def stuck(review: Any, *, endpoint: Any, budget: float, started: float) -> Any:
        nonlocal entered
        entered += 1
        if entered == 2:
            both.set()
        await release.wait()
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": review.uid, "allowed": True}}  # fmt: skip

    hook = await start_webhook(settings=quick(max_in_flight=2), reviewer=stuck)
    held = [asyncio.create_task(hook.review("deployment-create.json")) for _ in range(2)]
    await asyncio.wait_for(both.wait(), 5.0)
    start = time.monotonic()
    status, body = await hook.review("deployment-create.json")
    assert time.monotonic() - start < 1.0
    assert status == 429
    assert body["reason"] == "TooManyRequests" and "max_in_flight" in body["message"]
    assert "failurePolicy" in body["message"]
    release.set()
    assert [status for status, _ in await asyncio.gather(*held)] == [200, 200]
    assert (await hook.review("deployment-create.json"))[0] == 200  # the slots are free again
    busy = {"endpoint": "validate", "kind": "", "verdict": "busy"}
    assert hook.metrics.sample("baseguard_admission_requests_total", busy) == 1


async def test_a_body_that_stops_arriving_gets_408(
    start_webhook: StartWebhook, certs: Certs
) -> None:
    hook = await start_webhook(settings=quick(body_timeout=0.5))
    reader, writer = await tls(hook, certs)
    writer.write(HEAD.format(length=1000).encode() + b'{"apiVersion":')
    await writer.drain()
    async with asyncio.timeout(3.0):
        status = await reader.readline()
    assert status.split()[1] == b"408"
    assert await closed_within(reader, 4.0) < 3.0  # not held for the rest of the body


def test_the_defaults_bound_every_connection() -> None:
    """Documented defaults: every bound is on unless configured otherwise."""
    s = Settings()
    assert 0 < s.handshake_timeout <= 10 and 0 < s.header_timeout <= 10
    assert 0 < s.body_timeout <= 10 and s.idle_timeout > 90  # longer than the apiserver's 90 s
    assert s.max_connections > 0 and s.max_in_flight > 0
