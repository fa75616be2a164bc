"""Exceptions: waivers by namespace labels, and ``BaseImagePolicyException`` objects.

Pure core only (compile, attach, evaluate, the store); the CLI, the operator and the
webhook have their own tests. What a user sees is asserted: the ``waived`` text names
the exception, and an exception in one namespace never waives in another.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from support.policy_builders import NOW, img

from controller.policy import evaluate as ev
from controller.policy.compile import check_policy, compile_policy
from controller.policy.exceptions import (
    MAX_EXCEPTION_DAYS,
    MAX_EXCEPTIONS_PER_NAMESPACE,
    attach,
    check_exception,
    compile_exception,
    expired,
)
from controller.policy.facts import ObjectFacts
from controller.policy.model import RuleCode
from controller.policy.store import PolicyStore, policy_key

TODAY = NOW.date()  # 2025-06-01
UNTIL = "2025-07-31"


def policy_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "pins"},
        "spec": {"pinning": {"require": "Version"}, **spec},
    }


def exception_doc(namespace: str = "shop", name: str = "python-migration", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy": {"kind": "ClusterBaseImagePolicy", "name": "pins"},
        "images": ["docker.io/library/python"],
        "until": UNTIL,
        "reason": "SHOP-12",
    }
    body.update(spec)
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicyException",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def pod(namespace: str | None, labels: dict[str, str] | None = None) -> ObjectFacts:
    return ObjectFacts(kind="Pod", name="web", namespace=namespace, namespace_labels=labels)


def verdicts(policies: Any, obj: ObjectFacts, image: str = "python:3.12-slim") -> list[tuple[str, str, str | None]]:
    [result] = ev.evaluate(list(policies), obj, [img(image, offline=True)], now=NOW)
    return [(v.rule.value, v.action.value, v.waived) for v in result.violations]


# --------------------------------------------------------------------------- namespaceSelector


LEGACY = {"namespaceSelector": {"matchLabels": {"tier": "legacy"}}, "until": UNTIL, "reason": "OPS-2"}


def test_a_policy_exception_waives_by_namespace_labels() -> None:
    policy = compile_policy(policy_doc(exceptions=[LEGACY]))
    waived = "waived until 2025-07-31: OPS-2 (exception #0)"
    assert verdicts([policy], pod("old", {"tier": "legacy"})) == [("unpinned", "allow", waived)]
    assert verdicts([policy], pod("new", {"tier": "current"})) == [("unpinned", "deny", None)]
    # Without labels a namespace carries only its name: the selector does not match.
    assert verdicts([policy], pod("old")) == [("unpinned", "deny", None)]


def test_a_label_waiver_never_covers_an_object_outside_the_cluster() -> None:
    policy = compile_policy(policy_doc(exceptions=[LEGACY]))
    assert verdicts([policy], pod(None)) == [("unpinned", "deny", None)]


def test_a_label_waiver_takes_match_expressions_and_expires() -> None:
    expressions = {
        "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["legacy", "old"]}]},
        "until": "2025-05-31",
    }
    policy = compile_policy(policy_doc(exceptions=[expressions]))
    assert verdicts([policy], pod("old", {"tier": "old"})) == [("unpinned", "deny", None)]  # expired yesterday
    live = compile_policy(policy_doc(exceptions=[{**expressions, "until": UNTIL}]))
    assert verdicts([live], pod("old", {"tier": "old"}))[0][1] == "allow"


def test_a_label_waiver_alone_is_a_scope_and_its_labels_are_checked() -> None:
    assert check_policy(policy_doc(exceptions=[LEGACY])) == []
    bad = {"namespaceSelector": {"matchLabels": {"-bad": "x"}}, "until": UNTIL}
    assert [str(e) for e in check_policy(policy_doc(exceptions=[bad]))] == [
        "spec.exceptions[0].namespaceSelector.matchLabels[-bad]: invalid label key '-bad': at most 63 "
        "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ]
    unknown = {"namespaceSelector": {"matchLabel": {"tier": "x"}}, "until": UNTIL}
    assert "unknown field (did you mean 'matchLabels'?)" in str(check_policy(policy_doc(exceptions=[unknown]))[0])


# --------------------------------------------------------------------------- the exception object


def test_an_exception_object_compiles_to_a_waiver_scoped_to_its_namespace() -> None:
    exc = compile_exception(exception_doc(rules=["unpinned"]), today=TODAY)
    assert exc.key == "BaseImagePolicyException/shop/python-migration"
    assert exc.policy_key == policy_key("ClusterBaseImagePolicy", None, "pins")
    assert exc.waiver.scope == "shop"
    assert exc.waiver.rules == frozenset({RuleCode.UNPINNED})
    assert exc.waiver.label == "BaseImagePolicyException shop/python-migration"


def test_an_exception_waives_in_its_namespace_and_says_which() -> None:
    policies = attach([compile_policy(policy_doc())], [compile_exception(exception_doc(), today=TODAY)])
    assert verdicts(policies, pod("shop")) == [
        ("unpinned", "allow", "waived until 2025-07-31 by BaseImagePolicyException shop/python-migration: SHOP-12")
    ]


@pytest.mark.parametrize("other", ["billing", "shop-eu", "sho"])
def test_an_exception_in_one_namespace_never_waives_in_another(other: str) -> None:
    """Isolation: whatever the exception says, it is about its own namespace only."""
    policies = attach([compile_policy(policy_doc())], [compile_exception(exception_doc(), today=TODAY)])
    assert verdicts(policies, pod(other)) == [("unpinned", "deny", None)]
    assert verdicts(policies, pod(None)) == [("unpinned", "deny", None)]  # nor a Dockerfile in CI


def test_an_exception_naming_a_namespaced_policy_reaches_only_its_own_namespaces_policy() -> None:
    def team_policy(namespace: str) -> Any:
        doc = policy_doc()
        doc["kind"], doc["metadata"] = "BaseImagePolicy", {"name": "pins", "namespace": namespace}
        return compile_policy(doc)

    exc = compile_exception(
        exception_doc(namespace="billing", policy={"kind": "BaseImagePolicy", "name": "pins"}), today=TODAY
    )
    policies = attach([team_policy("shop"), team_policy("billing")], [exc])
    assert verdicts(policies, pod("shop")) == [("unpinned", "deny", None)]
    assert verdicts(policies, pod("billing"))[0][1] == "allow"
    shop = next(p for p in policies if p.namespace == "shop")
    assert not shop.granted  # not even filed under shop's policy of the same name


def test_an_exception_waives_only_the_rules_it_names() -> None:
    strict = policy_doc(pinning={"require": "Version", "disallowedTags": ["latest"]})
    exc = compile_exception(exception_doc(rules=["disallowed-tag"]), today=TODAY)
    policies = attach([compile_policy(strict)], [exc])
    got = verdicts(policies, pod("shop"), "python:latest")
    assert [(r, a) for r, a, _ in got] == [("disallowed-tag", "allow"), ("unpinned", "deny")]


def test_an_exception_waives_only_its_images() -> None:
    policies = attach([compile_policy(policy_doc())], [compile_exception(exception_doc(), today=TODAY)])
    assert verdicts(policies, pod("shop"), "node:20") == [("unpinned", "deny", None)]


def test_an_expired_exception_waives_nothing_and_says_so() -> None:
    exc = compile_exception(exception_doc(until="2025-05-31"), today=dt.date(2025, 5, 1))
    policies = attach([compile_policy(policy_doc())], [exc])
    assert verdicts(policies, pod("shop")) == [("unpinned", "deny", None)]
    assert expired(exc, TODAY) == (
        "expired on 2025-05-31: it waives nothing (file a new one if it is still needed)"
    )
    assert expired(exc, dt.date(2025, 5, 31)) is None  # until is inclusive


def test_until_is_required_and_bounded() -> None:
    latest = TODAY + dt.timedelta(days=MAX_EXCEPTION_DAYS)
    assert check_exception(exception_doc(until=latest.isoformat()), today=TODAY) == []
    [error] = check_exception(exception_doc(until=(latest + dt.timedelta(days=1)).isoformat()), today=TODAY)
    assert str(error) == (
        "spec.until: 2025-08-31 is more than 90 days away (the latest is 2025-08-30): an exception is "
        "time-boxed; file a new one when it ends"
    )
    doc = exception_doc()
    del doc["spec"]["until"]
    assert [str(e) for e in check_exception(doc, today=TODAY)] == ["spec.until: required field is missing"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"images": ["python"]}, "spec.images[0]: 'python' never matches: names are normalized with their registry, write 'docker.io/library/python:latest'"),
        ({"images": []}, "spec.images: must not be empty (leave the field out instead)"),
        ({"until": "2025-02-30"}, "spec.until: '2025-02-30' is not a calendar date: day is out of range for month"),
        ({"policy": {"kind": "Pod", "name": "x"}}, "spec.policy.kind: unsupported value 'Pod': must be one of ClusterBaseImagePolicy, BaseImagePolicy"),
        ({"rules": ["no-such-rule"]}, "spec.rules[0]: unsupported value 'no-such-rule'"),
        ({"namespaces": ["billing"]}, "spec.namespaces: unknown field"),
    ],
    ids=["bare-name", "no-images", "calendar", "kind", "rule", "no-reaching-other-namespaces"],
)
def test_an_invalid_exception_names_the_field(spec: dict[str, Any], expected: str) -> None:
    errors = [str(e) for e in check_exception(exception_doc(**spec), today=TODAY)]
    assert errors and errors[0].startswith(expected), errors


# --------------------------------------------------------------------------- the store


def test_the_store_files_exceptions_under_their_policy_and_drops_a_broken_one() -> None:
    store = PolicyStore()
    store.upsert(policy_key("ClusterBaseImagePolicy", None, "pins"), compile_policy(policy_doc()))
    exc = compile_exception(exception_doc(), today=TODAY)
    snapshot = store.upsert_exception(exc.key, exc)
    assert verdicts(snapshot.policies, pod("shop"))[0][1] == "allow"
    # A broken edit is not kept at its last good version: the stricter state stays in force.
    snapshot = store.upsert_exception(exc.key, "spec.until: required field is missing")
    assert verdicts(snapshot.policies, pod("shop"))[0][1] == "deny"
    assert snapshot.errors[exc.key] == "spec.until: required field is missing"
    store.upsert_exception(exc.key, exc)
    assert verdicts(store.remove(exc.key).policies, pod("shop"))[0][1] == "deny"


def test_a_namespace_holds_a_bounded_number_of_exceptions() -> None:
    store = PolicyStore()
    store.upsert(policy_key("ClusterBaseImagePolicy", None, "pins"), compile_policy(policy_doc()))
    for i in range(MAX_EXCEPTIONS_PER_NAMESPACE):
        exc = compile_exception(exception_doc(name=f"e{i:03}", images=["docker.io/acme/none"]), today=TODAY)
        store.upsert_exception(exc.key, exc)
    extra = compile_exception(exception_doc(name="extra"), today=TODAY)
    snapshot = store.upsert_exception(extra.key, extra)
    assert snapshot.errors[extra.key] == (
        f"metadata.name: namespace shop already holds {MAX_EXCEPTIONS_PER_NAMESPACE} exceptions, the most "
        f"one namespace may hold ({MAX_EXCEPTIONS_PER_NAMESPACE}); this one is not applied: merge or delete "
        "expired ones"
    )
    assert verdicts(snapshot.policies, pod("shop"))[0][1] == "deny"
    # Another namespace is not affected by shop's count.
    other = compile_exception(exception_doc(namespace="billing"), today=TODAY)
    assert verdicts(store.upsert_exception(other.key, other).policies, pod("billing"))[0][1] == "allow"


def test_exceptions_cost_other_namespaces_one_lookup() -> None:
    """Filed by namespace: a review in billing never walks shop's exceptions."""
    store = PolicyStore()
    store.upsert(policy_key("ClusterBaseImagePolicy", None, "pins"), compile_policy(policy_doc()))
    exc = compile_exception(exception_doc(), today=TODAY)
    [policy] = store.upsert_exception(exc.key, exc).policies
    assert set(policy.granted) == {"shop"}
    assert policy.granted["shop"] == (exc.waiver,)
