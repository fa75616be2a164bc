"""baseguard against the real control plane: the chart's objects applied, ``baseguard run`` as a local process.

The apiserver reaches the webhook by URL (the chart's ``webhook.url``), since no
kubelet runs its Deployment. The process runs with the chart's own arguments (taken
from the rendered Deployment) and a kubeconfig holding a TokenRequest token of the
chart's ServiceAccount, so the chart's RBAC is exactly what it has.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from support.chart import CHART, NAMESPACE, RELEASE, render
from support.controlplane import ControlPlane, wait_for

_TOKENS = itertools.count(1)
CRDS = sorted((CHART / "crds").glob("*.yaml"))
DATA = Path(__file__).resolve().parents[1] / "data"
POLICY_REPORT_CRDS = DATA / "crds" / "wgpolicyk8s.io_policyreports.yaml"


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def url_values(port: int, **extra: Any) -> dict[str, Any]:
    """Chart values for a webhook running outside the cluster on 127.0.0.1:``port``."""
    values: dict[str, Any] = {"webhook": {"url": f"https://127.0.0.1:{port}"}}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def chart_args(objects: Sequence[Mapping[str, Any]], namespace: str = NAMESPACE) -> list[str]:
    """The ``baseguard`` arguments of the chart's Deployment, as the kubelet would expand them."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return [a.replace("$(POD_NAMESPACE)", namespace) for a in container["args"]]


