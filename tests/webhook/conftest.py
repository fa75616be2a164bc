"""The real webhook on 127.0.0.1 over real TLS, and an aiohttp client that trusts its CA.

Certificates are module-scoped (key generation is the slow part); each test
starts its own server (a few milliseconds), so no test sees another's policies
or metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.webhook import Certs, StartWebhook, Webhook, default_docs, fill_store

from controller.assess import Assessor
from controller.policy.store import PolicyStore
from controller.tls.serving import CertReloader, self_signed
from controller.webhook.app import make_app
from controller.webhook.listener import listen
from controller.webhook.metrics import Metrics
from controller.webhook.settings import Settings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pair = self_signed(["localhost", "127.0.0.1"])
    directory = tmp_path_factory.mktemp("webhook-tls")
    ca, cert, key = pair.write(directory)
    return Certs(pair, directory, ca, cert, key)


@pytest_asyncio.fixture
async def start_webhook(certs: Certs) -> AsyncIterator[StartWebhook]:
    """``await start_webhook(assessor=..., docs=[...], settings=...)`` → a running :class:`Webhook`."""
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
        own_store = store
        metrics = Metrics(snapshot=lambda: own_store.snapshot)
        app = make_app(
            store=store,
            assessor=assessor or Assessor(None),
            settings=settings or Settings(host="127.0.0.1", port=0),
            metrics=metrics,
            **app_kwargs,
        )
        reloader = CertReloader(certs.cert, certs.key)
        runner, _ = await listen(
            app, settings or Settings(host="127.0.0.1", port=0), reloader.context
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=certs.client_context(), limit=0)
        )
        port = runner.addresses[0][1]
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
    return await start_webhook()
