"""The mutating webhook registered only while a policy pins: the pure plan, and the real operator against the API double."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from support.kube_api import ApiDouble
from support.kube_objects import NAMESPACE, cluster_policy, ns_policy
from support.replicas import StartReplica

from controller.operator import mutation
from controller.operator import rotation as certs
from controller.operator.kube import Kube
from controller.operator.mutation import Need, need_of, wanted_webhooks
from controller.operator.serving_secret import CertKeeper
from controller.policy.model import CompiledPolicy, Pinning

API = "admissionregistration.k8s.io/v1"
PIN = {"mode": "Enforce", "pinning": {"disallowedTags": [], "mutateToDigest": True}}
NO_PIN = {"mode": "Enforce", "pinning": {"disallowedTags": ["latest"]}}
EXCLUDED = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
TEMPLATE: dict[str, Any] = {
    "name": "workloads.mutate.baseguard.io",
    "admissionReviewVersions": ["v1"],
    "sideEffects": "None",
    "failurePolicy": "Ignore",
    "reinvocationPolicy": "IfNeeded",
    "timeoutSeconds": 10,
    "clientConfig": {"service": {"name": "baseguard", "namespace": NAMESPACE, "path": "/mutate"}},
    "namespaceSelector": {"matchExpressions": [EXCLUDED]},
    "rules": [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}
    ],
}


def compiled(name: str, namespace: str | None, *, pin: bool) -> CompiledPolicy:
    kind = "BaseImagePolicy" if namespace else "ClusterBaseImagePolicy"
    return CompiledPolicy(kind=kind, name=name, namespace=namespace, pinning=Pinning(mutate_to_digest=pin))


# --------------------------------------------------------------------------- pure


def test_no_pinning_policy_needs_no_webhook() -> None:
    need = need_of([compiled("a", None, pin=False), compiled("b", "team-a", pin=False)])
    assert not need.anywhere
    assert wanted_webhooks(TEMPLATE, need, "Q0E=") == []


def test_a_namespaced_pinning_policy_registers_the_webhook_for_its_namespace_only() -> None:
    """A tenant's policy adds the second call (and the annotation) to its own pods, nobody else's."""
    need = need_of([compiled("a", "team-b", pin=True), compiled("b", "team-a", pin=True), compiled("c", None, pin=False)])
    assert need == Need(namespaces=frozenset({"team-a", "team-b"}))
    [entry] = wanted_webhooks(TEMPLATE, need, "Q0E=")
    assert entry["namespaceSelector"]["matchExpressions"] == [
        EXCLUDED,
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]},
    ]
    assert entry["clientConfig"]["caBundle"] == "Q0E="
    assert "caBundle" not in TEMPLATE["clientConfig"]  # the template is not changed


def test_a_cluster_pinning_policy_registers_the_webhook_as_the_chart_rendered_it() -> None:
    need = need_of([compiled("a", "team-a", pin=True), compiled("all", None, pin=True)])
    assert need.everywhere
    [entry] = wanted_webhooks(TEMPLATE, need, None)
    assert entry == TEMPLATE


def test_past_the_namespace_bound_the_webhook_covers_every_namespace() -> None:
    many = [compiled("p", f"ns-{i}", pin=True) for i in range(mutation.MAX_NAMESPACES + 1)]
    assert need_of(many).everywhere
    assert not need_of(many[:-1]).everywhere


def test_fields_the_apiserver_defaults_do_not_count_as_a_difference() -> None:
    [entry] = wanted_webhooks(TEMPLATE, Need(everywhere=True), "Q0E=")
    live = json.loads(json.dumps(entry))
    live["objectSelector"] = {}
    live["matchPolicy"] = "Equivalent"
    live["clientConfig"]["service"]["port"] = 443
    live["rules"][0]["scope"] = "*"
    assert mutation.in_step({"webhooks": [live]}, [entry])
    live["timeoutSeconds"] = 30  # a Helm upgrade changed the template: the entry is rewritten
    assert not mutation.in_step({"webhooks": [live]}, [entry])
    assert mutation.in_step({}, [])  # the apiserver omits an empty list
    assert not mutation.in_step({"webhooks": [live]}, [])


@pytest.mark.parametrize(
    ("raw", "error"),
    [("{not json", "is not JSON"), ("[1]", "no name"), ('{"name": "x"}', "no clientConfig")],
)
def test_an_unusable_template_is_an_error_not_a_crash(raw: str, error: str) -> None:
    with pytest.raises(mutation.TemplateError, match=error):
        mutation.template_of({"metadata": {"annotations": {mutation.TEMPLATE_ANNOTATION: raw}}})


def test_a_configuration_without_the_template_is_left_alone() -> None:
    assert mutation.template_of({"metadata": {"annotations": {}}, "webhooks": [TEMPLATE]}) is None


class CountingKube:
    """Just the GET and PATCH the keeper sends, counted."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.gets = 0
        self.patches: list[Any] = []

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        self.gets += 1
        return self.config

    async def patch(self, path: str, body: Any, *, content_type: str = "") -> dict[str, Any]:
        self.patches.append(body)
        self.config = {**self.config, "webhooks": body[-1]["value"]}
        return self.config


async def test_policy_events_that_change_nothing_cost_no_api_call() -> None:
    """At a leader's start every policy sends an event: only a change of need reads the configuration."""
    kube = CountingKube(configurations()[1])
    keeper = mutation.MutationKeeper(kube, "baseguard")  # type: ignore[arg-type]
    plain = [compiled("a", "team-a", pin=False)]
    assert not await keeper.reconcile(plain)
    reads = kube.gets
    for _ in range(50):
        assert not await keeper.reconcile(plain, if_changed=True)
    assert kube.gets == reads and kube.patches == []
    assert await keeper.reconcile([*plain, compiled("p", "team-b", pin=True)], if_changed=True)
    assert len(kube.patches) == 1
    assert not await keeper.reconcile([*plain, compiled("p", "team-b", pin=True)])  # the timer: in step


