"""Exceptions through the real webhook over HTTPS: a waived finding admits the pod and says,
in the apiserver's warnings, which exception waived it; nothing waives across namespaces.

The store is filled the way the operator and ``serve`` fill it (policies, then
``BaseImagePolicyException`` objects), so what is tested is what the cluster would answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from support.webhook import StartWebhook, fixture, set_images

from controller.assess import Assessor
from controller.policy.compile import compile_policy
from controller.policy.exceptions import compile_exception
from controller.policy.store import PolicyStore, policy_key
from controller.webhook.handlers import Admission

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PINS = {
    "apiVersion": "baseguard.io/v1alpha1",
    "kind": "ClusterBaseImagePolicy",
    "metadata": {"name": "pins"},
    "spec": {
        "mode": "Enforce",
        "pinning": {"require": "Version"},
        "exceptions": [
            {"namespaceSelector": {"matchLabels": {"tier": "legacy"}}, "until": "2026-06-30", "reason": "OPS-2"}
        ],
    },
}
EXCEPTION = {
    "apiVersion": "baseguard.io/v1alpha1",
    "kind": "BaseImagePolicyException",
    "metadata": {"name": "python-migration", "namespace": "shop"},
    "spec": {
        "policy": {"kind": "ClusterBaseImagePolicy", "name": "pins"},
        "images": ["docker.io/library/python"],
        "until": "2026-04-30",
        "reason": "SHOP-12",
    },
}
LABELS = {"legacy-apps": {"kubernetes.io/metadata.name": "legacy-apps", "tier": "legacy"}}


def review(namespace: str) -> dict[str, Any]:
    image = "python:3.12-slim"
    out = set_images(fixture("pod-create.json"), {"app": image, "proxy": image, "setup": image, "models": image})
    out["request"]["namespace"] = namespace
    out["request"]["object"]["metadata"]["namespace"] = namespace
    return out


def store() -> PolicyStore:
    out = PolicyStore()
    policy = compile_policy(PINS)
    exc = compile_exception(EXCEPTION, today=NOW.date())
    out.replace({policy_key(policy.kind, policy.namespace, policy.name): policy}, exceptions=[exc])
    return out


async def labels(namespace: str) -> Mapping[str, str] | None:
    return LABELS.get(namespace)


async def start(start_webhook: StartWebhook) -> Any:
    own = store()
    admission = Admission(store=own, assessor=Assessor(None), clock=lambda: NOW, namespace_labels=labels)
    return await start_webhook(store=own, reviewer=admission)


async def test_a_waived_pod_is_admitted_and_the_warning_names_the_exception(start_webhook: StartWebhook) -> None:
    hook = await start(start_webhook)
    response = await hook.response(review("shop"))
    assert response["allowed"] is True
    assert any("BaseImagePolicyException shop/python-migration" in w for w in response["warnings"]), response
    assert all(
        w.endswith("waived until 2026-04-30 by BaseImagePolicyException shop/python-migration: SHOP-12")
        for w in response["warnings"]
    ), response["warnings"]


async def test_an_exception_in_shop_never_admits_a_pod_of_billing(start_webhook: StartWebhook) -> None:
    hook = await start(start_webhook)
    response = await hook.response(review("billing"))
    assert response["allowed"] is False
    assert "unpinned" in response["status"]["message"]
    assert "waived" not in str(response)


async def test_a_policy_exception_by_namespace_labels_admits_a_labelled_namespace(
    start_webhook: StartWebhook,
) -> None:
    hook = await start(start_webhook)
    response = await hook.response(review("legacy-apps"))
    assert response["allowed"] is True
    assert any("waived until 2026-06-30: OPS-2 (exception #0)" in w for w in response["warnings"]), response
    other = await hook.response(review("plain-apps"))
    assert other["allowed"] is False



def test_serve_reads_exception_files_next_to_the_policies(tmp_path: Any) -> None:
    """``serve -p folder``: an exception file is filed under its policy; a broken one is an
    error of its file and waives nothing, while the policy file stays in force."""
    import yaml

    from controller.policyfiles import PolicyFiles

    (tmp_path / "pins.yaml").write_text(yaml.safe_dump(PINS))
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(EXCEPTION))
    own = PolicyStore()
    files = PolicyFiles([str(tmp_path)], own)
    snapshot = files.load()
    assert [e.key for e in snapshot.exceptions] == ["BaseImagePolicyException/shop/python-migration"]
    [policy] = snapshot.policies
    assert set(policy.granted) == {"shop"}
    broken = {**EXCEPTION, "spec": {**EXCEPTION["spec"], "images": ["python"]}}
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(broken))
    snapshot = files.load()
    assert snapshot.errors[str(tmp_path / "shop.yaml")].startswith("document 1: spec.images[0]: 'python' never matches")
    [policy] = snapshot.policies
    assert policy.name == "pins" and not policy.granted  # the policy stays; the broken waiver does not
