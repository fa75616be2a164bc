"""Helpers for the hardening suite: image families, policies, reviews, witness listeners.

Images are built so that *every* level of a lineage is fetched through one host:
put the faulty proxy's host in, and a fault can hit the image or any of its bases.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any

from controller.registry import media
from support.images import Pushed, layer
from support.preconditions import unavailable
from support.registry import RegistryProcess
from support.webhook import fixture, set_images

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
        unavailable(f"cannot listen on {host}: {exc} (the SSRF tests need a loopback listener)")


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
            with contextlib.suppress(BlockingIOError):  # in progress: exactly what we want
                held.connect(("127.0.0.1", self.port))
            self._held.append(held)

    def close(self) -> None:
        for held in self._held:
            held.close()
        self.sock.close()
