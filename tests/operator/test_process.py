"""``baseguard run`` as a process: kubeconfig, JSON logs, readiness, and SIGTERM handled by kopf's
signal handlers, whose cleanup releases the Lease and drains the webhook before the exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from support.kube_api import ApiDouble
from support.kube_objects import NAMESPACE, NO_LATEST, SERVICE_HOST, cluster_policy
from support.registry import free_port
from support.replicas import secret_ca

LAUNCH = (
    "import argparse, sys\n"
    "from controller.cli.commands import run\n"
    "parser = argparse.ArgumentParser()\n"
    "run.add_arguments(parser)\n"
    "sys.exit(run.run(parser.parse_args(sys.argv[1:])))\n"
)


def readyz(port: int, ca: bytes) -> dict[str, object]:
    """GET /readyz from 127.0.0.1, verifying the certificate for the Service's DNS name (as the apiserver does)."""
    context = ssl.create_default_context(cadata=ca.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_HOST) as tls,
    ):
        tls.sendall(
            f"GET /readyz HTTP/1.1\r\nHost: {SERVICE_HOST}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    result: dict[str, object] = json.loads(payload)
    return result


def test_run_serves_until_sigterm_then_releases_the_lease(
    double: ApiDouble, kubeconfig: Path
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    port = free_port()
    argv = [
        sys.executable, "-c", LAUNCH,
        "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE, "--identity", "pod-x",
        "--host", "127.0.0.1", "--port", str(port), "--offline",
        "--tls-secret", "baseguard-tls", "--manage-certificates", "--tls-poll-interval", "0.2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                body = readyz(port, secret_ca(double))
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert body["ready"] is True and body["policies"] == 1
        lease = double.get("coordination.k8s.io/v1", "Lease", "baseguard-leader", NAMESPACE)
        assert lease is not None and lease["spec"]["holderIdentity"] == "pod-x"
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    lease = double.get("coordination.k8s.io/v1", "Lease", "baseguard-leader", NAMESPACE)
    assert (
        lease is not None and lease["spec"].get("holderIdentity") is None
    )  # released on the way out
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert (
        "ready" in messages and "lease released" in messages and "draining the webhook" in messages
    )
    assert messages.index("lease released") < messages.index("draining the webhook")
    assert not [m for m in messages if m.startswith("Handler '")]  # kopf's per-event chatter is off
