"""``BaseImagePolicyException`` objects → the operator's book, the store and their status (pure).

The operator watches them like policies: each compiles into the store the webhook reads,
filed under the policy it names for its own namespace only; its status says what it waives,
that it expired, or which field is wrong, while every other object keeps working.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from support.kube_objects import cluster_policy

from controller.operator.policies import KINDS, PolicyBook, cluster_policies, read_policy
from controller.operator.status import desired_status
from controller.policy import evaluate as ev
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.store import PolicyStore
from controller.reference import parse

TODAY = dt.date(2026, 3, 1)
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PINS = cluster_policy("pins", {"pinning": {"require": "Version"}})


def exception(namespace: str = "shop", name: str = "python-migration", **spec: Any) -> dict[str, Any]:
    body = {
        "policy": {"kind": "ClusterBaseImagePolicy", "name": "pins"},
        "images": ["docker.io/library/python"],
        "until": "2026-04-30",
        "reason": "SHOP-12",
        **spec,
    }
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicyException",
        "metadata": {"name": name, "namespace": namespace, "uid": f"u-{namespace}-{name}", "generation": 1},
        "spec": body,
    }


def served(obj: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": out["metadata"].get("uid", "u"), "generation": generation})
    return out


def actions(store: PolicyStore, namespace: str) -> list[tuple[str, str | None]]:
    obj = ObjectFacts(kind="Pod", name="web", namespace=namespace)
    image = ImageFacts(image="python:3.12-slim", reference=parse("python:3.12-slim"))
    [result] = ev.evaluate(store.snapshot.policies, obj, [image], now=NOW)
    return [(v.action.value, v.waived) for v in result.violations]


def book() -> tuple[PolicyBook, PolicyStore]:
    store = PolicyStore()
    out = PolicyBook(store, today=lambda: TODAY)
    out.apply(served(PINS))
    return out, store


def test_the_kind_is_watched_like_the_policies() -> None:
    kind = KINDS["BaseImagePolicyException"]
    assert (kind.plural, kind.namespaced) == ("baseimagepolicyexceptions", True)
    assert kind.path("shop", "x", status=True) == (
        "/apis/baseguard.io/v1alpha1/namespaces/shop/baseimagepolicyexceptions/x/status"
    )


def test_an_exception_object_waives_in_its_namespace_only() -> None:
    policies, store = book()
    record, compiled = policies.apply(exception())
    assert compiled and record.exception is not None and record.errors == ()
    waived = "waived until 2026-04-30 by BaseImagePolicyException shop/python-migration: SHOP-12"
    assert actions(store, "shop") == [("allow", waived)]
    assert actions(store, "billing") == [("deny", None)]
    status = desired_status(record, now=NOW, in_force=policies.in_force("ClusterBaseImagePolicy//pins"))
    assert status["conditions"][0]["status"] == "True"
    assert status["conditions"][0]["message"] == (
        "waives every rule of ClusterBaseImagePolicy pins for the workloads of namespace shop until 2026-04-30"
    )
    policies.remove(exception())
    assert actions(store, "shop") == [("deny", None)]


def test_an_invalid_exception_is_not_ready_and_waives_nothing_while_the_others_work() -> None:
    policies, store = book()
    policies.apply(exception(namespace="billing"))
    policies.apply(exception())
    broken = exception(until="2026-12-31")  # more than 90 days away
    record, _ = policies.apply(served(broken, generation=2))
    assert record.exception is None
    status = desired_status(record, now=NOW, in_force=None)
    condition = status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "Invalid")
    assert condition["message"] == (
        "spec.until: 2026-12-31 is more than 90 days away (the latest is 2026-05-30): an exception is "
        "time-boxed; file a new one when it ends; not in force: it waives nothing until fixed"
    )
    assert status["errors"] == [{"path": "spec.until", "reason": condition["message"].split(": ", 1)[1].split("; not in force")[0]}]
    assert actions(store, "shop") == [("deny", None)]  # its last good version is not kept
    assert actions(store, "billing")[0][0] == "allow"  # the others keep working
    assert store.snapshot.errors["BaseImagePolicyException/shop/python-migration"].startswith("spec.until: ")


def test_an_expired_exception_says_so_in_its_status() -> None:
    record = read_policy(exception(until="2026-02-28"), today=dt.date(2026, 2, 1))
    condition = desired_status(record, now=NOW, in_force=None)["conditions"][0]
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "Expired",
        "expired on 2026-02-28: it waives nothing (file a new one if it is still needed)",
    )


def test_an_exception_naming_no_policy_in_force_says_it_waives_nothing() -> None:
    record = read_policy(exception(policy={"kind": "ClusterBaseImagePolicy", "name": "gone"}), today=TODAY)
    condition = desired_status(record, now=NOW, in_force=None)["conditions"][0]
    assert condition["status"] == "True"
    assert condition["message"].endswith(
        "; ClusterBaseImagePolicy gone is not in force, so it waives nothing now"
    )


class FakeList:
    """The two calls ``cluster_policies`` makes, answered from memory (no cluster needed)."""

    def __init__(self, items: dict[str, list[dict[str, Any]]], missing: frozenset[str] = frozenset()) -> None:
        self.items, self.missing = items, missing

    async def list(self, path: str, *, kind: str) -> list[dict[str, Any]]:
        if kind in self.missing:
            error = RuntimeError("not found")
            error.status = 404  # type: ignore[attr-defined]
            raise error
        return self.items.get(kind, [])


async def test_audit_lists_exceptions_with_the_policies_and_tolerates_an_older_crd_set() -> None:
    kube = FakeList(
        {"ClusterBaseImagePolicy": [served(PINS)], "BaseImagePolicyException": [exception()]}
    )
    [policy], problems = await cluster_policies(kube)  # type: ignore[arg-type]
    assert problems == [] and set(policy.granted) == {"shop"}
    older = FakeList({"ClusterBaseImagePolicy": [served(PINS)]}, missing=frozenset({"BaseImagePolicyException"}))
    [policy], problems = await cluster_policies(older)  # type: ignore[arg-type]
    assert problems == [] and not policy.granted


async def test_an_audit_report_shows_a_waived_finding_as_skip_with_the_exceptions_name() -> None:
    from controller.assess import Assessor
    from controller.operator.audit import plan, reports
    from controller.operator.audit.plan import AUDITED
    from controller.policy.compile import compile_policy
    from controller.policy.exceptions import attach, compile_exception

    resources = {r.kind: r for r in AUDITED}

    def deployment(name: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "python:3.12-slim"}]}}},
        }

    policies = attach(
        [compile_policy(PINS)], [compile_exception(exception(), today=TODAY)]
    )
    audited = [
        a
        for obj in (deployment("web", "shop"), deployment("api", "billing"))
        for a in plan.audited_objects(resources["Deployment"], [obj])
    ]
    results = await Assessor(None).assess([a.workload for a in audited], list(policies), now=NOW)
    found = reports.report_results(list(zip(audited, results, strict=True)), now=NOW)
    [shop] = [r for r in found["shop"] if r["rule"] == "unpinned"]
    assert shop["result"] == "skip"
    assert shop["properties"]["exception"] == "BaseImagePolicyException shop/python-migration"
    assert shop["properties"]["waived"].startswith("waived until 2026-04-30 by BaseImagePolicyException")
    [billing] = [r for r in found["billing"] if r["rule"] == "unpinned"]
    assert billing["result"] == "fail" and "exception" not in billing["properties"]
