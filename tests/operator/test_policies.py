"""Policy objects → the store (pure)."""

from __future__ import annotations

import copy
from typing import Any

from support.kube_objects import cluster_policy, ns_policy

from controller.operator.policies import PolicyBook, document, key_of, read_policy
from controller.policy.model import Mode
from controller.policy.store import PolicyStore

VALID = cluster_policy("prod-bases", {"mode": "Warn", "pinning": {"disallowedTags": ["latest"]}})
BROKEN = cluster_policy(
    "broken",
    {
        "registries": {"allowed": ["docker.io/library/PY*"]},
        "bases": {
            "deprecated": [
                {
                    "image": "docker.io/library/python",
                    "tags": ["3.8*"],
                    "enforceAfter": "2025-02-30",
                }
            ]
        },
    },
)


def served(obj: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """``obj`` as the API server returns it: server-side fields, a status."""
    out = copy.deepcopy(obj)
    out["metadata"].update(
        {
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "42",
            "managedFields": [{"manager": "kubectl"}],
            **meta,
        }
    )
    out["status"] = {"observedGeneration": 1}
    return out


def test_document_keeps_identity_and_spec_only() -> None:
    doc = document(served(VALID))
    assert doc == {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "prod-bases", "uid": "uid-1", "generation": 1},
        "spec": VALID["spec"],
    }


def test_a_valid_policy_compiles_with_its_identity() -> None:
    record = read_policy(served(VALID, generation=3))
    assert record.policy is not None and record.errors == ()
    assert (record.policy.mode, record.policy.generation, record.policy.uid) == (
        Mode.WARN,
        3,
        "uid-1",
    )
    assert record.key == "ClusterBaseImagePolicy//prod-bases"
    assert record.path == "/apis/baseguard.io/v1alpha1/clusterbaseimagepolicies/prod-bases/status"


def test_an_invalid_policy_reports_every_field_path() -> None:
    record = read_policy(served(BROKEN))
    assert record.policy is None
    assert [e.path for e in record.errors] == [
        "spec.registries.allowed[0]",
        "spec.bases.deprecated[0].enforceAfter",
    ]


def test_list_items_without_kind_take_the_watched_kind() -> None:
    item = served(ns_policy("legacy", "team-a", {"pinning": {}}))
    del item["kind"], item["apiVersion"]
    record = read_policy(item, kind="BaseImagePolicy")
    assert record.policy is not None and record.policy.namespace == "team-a"
    assert (
        record.path
        == "/apis/baseguard.io/v1alpha1/namespaces/team-a/baseimagepolicies/legacy/status"
    )
    assert key_of(item, kind="BaseImagePolicy") == "BaseImagePolicy/team-a/legacy"


def test_the_book_compiles_once_per_generation() -> None:
    store = PolicyStore()
    book = PolicyBook(store)
    first, compiled = book.apply(served(VALID))
    assert compiled and store.snapshot.generation == 1
    # the operator's own status write: same generation, new status; nothing recompiled or republished
    again, compiled = book.apply(
        served(VALID) | {"status": {"observedGeneration": 1, "conditions": []}}
    )
    assert not compiled
    assert store.snapshot.generation == 1
    assert again.status == {"observedGeneration": 1, "conditions": []}
    assert again.policy is first.policy


def test_a_broken_edit_keeps_the_last_good_generation_in_force() -> None:
    store = PolicyStore()
    book = PolicyBook(store)
    book.apply(served(VALID))
    broken = served(VALID, generation=2)
    broken["spec"] = BROKEN["spec"]
    record, _ = book.apply(broken)
    assert record.policy is None
    in_force = book.in_force(record.key)
    assert in_force is not None and in_force.generation == 1
    assert store.snapshot.errors == {record.key: "; ".join(str(e) for e in record.errors)}
    book.remove(broken)
    assert store.snapshot.policies == () and store.snapshot.errors == {}
    assert book.get(record.key) is None
