"""AdmissionReview bodies fuzzed against the running webhook: 200 or 400, JSON, never a 500.

Anyone who can reach port 8443 can send anything, and the apiserver applies
``failurePolicy`` to any answer that is not a readable AdmissionReview. So the
real app is served over real TLS (in a thread with its own event loop, so the
sync Hypothesis test can drive it), and every body, from random bytes to a
real review with one field replaced by random JSON, must get HTTP 200 with a
well-formed AdmissionReview or HTTP 400 with a ``Status``; no example may log
an internal error, and the server answers its health check afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import http.client
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st
from support.webhook import DATA, default_docs, fill_store

from controller.assess import Assessor
from controller.policy.store import PolicyStore
from controller.tls.serving import CertReloader, self_signed
from controller.webhook.app import make_app
from controller.webhook.listener import listen
from controller.webhook.settings import Settings

FIXTURES = sorted(p.name for p in DATA.glob("*.json"))
GROUPS = {"Pod": "", "ReplicationController": "", "PodTemplate": "", "Deployment": "apps",
          "ReplicaSet": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "Job": "batch",
          "CronJob": "batch", "ConfigMap": "", "Widget": "example.com"}


class _Errors(logging.Handler):
    """Collects ERROR records of the webhook's loggers (an internal error is always logged)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class ThreadedWebhook:
    """The real app on 127.0.0.1 over TLS, served by a thread; a keep-alive HTTPS client."""

    ca: Path
    cert: Path
    key: Path
    port: int = 0
    errors: _Errors = field(default_factory=_Errors)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _conn: http.client.HTTPSConnection | None = None

    def start(self) -> ThreadedWebhook:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook did not start")
        logging.getLogger("baseguard").addHandler(self.errors)
        return self

    async def _serve(self) -> None:
        store = PolicyStore()
        fill_store(store, default_docs())
        settings = Settings(host="127.0.0.1", port=0)
        app = make_app(store=store, assessor=Assessor(None), settings=settings)
        context = CertReloader(self.cert, self.key).context
        self._runner, self.port = await listen(app, settings, context)  # the bounded listener

    def stop(self) -> None:
        logging.getLogger("baseguard").removeHandler(self.errors)
        if self._conn is not None:
            self._conn.close()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a connection the server closed after a 400 is reopened once
            if self._conn is None:
                context = ssl.create_default_context(cafile=str(self.ca))
                self._conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedWebhook]:
    ca, cert, key = self_signed(["127.0.0.1"]).write(tmp_path_factory.mktemp("fuzz-tls"))
    hook = ThreadedWebhook(ca, cert, key).start()
    yield hook
    hook.stop()


# --------------------------------------------------------------------------- bodies

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=10),
    st.sampled_from(["", "CREATE", "UPDATE", "DELETE", "Pod", "apps", "v1", "nginx", "python:3.8",
                     "ephemeralcontainers", "status", "admission.k8s.io/v1", "AdmissionReview"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.one_of(st.sampled_from(["spec", "template", "containers", "image", "name", "metadata",
                                   "namespace", "labels", "volumes", "reference", "kind", "items",
                                   "initContainers", "ephemeralContainers", "jobTemplate"]),
                  st.text(max_size=5)),
        inner,
        max_size=5,
    ),
    max_leaves=30,
)
images = st.one_of(
    st.sampled_from(["nginx", "nginx:latest", "docker.io/library/python:3.8", "python:3.12.3-slim",
                     "ghcr.io/acme/app@sha256:" + "a" * 64, "UPPER/case", "", "a b", "x" * 300,
                     "10.0.0.1/x:1", "localhost:5000/x", "python:café"]),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
containers = st.lists(
    st.fixed_dictionaries({"name": st.one_of(st.text(max_size=6), st.none()), "image": images}),
    max_size=4,
)
pod_spec = st.fixed_dictionaries(
    {"containers": containers},
    optional={"initContainers": containers, "ephemeralContainers": containers,
              "volumes": st.lists(st.fixed_dictionaries({"name": st.text(max_size=4),
                                                         "image": st.fixed_dictionaries({"reference": images})}),
                                  max_size=2)},
)


@st.composite
def workload_objects(draw: st.DrawFn, kind: str) -> Any:
    spec = draw(pod_spec)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind,
                            "metadata": draw(st.fixed_dictionaries({}, optional={
                                "name": st.text(max_size=8), "namespace": st.sampled_from(["prod", "default", ""]),
                                "labels": st.dictionaries(st.text(max_size=4), json_values, max_size=2)}))}
    if kind == "Pod":
        body["spec"] = spec
    elif kind == "CronJob":
        body["spec"] = {"jobTemplate": {"spec": {"template": {"spec": spec}}}}
    elif kind == "PodTemplate":
        body["template"] = {"spec": spec}
    else:
        body["spec"] = {"template": {"spec": spec}}
    return body


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(GROUPS)))
    obj = draw(st.one_of(workload_objects(kind), json_values))
    request = draw(st.fixed_dictionaries(
        {"uid": st.one_of(st.uuids().map(str), scalars)},
        optional={
            "kind": st.one_of(st.fixed_dictionaries({"group": st.just(GROUPS[kind]), "version": st.just("v1"),
                                                     "kind": st.just(kind)}), json_values),
            "resource": st.one_of(st.fixed_dictionaries({"resource": st.text(max_size=6)}), json_values),
            "subResource": st.one_of(st.sampled_from(["", "ephemeralcontainers", "status", "scale"]), scalars),
            "operation": st.one_of(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]), scalars),
            "namespace": st.one_of(st.sampled_from(["prod", "default", "kube-system"]), scalars),
            "name": scalars,
            "oldObject": st.one_of(st.none(), st.just(copy.deepcopy(obj)), json_values),
            "dryRun": st.one_of(st.booleans(), scalars),
            "userInfo": st.one_of(st.fixed_dictionaries({"username": scalars}), json_values),
            "options": json_values,
        },
    ))
    request["object"] = obj
    return {
        "apiVersion": draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1])),
        "kind": draw(st.sampled_from(["AdmissionReview", "AdmissionReview", "Status"])),
        "request": request,
    }


