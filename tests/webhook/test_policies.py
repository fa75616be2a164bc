"""baseguard's own policies at the door: /validate refuses one that does not compile, saying where."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.webhook import StartWebhook, Webhook, fixture

INVALID_LINES = [
    "spec.bases.allowed[0].tags[0]: bad glob '3.12/slim': '/' cannot occur in a tag pattern",
    "spec.exceptions[0].until: '2026-02-30' is not a calendar date: day is out of range for month",
    "spec.bases.deprecated[0].image: 'python:3.8' has a tag, but this is a repository pattern: "
    "write 'docker.io/library/python' and put the tag in 'tags'",
]


def as_kind(review: dict[str, Any], kind: str, *, namespace: str | None = None) -> dict[str, Any]:
    """``review`` about a policy of ``kind`` (``BaseImagePolicy``: namespaced)."""
    out = copy.deepcopy(review)
    request = out["request"]
    for key in ("kind", "requestKind"):
        request[key]["kind"] = kind
    request["object"]["kind"] = kind
    if namespace is not None:
        request["namespace"] = namespace
    return out


def as_update(review: dict[str, Any], *, old_spec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(review)
    request = out["request"]
    request["operation"] = "UPDATE"
    request["oldObject"] = {**copy.deepcopy(request["object"]), "spec": old_spec}
    request["object"]["metadata"]["labels"] = {"team": "platform"}
    return out


@pytest.mark.parametrize(
    ("kind", "namespace"),
    [("ClusterBaseImagePolicy", None), ("BaseImagePolicy", "payments")],
    ids=["cluster", "namespaced"],
)
async def test_an_invalid_policy_is_refused_with_every_field_path(
    webhook: Webhook, kind: str, namespace: str | None
) -> None:
    review = as_kind(fixture("policy-create-invalid.json"), kind, namespace=namespace)
    response = await webhook.response(review)
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": f"{kind} legacy-bases is invalid (3 errors):\n" + "\n".join(INVALID_LINES),
    }


@pytest.mark.parametrize("kind", ["ClusterBaseImagePolicy", "BaseImagePolicy"])
async def test_a_valid_policy_is_allowed(webhook: Webhook, kind: str) -> None:
    review = as_kind(fixture("policy-create-valid.json"), kind, namespace="payments")
    assert await webhook.response(review) == {"uid": review["request"]["uid"], "allowed": True}


async def test_mutate_leaves_policies_alone(webhook: Webhook) -> None:
    for name in ("policy-create-invalid.json", "policy-create-valid.json"):
        review = fixture(name)
        response = await webhook.response(review, endpoint="mutate")
        assert response == {"uid": review["request"]["uid"], "allowed": True}


async def test_an_update_is_judged_on_its_new_spec(webhook: Webhook) -> None:
    broken = fixture("policy-create-invalid.json")["request"]["object"]["spec"]
    good = fixture("policy-create-valid.json")["request"]["object"]["spec"]
    breaking = as_update(fixture("policy-create-invalid.json"), old_spec=good)
    response = await webhook.response(breaking)
    assert response["allowed"] is False
    assert response["status"]["message"].splitlines()[1:] == INVALID_LINES
    fixing = as_update(fixture("policy-create-valid.json"), old_spec=broken)
    assert (await webhook.response(fixing))["allowed"] is True


async def test_an_invalid_policy_whose_spec_is_unchanged_can_still_be_labelled(
    webhook: Webhook,
) -> None:
    """An upgrade may make a stored policy invalid; its labels and finalizers must stay editable."""
    review = fixture("policy-create-invalid.json")
    unchanged = as_update(review, old_spec=review["request"]["object"]["spec"])
    response = await webhook.response(unchanged)
    assert response["allowed"] is True
    assert response["warnings"] == [
        "policy legacy-bases is still invalid: spec.bases.allowed[0].tags[0]: bad glob '3.12/slim': "
        "'/' cannot occur in a tag..."
    ]


@pytest.mark.parametrize(
    ("change", "value"),
    [("operation", "DELETE"), ("subResource", "status")],
    ids=["delete", "status-subresource"],
)
async def test_only_create_and_update_of_the_object_are_judged(
    webhook: Webhook, change: str, value: str
) -> None:
    review = fixture("policy-create-invalid.json")
    review["request"][change] = value
    assert (await webhook.response(review))["allowed"] is True


async def test_another_group_or_version_is_not_a_policy(webhook: Webhook) -> None:
    for key, value in (("group", "example.com"), ("version", "v1")):
        review = fixture("policy-create-invalid.json")
        review["request"]["kind"][key] = value
        assert (await webhook.response(review))["allowed"] is True


async def test_policy_reviews_are_counted_and_logged(
    start_webhook: StartWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    hook = await start_webhook()
    caplog.set_level("INFO", logger="baseguard.webhook")
    await hook.response("policy-create-invalid.json")
    await hook.response("policy-create-valid.json")
    for verdict in ("deny", "allow"):
        labels = {"endpoint": "validate", "kind": "ClusterBaseImagePolicy", "verdict": verdict}
        assert hook.metrics.sample("baseguard_admission_requests_total", labels) == 1.0
    (denied,) = [r for r in caplog.records if getattr(r, "fields", {}).get("verdict") == "deny"]
    assert denied.fields["errors"] == INVALID_LINES  # type: ignore[attr-defined]