# --------------------------------------------------------------------------- the operator


def configurations() -> list[dict[str, Any]]:
    validating = {
        "apiVersion": API,
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "baseguard"},
        "webhooks": [
            {
                "name": "workloads.validate.baseguard.io",
                "clientConfig": {"service": {"name": "baseguard", "namespace": NAMESPACE, "path": "/validate"}},
            }
        ],
    }
    mutating = {
        "apiVersion": API,
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "baseguard", "annotations": {mutation.TEMPLATE_ANNOTATION: json.dumps(TEMPLATE)}},
        "webhooks": [],
    }
    return [validating, mutating]


def mutating_hooks(double: ApiDouble) -> list[dict[str, Any]]:
    config = double.get(API, "MutatingWebhookConfiguration", "baseguard") or {}
    return list(config.get("webhooks") or [])


async def test_the_leader_registers_the_webhook_while_a_policy_pins_and_removes_it_after(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    for config in configurations():
        double.apply(config)
    double.apply(ns_policy("plain", "team-a", NO_PIN))
    replica = await start_replica(mutating_webhook="baseguard")
    await double.wait_for(
        lambda: (double.get(API, "ValidatingWebhookConfiguration", "baseguard") or {})["webhooks"][0]["clientConfig"].get("caBundle"),
        what="the caBundle in the validating configuration",
    )
    assert mutating_hooks(double) == []  # nothing pins: one webhook call per pod

    double.apply(ns_policy("pin", "team-b", PIN))
    [entry] = await double.wait_for(lambda: mutating_hooks(double), what="the mutating webhook")
    validating = double.get(API, "ValidatingWebhookConfiguration", "baseguard")
    assert validating is not None
    assert entry["clientConfig"]["caBundle"] == validating["webhooks"][0]["clientConfig"]["caBundle"]
    assert entry["namespaceSelector"]["matchExpressions"][-1] == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["team-b"],
    }
    # the webhook was in place before the policy was reported Ready
    order = [(r.method, r.path) for r in double.recorded()]
    registered = order.index(("PATCH", f"/apis/{API}/mutatingwebhookconfigurations/baseguard"))
    status = order.index(("PATCH", "/apis/baseguard.io/v1alpha1/namespaces/team-b/baseimagepolicies/pin/status"))
    assert registered < status

    double.apply(cluster_policy("pin-all", PIN))
    await double.wait_for(
        lambda: (h := mutating_hooks(double)) and h[0]["namespaceSelector"]["matchExpressions"] == [EXCLUDED],
        what="the webhook for every namespace",
    )
    double.delete("baseguard.io/v1alpha1", "ClusterBaseImagePolicy", "pin-all")
    double.delete("baseguard.io/v1alpha1", "BaseImagePolicy", "pin", "team-b")
    await double.wait_for(lambda: mutating_hooks(double) == [], what="the webhook to go")
    assert not replica.done


async def test_without_the_template_the_configuration_is_not_touched(
    double: ApiDouble, start_replica: StartReplica
) -> None:
    """``register: Always``: the chart owns the list; the leader only patches the caBundle."""
    validating, mutating = configurations()
    mutating["metadata"].pop("annotations")
    mutating["webhooks"] = [TEMPLATE]
    double.apply(validating)
    double.apply(mutating)
    double.apply(ns_policy("plain", "team-a", NO_PIN))
    await start_replica(mutating_webhook="baseguard")
    await double.wait_for(lambda: mutating_hooks(double)[0]["clientConfig"].get("caBundle"), what="the caBundle")
    [entry] = mutating_hooks(double)
    assert entry["name"] == TEMPLATE["name"]


async def test_an_empty_mutating_configuration_does_not_hold_back_a_ca_change(
    double: ApiDouble, kube: Kube
) -> None:
    """Step 2 of a CA change waits for every caBundle to trust the new CA; a list with no webhook trusts nothing."""
    life = certs.Lifetimes(ca=dt.timedelta(days=300), serving=dt.timedelta(days=90), renew_before=dt.timedelta(days=30))
    hosts = certs.service_hosts("baseguard", NAMESPACE)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=201)
    fresh = certs.plan(None, hosts=hosts, now=start, lifetimes=life, trusted=False)
    now = dt.datetime.now(dt.UTC)
    recent = certs.plan(fresh, hosts=hosts, now=now - dt.timedelta(days=5), lifetimes=life, trusted=True)
    assert recent.previous_ca is None and recent.ca_cert == fresh.ca_cert
    for config in configurations():
        double.apply(config)
    double.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "baseguard-tls", "namespace": NAMESPACE},
            "data": recent.secret_data(),
        }
    )
    keeper = CertKeeper(
        kube=kube,
        namespace=NAMESPACE,
        secret="baseguard-tls",
        hosts=hosts,
        configurations=("baseguard",),
        lifetimes=life,
        clock=lambda: now,
    )
    await keeper.reconcile()
    secret = double.get("v1", "Secret", "baseguard-tls", NAMESPACE)
    assert secret is not None
    done = certs.Bundle.from_secret_data(secret["data"])
    assert done is not None and done.ca_cert != recent.ca_cert  # a CA change began
    assert certs.signed_by(done.cert, done.ca_cert), "the serving certificate still waits for the empty configuration"
    validating = double.get(API, "ValidatingWebhookConfiguration", "baseguard")
    assert validating is not None
    bundle = base64.b64decode(validating["webhooks"][0]["clientConfig"]["caBundle"])
    assert done.ca_cert.strip() in bundle