def _nodes(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _nodes(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _nodes(v, (*here, i))
    return out


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Any:
    """A real review from ``tests/data/admission`` with one node replaced by random JSON."""
    doc = json.loads((DATA / draw(st.sampled_from(FIXTURES))).read_text())
    where = draw(st.sampled_from(_nodes(doc)))
    if not where:
        return draw(json_values)
    parent = doc
    for part in where[:-1]:
        parent = parent[part]
    parent[where[-1]] = draw(json_values)
    return doc


bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes().map(lambda v: json.dumps(v).encode()),
    mutated_fixtures().map(lambda v: json.dumps(v).encode()),
)


# --------------------------------------------------------------------------- properties


def _uid(body: bytes) -> Any:
    try:
        return json.loads(body)["request"]["uid"]
    except Exception:
        return None


@given(body=bodies, endpoint=st.sampled_from(["/validate", "/mutate"]))
@example(body=b"", endpoint="/validate")
@example(body=b"\xff\xfe", endpoint="/validate")
@example(body=b"[" * 5000 + b"]" * 5000, endpoint="/validate")
@example(body=b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}', endpoint="/mutate")
@example(body=b"NaN", endpoint="/validate")
@example(body=json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                      "operation": "CREATE", "object": {"kind": "Pod", "spec": {"containers": [
                                          {"name": "a", "image": "x" * 10_000}] * 50}}}}).encode(),
         endpoint="/validate")
def test_any_body_gets_a_readable_answer(server: ThreadedWebhook, body: bytes, endpoint: str) -> None:
    before = len(server.errors.records)
    status, raw = server.request("POST", endpoint + "?timeout=10s", body)

    assert status in (200, 400), (status, raw[:300])
    answer = json.loads(raw)
    assert isinstance(answer, dict)
    if status == 400:
        assert answer["kind"] == "Status" and answer["code"] == 400
        assert answer["message"].startswith("bad AdmissionReview: ")
    else:
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        response = answer["response"]
        assert response["uid"] == _uid(body)
        assert isinstance(response["allowed"], bool)
        assert response.get("status", {}).get("code") != 500, response  # an internal error, answered
        if endpoint == "/mutate":
            assert response["allowed"] is True
            if "patch" in response:
                assert response["patchType"] == "JSONPatch"
                assert isinstance(json.loads(base64.b64decode(response["patch"])), list)
        else:
            assert response["allowed"] or response["status"]["code"] == 403
        for warning in response.get("warnings", []):
            assert isinstance(warning, str) and len(warning) <= 120
    assert server.errors.records[before:] == []


def test_the_server_is_alive_after_the_fuzzing(server: ThreadedWebhook) -> None:
    assert server.request("GET", "/healthz") == (200, b"ok\n")
    status, raw = server.request("POST", "/validate?timeout=10s", (DATA / "pod-create.json").read_bytes())
    assert status == 200 and json.loads(raw)["response"]["uid"]
    assert server.errors.records == []
