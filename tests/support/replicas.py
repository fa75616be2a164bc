"""One ``baseguard run`` (webhook + operator) against the Kubernetes API double, and calls to it."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp

from controller.cli.commands.run import Started
from controller.operator.replica import Operator
from controller.operator.settings import OperatorSettings
from support.kube_api import ApiDouble
from support.kube_objects import NAMESPACE, SERVICE_HOST, review


def fast_config(identity: str, **overrides: Any) -> OperatorSettings:
    """Intervals short enough for a test, long enough to be exact about what happens when."""
    base = OperatorSettings(
        namespace=NAMESPACE,
        identity=identity,
        lease_duration=2,
        renew_deadline=1.0,
        retry_period=0.1,
        tls_secret="baseguard-tls",
        manage_certificates=True,
        cert_check_interval=0.2,
        tls_poll_interval=0.1,
        status_resync_interval=60.0,
        audit_interval=0.0,
        catalog_refresh_interval=60.0,
    )
    return replace(base, **overrides)


class Replica:
    """One ``baseguard run`` (webhook + operator) against the double, on its own event loop in a thread.

    A thread per replica is what separate pods would give: kopf treats every
    task created on its loop after it starts as its own (and cancels it when it
    stops), so two replicas, or a test's fixtures, must not share its loop.
    """

    def __init__(
        self, run: Callable[[asyncio.Event, Callable[[Started], None]], Awaitable[int]]
    ) -> None:
        self._run = run
        self._started = threading.Event()
        self.started_info: Started | None = None
        self.result: int | BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_flag: asyncio.Event | None = None
        self.sessions: list[aiohttp.ClientSession] = []
        self.thread = threading.Thread(target=self._main, name="replica", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        async def main() -> int:
            self.loop = asyncio.get_running_loop()
            self.stop_flag = asyncio.Event()
            return await self._run(self.stop_flag, self._on_started)

        try:
            self.result = asyncio.run(main())
        except BaseException as exc:  # surfaced by the test through .result
            self.result = exc
        finally:
            self._started.set()

    def _on_started(self, info: Started) -> None:
        self.started_info = info
        self._started.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    @property
    def started(self) -> Started:
        assert self.started_info is not None, f"the replica did not start: {self.result!r}"
        return self.started_info

    @property
    def operator(self) -> Operator:
        return self.started.operator

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.started.port}"

    def session(self, ca_pem: bytes) -> aiohttp.ClientSession:
        """A client that trusts only ``ca_pem`` (it checks the Service's DNS name, like the apiserver)."""
        context = ssl.create_default_context(cadata=ca_pem.decode())
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, force_close=True)
        )
        self.sessions.append(session)
        return session

    async def stop(self) -> int | BaseException | None:
        for session in self.sessions:
            await session.close()
        self.sessions.clear()
        if self.loop is not None and self.stop_flag is not None and not self.done:
            self.loop.call_soon_threadsafe(self.stop_flag.set)
        await asyncio.to_thread(self.thread.join, 15)
        assert self.done, "the replica did not stop"
        return self.result


def secret_ca(double: ApiDouble) -> bytes:
    secret = double.get("v1", "Secret", "baseguard-tls", NAMESPACE)
    assert secret is not None, "the leader made no serving Secret"
    return base64.b64decode(secret["data"]["ca.crt"])


async def call(
    replica: Replica, double: ApiDouble, path: str, body: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST (or GET without a body) to the replica's webhook over verified TLS."""
    session = replica.session(secret_ca(double))
    url = replica.url + path
    if body is None:
        async with session.get(url, server_hostname=SERVICE_HOST) as resp:
            return resp.status, await resp.json()
    async with session.post(url, json=body, server_hostname=SERVICE_HOST) as resp:
        return resp.status, await resp.json()


async def admit(
    replica: Replica, double: ApiDouble, obj: Mapping[str, Any], **kwargs: Any
) -> dict[str, Any]:
    status, answer = await call(replica, double, "/validate", review(obj, **kwargs))
    assert status == 200, answer
    response: dict[str, Any] = answer["response"]
    return response


StartReplica = Callable[..., Awaitable[Replica]]
