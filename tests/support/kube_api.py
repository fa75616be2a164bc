"""A Kubernetes API *double*: a small HTTP server that behaves like kube-apiserver for the
endpoints baseguard's operator uses, and records every request it gets.

There is no kube-apiserver on the test machines, so the real operator (kopf
and the kubernetes client, unmodified) runs against this. It serves:

* discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``);
* list (``labelSelector``/``fieldSelector`` equality) and ``?watch=true``
  streaming from a ``resourceVersion``, for every resource in :data:`RESOURCES`;
* GET, POST (409 when it exists), PUT (409 on a stale ``resourceVersion``),
  PATCH (merge, strategic-as-merge, JSON Patch with ``test``), DELETE, and the
  ``/status`` subresource (which changes only ``status``; the main resource
  ignores ``status`` for kinds with that subresource, as the apiserver does);
* ``metadata.generation`` bumps when ``spec`` changes; ``uid``,
  ``resourceVersion`` and ``creationTimestamp`` are set on create;
* a bearer token is required (401 otherwise), so a test fails if a client
  does not authenticate.

It runs on its own event loop in a thread: kopf considers every task on its
loop created after its start as its own, and a server sharing that loop would
have its connection handlers cancelled when the operator stops.

Tests seed and change objects with :meth:`ApiDouble.apply`/:meth:`delete`
(as ``kubectl`` would, through the same watch events the operator sees) and
assert on :attr:`ApiDouble.requests`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "double-token"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has a /status subresource
    verbs: tuple[str, ...] = ("get", "list", "watch", "create", "update", "patch", "delete")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        return self.group in (
            "",
            "apps",
            "batch",
            "coordination.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
        )


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, status=True),
    Resource("", "v1", "pods", "Pod", True, status=True),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "replicationcontrollers", "ReplicationController", True, status=True),
    Resource("apps", "v1", "deployments", "Deployment", True, status=True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, status=True),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, status=True),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, status=True),
    Resource("batch", "v1", "jobs", "Job", True, status=True),
    Resource("batch", "v1", "cronjobs", "CronJob", True, status=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
    ),
    Resource(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
    ),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        status=True,
    ),
    Resource(
        "baseguard.io",
        "v1alpha1",
        "clusterbaseimagepolicies",
        "ClusterBaseImagePolicy",
        False,
        status=True,
    ),
    Resource("baseguard.io", "v1alpha1", "baseimagepolicies", "BaseImagePolicy", True, status=True),
)
POLICY_REPORTS: tuple[Resource, ...] = (
    Resource("wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport", True),
    Resource("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports", "ClusterPolicyReport", False),
)
OPEN_REPORTS: tuple[Resource, ...] = (
    Resource("openreports.io", "v1alpha1", "reports", "Report", True),
    Resource("openreports.io", "v1alpha1", "clusterreports", "ClusterReport", False),
)


@dataclass(frozen=True)
class Request:
    """One request the double received."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    content_type: str

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass
class _Watcher:
    resource: Resource
    namespace: str | None
    queue: asyncio.Queue[dict[str, Any] | None]
    selector: Callable[[Mapping[str, Any]], bool]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 (add, replace, remove, test) — what the operator sends."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise ApiError(422, "Invalid", f"unsupported op {kind}")
    return doc


def _selector(query: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool]:
    labels = [p.split("=", 1) for p in query.get("labelSelector", "").split(",") if "=" in p]
    fields = [p.split("=", 1) for p in query.get("fieldSelector", "").split(",") if "=" in p]

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        own = meta.get("labels") or {}
        if any(own.get(k.strip()) != v.strip() for k, v in labels):
            return False
        for k, v in fields:
            if k.strip() == "metadata.name" and meta.get("name") != v.strip():
                return False
            if k.strip() == "metadata.namespace" and meta.get("namespace") != v.strip():
                return False
        return True

    return matches


