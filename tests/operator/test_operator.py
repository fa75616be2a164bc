"""The real operator (kopf + the kubernetes client + the webhook, as ``baseguard run`` starts them)
against the Kubernetes API double over HTTP, asserting on what it serves and on the requests it makes.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import time
from typing import Any

import aiohttp
import pytest
from support.kube_api import ApiDouble
from support.kube_objects import (
    NAMESPACE,
    NO_LATEST,
    SERVICE_HOST,
    cluster_policy,
    namespace,
    ns_policy,
    pod,
    review,
    webhook_configurations,
)
from support.replicas import StartReplica, admit, call, secret_ca

from controller.operator import rotation as certs

POLICIES = "/apis/baseguard.io/v1alpha1"


def status_patches(double: ApiDouble, name: str) -> list[dict[str, Any]]:
    return [
        r.body["status"]
        for r in double.recorded("PATCH", f"{POLICIES}/clusterbaseimagepolicies/{name}/status")
    ]


def ready(double: ApiDouble, name: str, ns: str | None = None) -> dict[str, Any] | None:
    kind = "BaseImagePolicy" if ns else "ClusterBaseImagePolicy"
    obj = double.get("baseguard.io/v1alpha1", kind, name, ns)
    for condition in (obj or {}).get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return None


async def test_policies_are_watched_into_the_store_and_get_a_status(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    double.apply(cluster_policy("broken", {"registries": {"allowed": ["docker.io/library/PY*"]}}))
    double.apply(
        ns_policy(
            "team-only", "team-a", {"mode": "Warn", "registries": {"allowed": ["docker.io/*"]}}
        )
    )
    replica = await start_replica()

    snapshot = replica.operator.store.snapshot
    assert sorted(p.key for p in snapshot.policies) == ["no-latest", "team-a/team-only"]
    assert list(snapshot.errors) == ["ClusterBaseImagePolicy//broken"]
    status, body = await call(replica, double, "/readyz")
    assert (
        status == 200
        and body["policies"] == 2
        and "ClusterBaseImagePolicy//broken" in body["errors"]
    )

    good = await double.wait_for(lambda: ready(double, "no-latest"), what="Ready on no-latest")
    assert (good["status"], good["reason"], good["observedGeneration"]) == ("True", "Compiled", 1)
    bad = await double.wait_for(lambda: ready(double, "broken"), what="Ready on broken")
    assert (bad["status"], bad["reason"]) == ("False", "Invalid")
    assert bad["message"].startswith("spec.registries.allowed[0]: bad glob 'docker.io/library/PY*'")
    assert (
        double.get("baseguard.io/v1alpha1", "ClusterBaseImagePolicy", "broken")["status"]["errors"][
            0
        ]["path"]
        == "spec.registries.allowed[0]"
    )  # type: ignore[index]
    assert (await double.wait_for(lambda: ready(double, "team-only", "team-a")))["status"] == "True"

    # kopf persisted nothing on the policies: the only writes are our /status patches
    writes = [
        r
        for r in double.requests
        if r.method in ("PATCH", "PUT", "POST") and r.path.startswith(POLICIES)
    ]
    assert writes and all(r.method == "PATCH" and r.path.endswith("/status") for r in writes)
    assert all(
        set(r.body["status"]) <= {"observedGeneration", "conditions", "errors", "audit"}
        for r in writes
    )


async def test_admission_follows_changes_and_deletions(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    double.apply(ns_policy("hub-only", "team-a", {"registries": {"allowed": ["docker.io/*"]}}))
    replica = await start_replica()

    denied = await admit(replica, double, pod("web", "team-b", "nginx:latest"))
    assert denied["allowed"] is False and "no-latest" in denied["status"]["message"]
    ghcr_a = await admit(replica, double, pod("api", "team-a", "ghcr.io/acme/api:1.0.0"))
    assert ghcr_a["allowed"] is False and "team-a/hub-only" in ghcr_a["status"]["message"]
    ghcr_b = await admit(replica, double, pod("api", "team-b", "ghcr.io/acme/api:1.0.0"))
    assert ghcr_b["allowed"] is True  # a BaseImagePolicy applies only in its own namespace

    before = replica.operator.store.snapshot.generation
    double.apply(
        ns_policy(
            "hub-only", "team-a", {"mode": "Warn", "registries": {"allowed": ["docker.io/*"]}}
        )
    )
    await double.wait_for(
        lambda: replica.operator.store.snapshot.generation > before,
        what="the edit to reach the store",
    )
    warned = await admit(replica, double, pod("api", "team-a", "ghcr.io/acme/api:1.0.0"))
    assert warned["allowed"] is True and any(
        "registry-not-allowed" in w for w in warned["warnings"]
    )
    condition = await double.wait_for(
        lambda: (c := ready(double, "hub-only", "team-a")) and c["observedGeneration"] == 2 and c,
        what="status of generation 2",
    )
    assert condition["message"] == "in force in Warn mode"

    double.delete("baseguard.io/v1alpha1", "ClusterBaseImagePolicy", "no-latest")
    await double.wait_for(
        lambda: "no-latest" not in {p.key for p in replica.operator.store.snapshot.policies},
        what="the deletion",
    )
    assert (await admit(replica, double, pod("web", "team-b", "nginx:latest")))["allowed"] is True


async def test_namespace_selectors_are_answered_from_memory(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(
        cluster_policy(
            "payments",
            {**NO_LATEST, "match": {"namespaceSelector": {"matchLabels": {"team": "payments"}}}},
        )
    )
    replica = await start_replica()
    assert (await admit(replica, double, pod("web", "team-a", "nginx:latest")))["allowed"] is True

    double.apply(namespace("team-a", team="payments"))
    await double.wait_for(
        lambda: (replica.operator.namespaces.get("team-a") or {}).get("team") == "payments",
        what="the new label",
    )
    assert (await admit(replica, double, pod("web", "team-a", "nginx:latest")))["allowed"] is False

    double.apply(namespace("team-a", team="search"))
    await double.wait_for(
        lambda: (replica.operator.namespaces.get("team-a") or {}).get("team") == "search",
        what="the relabel",
    )
    assert (await admit(replica, double, pod("web", "team-a", "nginx:latest")))["allowed"] is True
    assert double.recorded("GET", "/api/v1/namespaces/team-a") == []  # never asked per request


async def test_policy_objects_are_checked_at_the_door(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    replica = await start_replica()
    refused = await admit(
        replica, double, cluster_policy("typo", {"pinning": {"require": "Digests"}})
    )
    assert refused["allowed"] is False
    assert refused["status"]["message"].startswith(
        "ClusterBaseImagePolicy typo is invalid (1 error):\nspec.pinning.require: "
    )
    assert (await admit(replica, double, ns_policy("fine", "team-a", NO_LATEST)))["allowed"] is True
    status, answer = await call(
        replica,
        double,
        "/mutate",
        review(cluster_policy("typo", {"pinning": {"require": "Digests"}})),
    )
    assert status == 200 and answer["response"]["allowed"] is True  # /mutate never refuses


async def peer_certificate(port: int, ca: bytes) -> bytes:
    """The PEM certificate a replica serves now, verified against ``ca`` for the Service name."""
    context = ssl.create_default_context(cadata=ca.decode())
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=SERVICE_HOST
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return ssl.DER_cert_to_PEM_cert(der).encode()


def same_cert(a: bytes, b: bytes) -> bool:
    return ssl.PEM_cert_to_DER_cert(a.decode()) == ssl.PEM_cert_to_DER_cert(b.decode())


async def test_certificates_are_made_patched_in_and_rotated_without_a_restart(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    for config in webhook_configurations():
        double.apply(config)
    replica = await start_replica()

    secret = double.get("v1", "Secret", "baseguard-tls", NAMESPACE)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    bundle = certs.Bundle.from_secret_data(secret["data"])
    assert bundle is not None
    assert certs.hosts_of(bundle.cert) >= {SERVICE_HOST, f"baseguard.{NAMESPACE}.svc.cluster.local"}
    encoded = base64.b64encode(bundle.ca_cert).decode()
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = double.get("admissionregistration.k8s.io/v1", kind, "baseguard")
        assert config is not None
        assert [h["clientConfig"]["caBundle"] for h in config["webhooks"]] == [encoded] * len(
            config["webhooks"]
        )
    assert same_cert(await peer_certificate(replica.started.port, bundle.ca_cert), bundle.cert)
    # trust before serve: both caBundles hold the CA before the Secret (which every replica
    # serves as soon as it reads it) holds a pair it signed
    order = [(r.method, r.path) for r in double.recorded()]
    written = order.index(("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets"))
    for plural in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        assert order.index(("PATCH", f"/apis/admissionregistration.k8s.io/v1/{plural}/baseguard")) < written

    # a serving certificate one day from expiry: the leader replaces it, the replica loads it
    now = dt.datetime.now(dt.UTC)
    old_cert, old_key = certs.issue_serving(
        ca_cert=bundle.ca_cert,
        ca_key=bundle.ca_key,
        hosts=certs.service_hosts("baseguard", NAMESPACE),
        now=now - dt.timedelta(days=89),
        validity=dt.timedelta(days=90),
    )
    double.apply(
        {
            **secret,
            "data": {
                **secret["data"],
                "tls.crt": base64.b64encode(old_cert).decode(),
                "tls.key": base64.b64encode(old_key).decode(),
            },
        }
    )

    def rotated() -> certs.Bundle | None:
        current = certs.Bundle.from_secret_data(
            (double.get("v1", "Secret", "baseguard-tls", NAMESPACE) or {}).get("data")
        )
        return current if current and current.cert not in (old_cert, bundle.cert) else None

    fresh = await double.wait_for(rotated, within=30.0, what="the rotation")
    assert fresh.ca_cert == bundle.ca_cert  # same CA: the caBundle needs no change
    assert certs.expires(fresh.cert) > now + dt.timedelta(days=80)
    # the replica reads the Secret every tls_poll_interval: wait for what it serves, generously
    deadline = time.monotonic() + 30.0
    while not same_cert(await peer_certificate(replica.started.port, bundle.ca_cert), fresh.cert):
        assert time.monotonic() < deadline, "the replica still serves the old certificate after 30 s"
        await asyncio.sleep(0.05)
    assert not replica.done
    patches = double.recorded(
        "PATCH", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/baseguard"
    )
    assert len(patches) == 1  # the bundle was right all along after the first patch


async def test_a_user_provided_secret_is_served_and_readiness_waits_for_it(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    replica = await start_replica(manage_certificates=False, wait_ready=False)
    await double.wait_for(
        lambda: double.recorded("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/baseguard-tls"),
        what="a read of the Secret",
    )
    await asyncio.sleep(0.3)
    async with (
        aiohttp.ClientSession() as session,
        session.get(replica.url + "/readyz", ssl=False) as resp,
    ):
        assert resp.status == 503  # listening (liveness works), not ready: no real pair yet
    assert not replica.operator.loaded.is_set()

    pair = certs.plan(
        None,
        hosts=certs.service_hosts("baseguard", NAMESPACE),
        now=dt.datetime.now(dt.UTC),
        lifetimes=certs.Lifetimes(),
        trusted=False,
    )
    data = {
        k: v for k, v in pair.secret_data().items() if k != "ca.key"
    }  # as cert-manager writes it
    double.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "baseguard-tls", "namespace": NAMESPACE},
            "data": data,
        }
    )
    await double.wait_for(replica.operator.loaded.is_set, what="readiness")
    assert same_cert(await peer_certificate(replica.started.port, pair.ca_cert), pair.cert)
    assert (
        double.recorded("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets") == []
    )  # not ours to write
    assert (await admit(replica, double, pod("web", "team-b", "nginx:latest")))["allowed"] is False


async def test_two_replicas_serve_and_one_leads(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    a = await start_replica("pod-a")
    b = await start_replica("pod-b")
    assert a.operator.leading.is_set() and not b.operator.leading.is_set()
    for replica in (a, b):
        assert (await admit(replica, double, pod("web", "team-b", "nginx:latest")))[
            "allowed"
        ] is False
    assert same_cert(
        await peer_certificate(b.started.port, secret_ca(double)),
        await peer_certificate(a.started.port, secret_ca(double)),
    )
    await double.wait_for(lambda: ready(double, "no-latest"), what="the leader's status")
    await asyncio.sleep(0.3)
    assert len(status_patches(double, "no-latest")) == 1  # written once, by the leader only

    assert await a.stop() == 0  # releases the Lease on the way out
    lease = double.get("coordination.k8s.io/v1", "Lease", "baseguard-leader", NAMESPACE)
    assert lease is not None and lease["spec"].get("holderIdentity") in (None, "pod-b")
    await double.wait_for(
        b.operator.leading.is_set, within=2, what="pod-b to take over"
    )  # no waiting out the lease
    double.apply(cluster_policy("no-latest", {"mode": "Audit", **NO_LATEST}))
    condition = await double.wait_for(
        lambda: (c := ready(double, "no-latest")) and c["observedGeneration"] == 2 and c,
        what="the new leader's status",
    )
    assert condition["message"] == "in force in Audit mode"
    assert (await admit(b, double, pod("web", "team-b", "nginx:latest")))[
        "allowed"
    ] is True  # audit mode


def workloads() -> list[dict[str, Any]]:
    template = lambda image: {"spec": {"containers": [{"name": "app", "image": image}]}}  # noqa: E731
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "uid-web"},
        "spec": {"template": template("nginx:latest")},
    }
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-5d8f",
            "namespace": "team-a",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "uid-web",
                    "controller": True,
                }
            ],
        },
        "spec": {"template": template("nginx:latest")},
    }
    child = pod("web-5d8f-x1", "team-a", "nginx:latest")
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d8f",
            "uid": "u",
            "controller": True,
        }
    ]
    return [web, rs, child, pod("tool", "team-b", "nginx:1.27.0")]


def audit_patches(double: ApiDouble, name: str) -> list[dict[str, Any]]:
    return [s["audit"] for s in status_patches(double, name) if "audit" in s]


async def test_the_leader_audits_and_publishes_without_repeating_itself(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    for obj in workloads():
        double.apply(obj)
    replica = await start_replica(audit_interval=0.3)

    first = await double.wait_for(lambda: audit_patches(double, "no-latest"), what="status.audit")
    assert (first[0]["objects"], first[0]["violations"]) == (
        2,
        1,
    )  # the Deployment and the lone Pod; not the RS or its Pod
    posted = await double.wait_for(
        lambda: double.recorded("POST", "/api/v1/namespaces/team-a/events"), what="the Event"
    )
    (event,) = [r.body for r in posted]
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "team-a",
        "uid": "uid-web",
    }
    assert event["reason"] == "PolicyViolation" and event["reportingInstance"] == "pod-a"
    assert event["message"].startswith(
        "no-latest disallowed-tag (deny): container app nginx:latest"
    )

    report = await double.wait_for(
        lambda: double.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "baseguard-audit", "team-a"),
        what="the PolicyReport",
    )
    (fail,) = [r for r in report["results"] if r["result"] == "fail"]
    assert (fail["policy"], fail["rule"], fail["source"]) == (
        "no-latest",
        "disallowed-tag",
        "baseguard",
    )
    assert fail["resources"] == [event["involvedObject"]]
    assert report["summary"]["fail"] == 1
    other = await double.wait_for(
        lambda: double.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "baseguard-audit", "team-b"),
        what="team-b's report",
    )
    assert other["summary"] == {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}

    # Nothing changes: later audits write nothing at all (no report, no Event, no status).
    record = replica.operator.book.get
    await double.wait_for(
        lambda: "audit" in (record("ClusterBaseImagePolicy//no-latest").status or {}),
        what="the leader to see its status.audit",
    )
    settled = replica.operator.audits
    await double.wait_for(lambda: replica.operator.audits > settled, what="an audit after that")
    seen = replica.operator.audits
    writes = len([r for r in double.recorded() if r.method in {"POST", "PUT", "PATCH", "DELETE"}])
    await double.wait_for(lambda: replica.operator.audits >= seen + 2, what="two more audits")
    later = [r for r in double.recorded() if r.method in {"POST", "PUT", "PATCH", "DELETE"}][writes:]
    assert [
        (r.method, r.path) for r in later if "lease" not in r.path
    ] == [], "an audit that found what the last one found wrote something"
    assert len(double.recorded("POST", "/api/v1/namespaces/team-a/events")) == 1  # deduplicated
    assert not double.recorded(
        "PUT", "/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports/baseguard-audit"
    )
    assert replica.operator.auditor is not None
    assert replica.operator.auditor.last_writes.unchanged == 2  # team-a's and team-b's

    double.apply(
        cluster_policy("no-latest", {"mode": "Audit", "pinning": {"disallowedTags": ["edge"]}})
    )
    double.delete("apps/v1", "Deployment", "web", "team-a")
    await double.wait_for(
        lambda: audit_patches(double, "no-latest")[-1]["violations"] == 0, what="a clean audit"
    )
    await double.wait_for(
        lambda: (
            double.get("wgpolicyk8s.io/v1alpha2", "PolicyReport", "baseguard-audit", "team-a")
            is None
        ),
        what="the stale report to go",
    )


@pytest.mark.parametrize("double", [False], indirect=True, ids=["no-policyreport-crd"])
async def test_no_policy_reports_without_their_crd(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    for obj in workloads():
        double.apply(obj)
    replica = await start_replica(audit_interval=0.3)
    await double.wait_for(lambda: replica.operator.audits >= 2, what="two audits")
    assert double.recorded("POST", "/api/v1/namespaces/team-a/events")
    touched = double.recorded(path="/apis/wgpolicyk8s.io", prefix=True)
    assert {r.path for r in touched} == {
        "/apis/wgpolicyk8s.io/v1alpha2"
    }  # only asked whether it exists


@pytest.mark.parametrize(
    ("double", "written"),
    [
        ({"openreports.io"}, ["openreports.io/v1alpha1"]),
        ({"openreports.io", "wgpolicyk8s.io"}, ["openreports.io/v1alpha1", "wgpolicyk8s.io/v1alpha2"]),
    ],
    indirect=["double"],
    ids=["openreports-only", "both"],
)
async def test_reports_go_to_every_installed_report_api_with_the_same_content(
    double: ApiDouble, start_replica: StartReplica, written: list[str]
) -> None:
    double.apply(cluster_policy("no-latest", NO_LATEST))
    for obj in workloads():
        double.apply(obj)
    await start_replica(audit_interval=0.3)
    kinds = {"openreports.io/v1alpha1": "Report", "wgpolicyk8s.io/v1alpha2": "PolicyReport"}
    found = {}
    for api_version in written:
        found[api_version] = await double.wait_for(
            lambda api_version=api_version: double.get(
                api_version, kinds[api_version], "baseguard-audit", "team-a"
            ),
            what=f"the {api_version} report",
        )
    for api_version, report in found.items():
        assert (report["apiVersion"], report["kind"]) == (api_version, kinds[api_version])
        assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "baseguard"}
        (fail,) = [r for r in report["results"] if r["result"] == "fail"]
        assert (fail["policy"], fail["rule"], fail["source"]) == (
            "no-latest",
            "disallowed-tag",
            "baseguard",
        )
    first, *others = found.values()
    for other in others:
        assert other["results"] == first["results"] and other["summary"] == first["summary"]
    if "wgpolicyk8s.io/v1alpha2" not in written:
        touched = double.recorded(path="/apis/wgpolicyk8s.io", prefix=True)
        assert {r.path for r in touched} <= {"/apis/wgpolicyk8s.io/v1alpha2"}  # asked, no more

    double.apply(
        cluster_policy("no-latest", {"mode": "Audit", "pinning": {"disallowedTags": ["edge"]}})
    )
    double.delete("apps/v1", "Deployment", "web", "team-a")
    for api_version in written:
        await double.wait_for(
            lambda api_version=api_version: (
                double.get(api_version, kinds[api_version], "baseguard-audit", "team-a") is None
            ),
            what=f"the stale {api_version} report to go",
        )
