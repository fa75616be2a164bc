"""A webhook that only records: the AdmissionReview bodies kube-apiserver really sends.

It is registered beside baseguard (its own ValidatingWebhookConfiguration, failing
open, for one namespace and for the policy kinds), answers every review with
``allowed: true`` and keeps the bodies. ``tests/data/admission`` holds bodies recorded
this way; ``test_reviews.py`` replays the same operations and checks that what the
apiserver sends still has the shape of what is committed (and rewrites the files
when ``BASEGUARD_RECORD_ADMISSION=1``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controller.tls.issuing import issue_ca, issue_serving

Mutate = Callable[[dict[str, Any]], "list[dict[str, Any]] | None"]

WORKLOAD_RESOURCES = {
    "": [
        "pods",
        "pods/ephemeralcontainers",
        "replicationcontrollers",
        "podtemplates",
        "configmaps",
    ],
    "apps": ["deployments", "replicasets", "statefulsets", "daemonsets"],
    "batch": ["jobs", "cronjobs"],
}


class Recorder:
    """HTTPS on 127.0.0.1 (a CA of its own); ``reviews`` grows as the apiserver calls."""

    def __init__(self, mutate: Mutate | None = None) -> None:
        """``mutate(review)`` may return JSONPatch operations to answer with (a mutating webhook)."""
        now = dt.datetime.now(dt.UTC)
        ca_cert, ca_key = issue_ca(now=now, validity=dt.timedelta(days=1), name="recorder CA")
        cert, key = issue_serving(
            ca_cert=ca_cert,
            ca_key=ca_key,
            hosts=["127.0.0.1"],
            now=now,
            validity=dt.timedelta(days=1),
        )
        self.ca = ca_cert
        self.reviews: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        reviews, lock = self.reviews, self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    reviews.append(body)
                response: dict[str, Any] = {"uid": body["request"]["uid"], "allowed": True}
                operations = mutate(body) if mutate is not None else None
                if operations:
                    response["patchType"] = "JSONPatch"
                    response["patch"] = base64.b64encode(json.dumps(operations).encode()).decode()
                answer = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": response,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "c.pem").write_bytes(cert)
            (Path(d) / "k.pem").write_bytes(key)
            context.load_cert_chain(Path(d) / "c.pem", Path(d) / "k.pem")
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def configuration(self, name: str, namespace: str) -> dict[str, Any]:
        """The ValidatingWebhookConfiguration sending ``namespace``'s workloads and every policy here."""
        client = {
            "url": f"https://127.0.0.1:{self.port}/record",
            "caBundle": base64.b64encode(self.ca).decode(),
        }
        common = {
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "clientConfig": client,
        }
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "workloads.record.baseguard.test",
                    **common,
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "rules": [
                        {
                            "apiGroups": [group],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE", "DELETE"],
                            "resources": resources,
                            "scope": "Namespaced",
                        }
                        for group, resources in WORKLOAD_RESOURCES.items()
                    ],
                },
                {
                    "name": "policies.record.baseguard.test",
                    **common,
                    "rules": [
                        {
                            "apiGroups": ["baseguard.io"],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["clusterbaseimagepolicies", "baseimagepolicies"],
                            "scope": "*",
                        }
                    ],
                },
            ],
        }

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.reviews)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