def short_name(text: str, prefix: str = "t") -> str:
    """A DNS-label name for a test (deterministic, unique enough for one session)."""
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass
class Baseguard:
    """One ``baseguard run`` process; ``start()``/``stop()``/``pause()``/``resume()``."""

    plane: ControlPlane
    args: list[str]
    identity: str
    port: int
    directory: Path
    jti: str = ""
    """The ``jti`` of this replica's token: its ``credential-id`` in the audit log."""
    popen: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / f"baseguard-{self.identity}.log"

    def start(self) -> Baseguard:
        command = [
            sys.executable,
            "-m",
            "controller",
            *self.args,
            f"--identity={self.identity}",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def logs(self) -> list[dict[str, Any]]:
        """The JSON-lines log records so far (other lines skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def serves(self, ca_pem: bytes) -> bool:
        """``/readyz`` answers 200 over TLS verified with ``ca_pem`` (what the apiserver trusts)."""
        if not self.running:
            raise AssertionError(f"baseguard {self.identity} exited:\n{self.tail()}")
        context = ssl.create_default_context(cadata=ca_pem.decode())
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2
            ) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False

    def pause(self) -> None:
        """SIGSTOP: the socket stays open, nothing answers (a webhook that is slow)."""
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGCONT)

    def stop(self, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGCONT)
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


class Balancer:
    """A TCP forwarder on the chart's ``webhook.url`` port, in front of the replicas.

    What the Service does in a cluster: each connection goes to the next replica
    that accepts one (round robin; a stopped replica refuses and is skipped). TLS
    passes through untouched, so the apiserver still verifies each replica's
    certificate against the caBundle.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.backends: list[int] = []
        self._turn = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._thread = threading.Thread(target=self._accept, name="balancer", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        backends = list(self.backends)
        if backends:
            start = next(self._turn) % len(backends)
            backends = backends[start:] + backends[:start]
        for port in backends:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            _pipe(client, upstream)
            return
        client.close()

    def close(self) -> None:
        self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.close()


@dataclass
class Installation:
    """The chart applied in URL mode, with what a local ``baseguard run`` needs."""

    plane: ControlPlane
    directory: Path
    values: dict[str, Any]
    objects: tuple[dict[str, Any], ...]
    kubeconfig: Path
    registry_config: Path
    account: str
    namespace: str = NAMESPACE
    release: str = RELEASE

    def ca_bundle(self, kind: str = "validatingwebhookconfiguration") -> bytes | None:
        """The first webhook's caBundle; ``None`` when the configuration holds no webhook
        (the mutating one while no policy pins: the apiserver then omits ``webhooks``)."""
        config = self.plane.get_json(kind, self.release)
        if not config.get("webhooks"):
            return None
        value = config["webhooks"][0]["clientConfig"].get("caBundle", "")
        return base64.b64decode(value) if value else b""

    def secret(self) -> dict[str, Any]:
        return dict(self.plane.get_json("secret", f"{self.release}-tls", "-n", self.namespace))

    def process(self, identity: str, port: int, *extra: str) -> Baseguard:
        """A replica with a token of its own (same ServiceAccount, its own ``jti``).

        The apiserver's audit log names the token each request came with
        (``user.extra["authentication.kubernetes.io/credential-id"]``), which tells
        which replica wrote what although both are the one ServiceAccount.
        """
        kubeconfig = self.plane.service_account_kubeconfig(
            self.namespace, self.account, self.directory / f"{identity}-{next(_TOKENS)}.kubeconfig"
        )
        args = [
            *chart_args(self.objects, self.namespace),
            f"--kubeconfig={kubeconfig}",
            f"--registry-config={self.registry_config}",
            "--cert-check-interval=1s",
            "--tls-poll-interval=1s",
            *extra,
        ]
        return Baseguard(self.plane, args, identity, port, self.directory, jti=token_id(kubeconfig))

    def wait_until_served(self, process: Baseguard, timeout: float = 60) -> None:
        """The caBundle is patched in and ``process`` serves a certificate it verifies."""

        def ready() -> bool:
            bundle = self.ca_bundle()
            return bool(bundle) and process.serves(bundle)

        try:
            wait_for(
                f"baseguard {process.identity} to serve with the patched caBundle",
                ready,
                timeout=timeout,
                interval=0.2,
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{process.tail()}") from None


def install(
    plane: ControlPlane,
    directory: Path,
    port: int,
    *,
    registry_config: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
) -> Installation:
    """Apply the CRDs and the chart's objects (URL mode) and mint the ServiceAccount's token."""
    merged = url_values(port, **dict(values or {}))
    rendered = render(merged)
    plane.namespace(NAMESPACE)
    crds = [d for path in CRDS for d in load_documents(path)]
    plane.apply(crds)
    for crd in crds:
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )
    plane.apply(list(rendered.objects), "-n", NAMESPACE)
    config_file = directory / "registries.yaml"
    config_file.write_text(yaml.safe_dump(dict(registry_config)))
    account = next(o for o in rendered.objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    kubeconfig = plane.service_account_kubeconfig(
        NAMESPACE, account, directory / "baseguard.kubeconfig"
    )
    return Installation(
        plane=plane,
        directory=directory,
        values=merged,
        objects=rendered.objects,
        kubeconfig=kubeconfig,
        registry_config=config_file,
        account=account,
    )


def token_id(kubeconfig: Path) -> str:
    """The ``jti`` claim of the bearer token in ``kubeconfig`` (a TokenRequest JWT)."""
    token = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def written_by(
    plane: ControlPlane, *, resource: str, subresource: str | None = None, since: int = 0
) -> list[str]:
    """The credential ids (token ``jti``) of the writes to ``resource`` in the audit log, after entry ``since``."""
    ids = []
    for i, event in enumerate(plane.audit_events()):
        ref = event.get("objectRef") or {}
        if i < since or event.get("verb") not in {"create", "update", "patch"}:
            continue
        if ref.get("resource") != resource or ref.get("subresource") != subresource:
            continue
        extra = (event.get("user") or {}).get("extra") or {}
        for value in extra.get("authentication.kubernetes.io/credential-id", []):
            ids.append(value.removeprefix("JTI="))
    return ids


def denial(result: subprocess.CompletedProcess[str]) -> str:
    """What kubectl printed for a refused request (fails when it was admitted)."""
    assert result.returncode != 0, f"admitted, expected a denial:\n{result.stdout}{result.stderr}"
    return result.stderr


def pod(
    name: str, image: str, *, namespace: str, labels: Mapping[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "app", "image": image}], **spec},
    }


def iter_audit(plane: ControlPlane, **match: str) -> Iterator[dict[str, Any]]:
    """Audit entries whose top-level/objectRef fields equal ``match`` (e.g. name=, namespace=)."""
    for event in plane.audit_events():
        ref = event.get("objectRef") or {}
        if all(ref.get(k) == v or event.get(k) == v for k, v in match.items()):
            yield event


def policy(name: str, spec: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
    """A BaseImagePolicy in ``namespace``, or a ClusterBaseImagePolicy without one."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicy" if namespace else "ClusterBaseImagePolicy",
        "metadata": metadata,
        "spec": dict(spec),
    }


def apply_ready(plane: ControlPlane, *policies: Mapping[str, Any], timeout: int = 30) -> None:
    """Apply policies and wait until the leader marked each Ready (so the webhook has them)."""
    plane.apply(list(policies))
    for p in policies:
        where = ["-n", p["metadata"]["namespace"]] if p["metadata"].get("namespace") else []
        plane.kubectl(
            "wait",
            "--for=condition=Ready",
            f"{p['kind'].lower()}/{p['metadata']['name']}",
            *where,
            f"--timeout={timeout}s",
        )


def decisions(process: Baseguard, **match: Any) -> list[dict[str, Any]]:
    """The webhook's decision log lines whose fields equal ``match``."""
    return [
        r
        for r in process.logs()
        if r.get("msg") == "decision" and all(r.get(k) == v for k, v in match.items())
    ]


def scrape(process: Baseguard, ca_pem: bytes) -> str:
    """``/metrics`` of one replica, over TLS verified with ``ca_pem`` (the apiserver's trust)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with urllib.request.urlopen(
        f"https://127.0.0.1:{process.port}/metrics", context=context, timeout=5
    ) as r:
        return str(r.read().decode())


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the Prometheus samples ``name{...}`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, number = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        found = dict(
            (k, v.strip('"'))
            for k, _, v in (pair.partition("=") for pair in rest.rstrip("}").split(",") if pair)
        )
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(number)
    return total


def mutating_webhooks(plane: ControlPlane, name: str = RELEASE) -> list[dict[str, Any]]:
    """The ``webhooks`` of baseguard's MutatingWebhookConfiguration as the apiserver holds them."""
    return list(plane.get_json("mutatingwebhookconfiguration", name).get("webhooks") or [])
