"""The real webhook (HTTPS, real app) in front of a real registry, for the hardening suite.

Each test starts its own webhook with its own :class:`RegistryClient` (so no
cached answer or remembered failure crosses tests) and pushes its own images
under ``unique_repo``. Images are built so that *every* level of a lineage is
fetched through one host: put the faulty proxy's host in, and a fault can hit
the image or any of its bases.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from support.images import Pushed, layer
from support.registry import RegistryProcess
from webhook.webhook_support import Certs, Webhook, fill_store, fixture, set_images

from controller.assess import Assessor
from controller.lineage.resolve import LineageResolver
from controller.policy.store import PolicyStore
from controller.registry import media
from controller.registry.cache import RegistryCache
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig, RegistryHost
from controller.settings import Settings
from controller.webhook.app import make_app
from controller.webhook.metrics import Metrics
from controller.webhook.tls import CertReloader, self_signed

#: The apiserver's ``timeoutSeconds`` in these tests; the review budget is this minus
#: ``Settings.safety_margin`` (1.5 s): 0.5 s for lookups.
TIMEOUT = 2.0
QUERY = f"?timeout={TIMEOUT:g}s"
#: The registry client's per-request timeout: shorter than the review budget, so a hung
#: request is reported as what it is rather than as the whole review running out.
CLIENT_TIMEOUT = 0.3


@dataclass(frozen=True)
class Family:
    """base ← python:3.12 ← app:1.0.0, every claim naming ``host`` (where lookups go)."""

    host: str
    repo: str
    base: Pushed
    python: Pushed
    app: Pushed

    def ref(self, name: str, tag: str = "1.0.0") -> str:
        return f"{self.host}/{self.repo}/{name}:{tag}"

    @property
    def image(self) -> str:
        return self.ref("app")


def push_family(registry: RegistryProcess, repo: str, *, host: str) -> Family:
    """Push through ``registry`` but write every base claim with ``host`` (a proxy in front of it)."""
    def claim(pushed: Pushed, name: str, tag: str) -> dict[str, str]:
        return {media.BASE_NAME: f"{host}/{repo}/{name}:{tag}", media.BASE_DIGEST: pushed.digest}

    os_layer = layer({"etc/os-release": f"ID=test {repo}"})
    py_layer = layer({"usr/bin/python3": f"3.12 {repo}"})
    app_layer = layer({"srv/app": repo})
    base = registry.push_image(f"{repo}/base", "12", [os_layer], annotations={media.BASE_NAME: "scratch"})
    python = registry.push_image(
        f"{repo}/python", "3.12", [os_layer, py_layer], annotations=claim(base, "base", "12")
    )
    app = registry.push_image(
        f"{repo}/app", "1.0.0", [os_layer, py_layer, app_layer], annotations=claim(python, "python", "3.12")
    )
    return Family(host, repo, base, python, app)


def bases_policy(
    *allowed: str, on_failure: str = "Deny", name: str = "bases", mode: str = "Enforce"
) -> dict[str, Any]:
    """A lineage policy: images must be built on one of ``allowed`` (repository globs)."""
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": mode,
            "bases": {"allowed": [{"image": glob} for glob in allowed]},
            "lineage": {"onLookupFailure": on_failure, "onUnknownBase": "Deny"},
        },
    }


def deployment(**images: str) -> dict[str, Any]:
    """The Deployment fixture (containers ``app`` and ``proxy``) with these images."""
    return set_images(fixture("deployment-create.json"), images)


def pod(image: str) -> dict[str, Any]:
    """A Pod with one container, ``app``, running ``image``."""
    review = fixture("pod-create.json")
    spec = review["request"]["object"]["spec"]
    spec["containers"] = [{"name": "app", "image": image}]
    for key in ("initContainers", "ephemeralContainers", "volumes"):
        spec.pop(key, None)
    return review


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pair = self_signed(["localhost", "127.0.0.1"])
    directory = tmp_path_factory.mktemp("hardening-tls")
    ca, cert, key = pair.write(directory)
    return Certs(pair, directory, ca, cert, key)


@pytest_asyncio.fixture
async def start_webhook(certs: Certs) -> AsyncIterator[Any]:
    """``await start_webhook(hosts=[RegistryHost...], docs=[...])`` → (Webhook, RegistryClient).

    The client is configured with exactly ``hosts`` (nothing else is explicit)
    and ``timeout=CLIENT_TIMEOUT`` unless given.
    """
    started: list[tuple[Webhook, RegistryClient]] = []

    async def start(
        *,
        hosts: list[RegistryHost],
        docs: list[Mapping[str, Any]],
        timeout: float = CLIENT_TIMEOUT,
        settings: Settings | None = None,
        cache: RegistryCache | None = None,
    ) -> tuple[Webhook, RegistryClient]:
        client = RegistryClient(RegistryConfig.of(*hosts, timeout=timeout), cache=cache)
        store = PolicyStore()
        fill_store(store, list(docs))
        metrics = Metrics(snapshot=lambda: store.snapshot)
        app = make_app(
            store=store,
            assessor=Assessor(LineageResolver(client)),
            settings=settings or Settings(host="127.0.0.1", port=0),
            metrics=metrics,
        )
        reloader = CertReloader(certs.cert, certs.key)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=reloader.context).start()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=certs.client_context(), limit=0))
        port = runner.addresses[0][1]
        hook = Webhook(f"https://127.0.0.1:{port}", session, store, metrics, reloader, runner)
        started.append((hook, client))
        return hook, client

    yield start
    for hook, client in started:
        await hook.session.close()
        await hook.runner.cleanup()
        await client.close()


# --------------------------------------------------------------------------- listeners


class Listener:
    """A TCP listener that records every connection it accepts, and answers nothing.

    The witness of the SSRF tests: the controller must never connect to it
    unless its address is configured. ``accepted`` lists the peers.
    """

    def __init__(self, host: str, *, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(addr)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def listen_on(host: str, family: socket.AddressFamily = socket.AF_INET) -> Listener:
    try:
        return Listener(host, family=family)
    except OSError as exc:  # pragma: no cover - depends on the host's loopback setup
        pytest.skip(f"cannot listen on {host}: {exc}")


@pytest.fixture
def listener_127_0_0_2() -> Iterator[Listener]:
    listener = listen_on("127.0.0.2")
    yield listener
    listener.close()


@pytest.fixture
def listener_localhost() -> Iterator[Listener]:
    listener = listen_on("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def listener_ipv6() -> Iterator[Listener]:
    listener = listen_on("::1", socket.AF_INET6)
    yield listener
    listener.close()


class BlackHole:
    """A listener whose accept queue is full: a connection attempt hangs (a connect timeout).

    ``listen(0)`` and a few connections that are never accepted fill the queue;
    the kernel then drops further SYNs, exactly as a firewalled or overloaded
    registry does.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        for _ in range(8):
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.setblocking(False)
            try:
                held.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._held.append(held)

    def close(self) -> None:
        for held in self._held:
            held.close()
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()
