"""What the ValidatingAdmissionPolicy backstop wants in the cluster (pure; the writes: tests/cluster/test_backstop.py)."""

from __future__ import annotations

import datetime as dt

from support.kube_objects import cluster_policy, ns_policy

from controller.operator import backstop
from controller.policy.compile import compile_policy

TODAY = dt.date(2026, 3, 1)
WAIVED = {
    "pinning": {"disallowedTags": ["latest"]},
    "exceptions": [{"images": ["ghcr.io/acme/*"], "until": "2026-03-10", "reason": "PAY-1"}],
}


def wanted(today: dt.date = TODAY) -> tuple[list[backstop.Wanted], dt.date | None]:
    policies = [
        compile_policy(cluster_policy("no-latest", WAIVED)),
        compile_policy(ns_policy("team", "team-a", {"pinning": {"require": "Digest"}})),
    ]
    uids = {
        ("ClusterBaseImagePolicy", None, "no-latest"): "uid-1",
        ("BaseImagePolicy", "team-a", "team"): "uid-2",
    }
    return backstop.wanted_objects(policies, today=today, owner="baseguard", uids=uids)


def test_each_policy_wants_its_policy_and_binding_labelled_as_ours() -> None:
    objects, next_day = wanted()
    assert [(w.resource, w.name) for w in objects] == [
        (backstop.POLICIES, "baseguard.cluster.no-latest"),
        (backstop.BINDINGS, "baseguard.cluster.no-latest"),
        (backstop.POLICIES, "baseguard.ns.team-a.team"),
        (backstop.BINDINGS, "baseguard.ns.team-a.team"),
    ]
    for w in objects:
        meta = w.body["metadata"]
        assert meta["labels"][backstop.OWNER_LABEL] == "baseguard"
        assert meta["annotations"][backstop.DIGEST_ANNOTATION] == w.digest
    # A cluster policy owns its objects (the garbage collector removes them with it);
    # a namespaced policy cannot own a cluster-scoped object.
    assert objects[0].body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "name": "no-latest",
            "uid": "uid-1",
        }
    ]
    assert "ownerReferences" not in objects[2].body["metadata"]
    assert next_day == dt.date(2026, 3, 11)  # the exception's last day is the 10th


def test_an_expired_exception_changes_the_objects_and_nothing_else_does() -> None:
    before, _ = wanted(TODAY)
    again, _ = wanted(dt.date(2026, 3, 10))
    after, next_day = wanted(dt.date(2026, 3, 11))
    assert [w.digest for w in before] == [w.digest for w in again]
    assert before[0].digest != after[0].digest  # the waiver is gone from the CEL
    assert before[2].digest == after[2].digest
    assert next_day is None


def test_the_check_wakes_when_the_regenerate_day_starts() -> None:
    now = dt.datetime(2026, 3, 10, 23, 59, 30, tzinfo=dt.UTC)
    keeper = backstop.Backstop(None, owner="baseguard", clock=lambda: now, interval=60.0)  # type: ignore[arg-type]
    keeper.next_day = dt.date(2026, 3, 11)
    assert keeper.seconds_to_wait() == 31.0
    keeper.next_day = None
    assert keeper.seconds_to_wait() == 60.0