class ApiDouble:
    """The server; start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, *, policy_reports: bool = True, open_reports: bool = False) -> None:
        self.resources = (
            RESOURCES
            + (POLICY_REPORTS if policy_reports else ())
            + (OPEN_REPORTS if open_reports else ())
        )
        self._by_path = {(r.group, r.version, r.plural): r for r in self.resources}
        self._objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self._history: list[tuple[int, Resource, str, dict[str, Any]]] = []
        self._watchers: list[_Watcher] = []
        self._lock = threading.RLock()
        self._rv = 100
        self.requests: list[Request] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.fail: dict[tuple[str, str], int] = {}  # (method, path) → status to answer once

    # ---- lifecycle

    def start(self) -> ApiDouble:
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name="api-double", daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            for watcher in self._watchers:
                loop.call_soon_threadsafe(watcher.queue.put_nowait, None)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "double", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": TOKEN}}],
                    "contexts": [
                        {"name": "double", "context": {"cluster": "double", "user": "tester"}}
                    ],
                    "current-context": "double",
                }
            )
        )
        return path

    # ---- what tests use

    def resource(self, api_version: str, kind: str) -> Resource:
        for r in self.resources:
            if r.api_version == api_version and r.kind == kind:
                return r
        raise KeyError(f"{api_version} {kind}")

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object from the test side (``kubectl apply``), emitting its event."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        key = self._key(resource, meta.get("namespace"), meta["name"])
        with self._lock:
            current = self._objects.get(key)
            body = copy.deepcopy(dict(obj))
            if current is None:
                return self._create(resource, meta.get("namespace"), body)
            body.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            if resource.status and "status" not in body and "status" in current:
                body["status"] = current["status"]
            return self._update(resource, key, current, body, status_only=False)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        resource = self.resource(api_version, kind)
        with self._lock:
            self._delete(resource, self._key(resource, namespace, name))

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind)
        with self._lock:
            found = self._objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind)
        with self._lock:
            return [
                copy.deepcopy(o)
                for k, o in self._objects.items()
                if k[:3] == (resource.group, resource.version, resource.plural)
                and (namespace is None or k[3] == namespace)
            ]

    def recorded(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        prefix: bool = False,
        watch: bool | None = None,
    ) -> list[Request]:
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if (method is None or r.method == method)
            and (path is None or (r.path.startswith(path) if prefix else r.path == path))
            and (watch is None or r.watch == watch)
        ]

    async def wait_for(
        self, check: Callable[[], Any], *, within: float = 10.0, what: str = "condition"
    ) -> Any:
        """Poll ``check`` until it returns something truthy (the test's loop keeps running)."""
        deadline = time.monotonic() + within
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    # ---- state (under the lock)

    @staticmethod
    def _key(
        resource: Resource, namespace: str | None, name: str
    ) -> tuple[str, str, str, str, str]:
        return (
            resource.group,
            resource.version,
            resource.plural,
            namespace or "" if resource.namespaced else "",
            name,
        )

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _publish(self, resource: Resource, kind: str, obj: dict[str, Any]) -> None:
        self._history.append(
            (int(obj["metadata"]["resourceVersion"]), resource, kind, copy.deepcopy(obj))
        )
        loop = self._loop
        for watcher in self._watchers:
            if watcher.resource != resource:
                continue
            if watcher.namespace and obj["metadata"].get("namespace") != watcher.namespace:
                continue
            if not watcher.selector(obj) and kind != "DELETED":
                continue
            event = {"type": kind, "object": self._shown(resource, obj)}
            if loop is not None:
                loop.call_soon_threadsafe(watcher.queue.put_nowait, event)

    def _shown(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out.setdefault("apiVersion", resource.api_version)
        out.setdefault("kind", resource.kind)
        return out

    def _create(
        self, resource: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if resource.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        key = self._key(resource, meta.get("namespace"), meta["name"])
        if key in self._objects:
            raise ApiError(
                409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists'
            )
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        meta["resourceVersion"] = self._next_rv()
        meta["creationTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if "spec" in body or not resource.builtin:
            meta["generation"] = 1
        body["apiVersion"] = resource.api_version
        body["kind"] = resource.kind
        self._objects[key] = body
        self._publish(resource, "ADDED", body)
        return copy.deepcopy(body)

    def _update(
        self,
        resource: Resource,
        key: tuple[str, ...],
        current: dict[str, Any],
        body: dict[str, Any],
        *,
        status_only: bool,
    ) -> dict[str, Any]:
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(current)
        if status_only:
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            keep_status = current.get("status")
            new = copy.deepcopy(body)
            meta = new.setdefault("metadata", {})
            for field_ in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if field_ in current["metadata"]:
                    meta[field_] = current["metadata"][field_]
            if resource.status:
                if keep_status is None:
                    new.pop("status", None)
                else:
                    new["status"] = keep_status
            if "generation" in meta and new.get("spec") != current.get("spec"):
                meta["generation"] = int(meta["generation"]) + 1
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key] = new  # type: ignore[index]
        self._publish(resource, "MODIFIED", new)
        return copy.deepcopy(new)

    def _delete(self, resource: Resource, key: tuple[str, str, str, str, str]) -> dict[str, Any]:
        current = self._objects.pop(key, None)
        if current is None:
            raise ApiError(404, "NotFound", f'{resource.plural} "{key[-1]}" not found')
        current["metadata"]["resourceVersion"] = self._next_rv()
        self._publish(resource, "DELETED", current)
        return current

    # ---- HTTP

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", path)
        resource = self._by_path.get((group, version, rest[0]))
        if resource is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return resource, namespace, name, sub

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Request(
            request.method, request.path, dict(request.query), body, request.content_type
        )
        with self._lock:
            self.requests.append(record)
            forced = self.fail.pop((request.method, request.path), None)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        if forced is not None:
            return web.json_response(
                _status(forced, "Forced", "failure injected by the test"), status=forced
            )
        try:
            discovery = self._discovery(request.path)
            if discovery is not None:
                return web.json_response(discovery)
            resource, namespace, name, sub = self._route(request.path)
            if record.watch and request.method == "GET" and name is None:
                return await self._watch(request, resource, namespace)
            return web.json_response(self._act(record, resource, namespace, name, sub))
        except ApiError as exc:
            return web.json_response(_status(exc.code, exc.reason, exc.message), status=exc.code)

    def _act(
        self,
        req: Request,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        sub: str | None,
    ) -> dict[str, Any]:
        with self._lock:
            if name is None:
                if req.method == "GET":
                    return self._list(resource, namespace, req.query)
                if req.method == "POST":
                    return self._create(resource, namespace, copy.deepcopy(req.body or {}))
                raise ApiError(405, "MethodNotAllowed", req.method)
            if sub not in (None, "status"):
                raise ApiError(404, "NotFound", f"subresource {sub}")
            key = self._key(resource, namespace, name)
            current = self._objects.get(key)
            if req.method == "DELETE":
                return self._delete(resource, key)
            if current is None:
                raise ApiError(404, "NotFound", f'{resource.plural} "{name}" not found')
            if req.method == "GET":
                return self._shown(resource, current)
            status_only = sub == "status"
            if req.method == "PUT":
                return self._update(
                    resource, key, current, copy.deepcopy(req.body or {}), status_only=status_only
                )
            if req.method == "PATCH":
                if req.content_type == "application/json-patch+json":
                    patched = _json_patch(current, req.body or [])
                else:
                    patched = _merge(current, req.body or {})
                patched.setdefault("metadata", {}).pop("resourceVersion", None)
                if not status_only and resource.status:
                    patched["status"] = current.get("status")
                    if patched["status"] is None:
                        patched.pop("status")
                return self._update(resource, key, current, patched, status_only=status_only)
            raise ApiError(405, "MethodNotAllowed", req.method)

    def _list(
        self, resource: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        select = _selector(query)
        items = []
        for key, obj in sorted(self._objects.items()):
            if key[:3] != (resource.group, resource.version, resource.plural):
                continue
            if namespace and key[3] != namespace:
                continue
            if not select(obj):
                continue
            item = copy.deepcopy(obj)
            if resource.builtin:  # the apiserver leaves these out of built-in lists' items
                item.pop("kind", None)
                item.pop("apiVersion", None)
            items.append(item)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    async def _watch(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.StreamResponse:
        since = request.query.get("resourceVersion")
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        watcher = _Watcher(resource, namespace, queue, _selector(request.query))
        with self._lock:
            if since:
                backlog = [
                    {"type": kind, "object": self._shown(res, obj)}
                    for rv, res, kind, obj in self._history
                    if res == resource
                    and rv > int(since)
                    and (not namespace or obj["metadata"].get("namespace") == namespace)
                ]
            else:
                backlog = [
                    {"type": "ADDED", "object": self._shown(resource, obj)}
                    for key, obj in sorted(self._objects.items())
                    if key[:3] == (resource.group, resource.version, resource.plural)
                    and (not namespace or key[3] == namespace)
                ]
            self._watchers.append(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with self._lock:
                self._watchers.remove(watcher)
        return response

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-double"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for r in self.resources:
                if r.group:
                    groups.setdefault(r.group, [])
                    if r.version not in groups[r.group]:
                        groups[r.group].append(r.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            return self._group_resources("", "v1")
        if len(parts) == 3 and parts[0] == "apis":
            found = self._group_resources(parts[1], parts[2])
            if not found["resources"]:
                raise ApiError(404, "NotFound", path)
            return found
        return None

    def _group_resources(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for r in self.resources:
            if (r.group, r.version) != (group, version):
                continue
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": list(r.verbs),
                }
            )
            if r.status:
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }


def seed(double: ApiDouble, objects: Iterable[Mapping[str, Any]]) -> None:
    for obj in objects:
        double.apply(obj)
