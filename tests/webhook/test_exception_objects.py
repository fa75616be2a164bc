"""``BaseImagePolicyException`` at the door: /validate refuses one that does not compile,
saying where, as it does for policies; a valid or expired one goes in."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from support.webhook import StartWebhook

TODAY = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def exception_review(spec: dict[str, Any], *, operation: str = "CREATE") -> dict[str, Any]:
    """An AdmissionReview of a ``BaseImagePolicyException`` as the apiserver sends it
    (no ``metadata.namespace`` in the body of a create: the request names it)."""
    obj = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicyException",
        "metadata": {"name": "app-migration"},
        "spec": spec,
    }
    gvk = {"group": "baseguard.io", "version": "v1alpha1", "kind": "BaseImagePolicyException"}
    resource = {"group": "baseguard.io", "version": "v1alpha1", "resource": "baseimagepolicyexceptions"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5b0e4c59-1f49-4bd3-9d0f-2d1b8c3e6a01",
            "kind": gvk,
            "resource": resource,
            "requestKind": gvk,
            "requestResource": resource,
            "name": "app-migration",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "shop-developer"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


def good_spec(**changes: Any) -> dict[str, Any]:
    spec = {
        "policy": {"kind": "ClusterBaseImagePolicy", "name": "production-bases"},
        "images": ["registry.example.com/shop/app"],
        "rules": ["disallowed-tag"],
        "until": "2027-01-31",
        "reason": "APP-1: moving off latest",
    }
    spec.update(changes)
    return spec


async def hook(start_webhook: StartWebhook) -> Any:
    return await start_webhook(clock=lambda: TODAY)


async def test_an_exception_too_long_and_with_a_bad_glob_is_refused_with_every_field_path(
    start_webhook: StartWebhook,
) -> None:
    webhook = await hook(start_webhook)
    review = exception_review(good_spec(until="2027-12-31", images=["shop/app:1.2/x"]))
    response = await webhook.response(review)
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    lines = message.splitlines()
    assert lines[0] == "BaseImagePolicyException app-migration is invalid (2 errors):", message
    assert lines[1] == (
        "spec.images[0]: 'shop/app:1.2/x' never matches: names are normalized with their registry, "
        "write 'docker.io/shop/app:1.2/x'"
    ), message
    assert lines[2] == (
        "spec.until: 2027-12-31 is more than 90 days away (the latest is 2027-03-07): "
        "an exception is time-boxed; file a new one when it ends"
    ), message


async def test_a_schema_error_of_an_exception_names_its_field(start_webhook: StartWebhook) -> None:
    webhook = await hook(start_webhook)
    spec = good_spec(rules=["no-such-rule"])
    response = await webhook.response(exception_review(spec))
    assert response["allowed"] is False
    assert response["status"]["message"].splitlines()[1].startswith("spec.rules[0]: "), response


@pytest.mark.parametrize("until", ["2027-01-31", "2026-11-30"], ids=["in-90-days", "expired"])
async def test_a_valid_or_expired_exception_is_allowed(start_webhook: StartWebhook, until: str) -> None:
    """An expired one is not invalid: it is stored and its status says it waives nothing."""
    webhook = await hook(start_webhook)
    review = exception_review(good_spec(until=until))
    assert await webhook.response(review) == {"uid": review["request"]["uid"], "allowed": True}


async def test_the_90_days_are_counted_from_the_webhooks_day(start_webhook: StartWebhook) -> None:
    webhook = await hook(start_webhook)
    latest = exception_review(good_spec(until="2027-03-07"))
    assert (await webhook.response(latest))["allowed"] is True
    later = exception_review(good_spec(until="2027-03-08"))
    assert (await webhook.response(later))["allowed"] is False


async def test_an_unchanged_invalid_exception_can_still_be_labelled(start_webhook: StartWebhook) -> None:
    webhook = await hook(start_webhook)
    review = exception_review(good_spec(images=["shop/app:1.2/x"]), operation="UPDATE")
    review["request"]["oldObject"] = copy.deepcopy(review["request"]["object"])
    review["request"]["object"]["metadata"]["labels"] = {"team": "shop"}
    response = await webhook.response(review)
    assert response["allowed"] is True
    assert response["warnings"][0].startswith(
        "exception app-migration is still invalid: spec.images[0]: 'shop/app:1.2/x' never matches"
    ), response


async def test_mutate_leaves_exceptions_alone(start_webhook: StartWebhook) -> None:
    webhook = await hook(start_webhook)
    review = exception_review(good_spec(until="2027-12-31"))
    response = await webhook.response(review, endpoint="mutate")
    assert response == {"uid": review["request"]["uid"], "allowed": True}


async def test_the_65th_exception_of_a_namespace_is_refused_when_filed(start_webhook: StartWebhook) -> None:
    """Counted per namespace: shop's 64 exceptions never refuse one filed in billing."""
    from controller.policy.exceptions import compile_exception
    from controller.policy.store import PolicyStore

    def doc(name: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "BaseImagePolicyException",
            "metadata": {"name": name, "namespace": namespace},
            "spec": good_spec(),
        }

    store = PolicyStore()
    store.replace({}, exceptions=[compile_exception(doc(f"x{i}", "shop"), today=TODAY.date()) for i in range(64)])
    webhook = await start_webhook(store=store, clock=lambda: TODAY)
    response = await webhook.response(exception_review(good_spec()))
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        "BaseImagePolicyException app-migration is invalid (1 error):\n"
        "metadata.name: namespace shop already holds 64 exceptions, the most one namespace may hold "
        "(64); this one is not applied: merge or delete expired ones"
    )
    # an edit of one of the 64 is not one more
    edit = exception_review(good_spec(reason="APP-2"), operation="UPDATE")
    edit["request"]["name"] = edit["request"]["object"]["metadata"]["name"] = "x3"
    edit["request"]["oldObject"] = {**copy.deepcopy(edit["request"]["object"]), "spec": good_spec()}
    assert await webhook.response(edit) == {"uid": edit["request"]["uid"], "allowed": True}
    billing = exception_review(good_spec())
    billing["request"]["namespace"] = "billing"
    assert (await webhook.response(billing))["allowed"] is True
