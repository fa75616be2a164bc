"""The real webhook on 127.0.0.1 over real TLS, and an aiohttp client that trusts its CA.

Certificates are module-scoped (key generation is the slow part); each test
starts its own server (a few milliseconds), so no test sees another's policies
or metrics.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from webhook_support import default_docs, fill_store, fixture

from controller.assess import Assessor
from controller.policy.store import PolicyStore
from controller.settings import Settings
from controller.webhook.app import make_app
from controller.webhook.metrics import Metrics
from controller.webhook.tls import CertReloader, Pair, self_signed


@dataclass(frozen=True)
class Certs:
    pair: Pair
    directory: Path
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pair = self_signed(["localhost", "127.0.0.1"])
    directory = tmp_path_factory.mktemp("webhook-tls")
    ca, cert, key = pair.write(directory)
    return Certs(pair, directory, ca, cert, key)


@dataclass
class Webhook:
    """A running webhook and a client for it."""

    url: str
    session: aiohttp.ClientSession
    store: PolicyStore
    metrics: Metrics
    reloader: CertReloader
    runner: web.AppRunner
    sent: list[str] = field(default_factory=list)

    async def review(
        self,
        review: Mapping[str, Any] | str | bytes,
        *,
        endpoint: str = "validate",
        query: str = "?timeout=10s",
    ) -> tuple[int, dict[str, Any]]:
        """POST a review (a fixture name, a dict, or raw bytes); (HTTP status, JSON body)."""
        if isinstance(review, str) and review.endswith(".json"):
            review = fixture(review)
        data = review if isinstance(review, bytes | str) else json.dumps(review)
        async with self.session.post(
            f"{self.url}/{endpoint}{query}",
            data=data,
            headers={"Content-Type": "application/json"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def response(self, review: Mapping[str, Any] | str, **kwargs: Any) -> dict[str, Any]:
        """The ``response`` of a review that must be answered with HTTP 200."""
        status, body = await self.review(review, **kwargs)
        assert status == 200, body
        assert body["apiVersion"] == "admission.k8s.io/v1"
        assert body["kind"] == "AdmissionReview"
        response: dict[str, Any] = body["response"]
        return response

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}") as resp:
            return resp.status, await resp.text()


StartWebhook = Callable[..., Any]


@pytest_asyncio.fixture
async def start_webhook(certs: Certs) -> AsyncIterator[StartWebhook]:
    """``await start_webhook(assessor=..., docs=[...], settings=...)`` → :class:`Webhook`."""
    started: list[Webhook] = []

    async def start(
        *,
        assessor: Assessor | None = None,
        docs: list[Mapping[str, Any]] | None = None,
        store: PolicyStore | None = None,
        settings: Settings | None = None,
        loaded: bool = True,
        **app_kwargs: Any,
    ) -> Webhook:
        if store is None:
            store = PolicyStore()
            if loaded:
                fill_store(store, list(docs if docs is not None else default_docs()))
        settings = settings or Settings(host="127.0.0.1", port=0)
        metrics = Metrics(snapshot=lambda: store.snapshot)
        app = make_app(
            store=store,
            assessor=assessor or Assessor(None),
            settings=settings,
            metrics=metrics,
            **app_kwargs,
        )
        reloader = CertReloader(certs.cert, certs.key)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=reloader.context)
        await site.start()
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=certs.client_context(), limit=0)
        )
        hook = Webhook(f"https://127.0.0.1:{port}", session, store, metrics, reloader, runner)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        await hook.session.close()
        await hook.runner.cleanup()


@pytest_asyncio.fixture
async def webhook(start_webhook: StartWebhook) -> Webhook:
    """The webhook, offline, with the three policies of ``tests/data/admission/policies``."""
    hook: Webhook = await start_webhook()
    return hook
