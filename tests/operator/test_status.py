"""What a policy's status says (pure): the Ready condition, errors, audit figures."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from support.kube_objects import cluster_policy

from controller.operator.policies import PolicyRecord, read_policy
from controller.operator.status import (
    AuditCounts,
    audit_patch,
    desired_status,
    ready_condition,
    status_patch,
)
from controller.policy.compile import compile_policy

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
GOOD = cluster_policy("prod-bases", {"mode": "Audit", "pinning": {}})
BAD = cluster_policy(
    "prod-bases", {"pinning": {"require": "Sometimes", "disallowedTags": ["lat est"]}}
)


def record(
    doc: dict[str, Any], *, generation: int = 2, status: dict[str, Any] | None = None
) -> PolicyRecord:
    body = copy.deepcopy(doc)
    body["metadata"].update({"uid": "u", "generation": generation})
    if status is not None:
        body["status"] = status
    return read_policy(body)


def test_a_compiled_policy_is_ready() -> None:
    condition = ready_condition(record(GOOD), now=NOW, in_force=None)
    assert condition == {
        "type": "Ready",
        "status": "True",
        "reason": "Compiled",
        "message": "in force in Audit mode",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
        "observedGeneration": 2,
    }


def test_an_invalid_policy_names_the_field_and_what_stays_in_force() -> None:
    previous = compile_policy({**GOOD, "metadata": {"name": "prod-bases", "generation": 1}})
    status = desired_status(record(BAD), now=NOW, in_force=previous)
    condition = status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "Invalid")
    assert condition["message"].startswith("spec.pinning.require: ")
    assert condition["message"].endswith(
        "(and 1 more in status.errors); generation 1 stays in force"
    )
    assert [e["path"] for e in status["errors"]] == [
        "spec.pinning.require",
        "spec.pinning.disallowedTags[0]",
    ]
    assert status["observedGeneration"] == 2


def test_an_invalid_policy_with_no_good_generation_is_not_in_force() -> None:
    condition = ready_condition(record(BAD, generation=1), now=NOW, in_force=None)
    assert condition["message"].endswith("; not in force")


def test_the_transition_time_moves_only_when_the_status_does() -> None:
    earlier = "2026-02-01T00:00:00Z"
    seen = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": earlier}]}
    assert (
        ready_condition(record(GOOD, status=seen), now=NOW, in_force=None)["lastTransitionTime"]
        == earlier
    )
    assert (
        ready_condition(record(BAD, status=seen), now=NOW, in_force=None)["lastTransitionTime"]
        == "2026-03-01T12:00:00Z"
    )


def test_no_patch_when_the_object_already_says_it() -> None:
    first = record(GOOD)
    patch = status_patch(first, now=NOW, in_force=None)
    assert patch is not None and patch["status"]["errors"] is None  # null clears old errors
    written = record(GOOD, status={k: v for k, v in patch["status"].items() if v is not None})
    assert status_patch(written, now=NOW + dt.timedelta(hours=1), in_force=None) is None
    newer = record(GOOD, generation=3, status=written.status)
    assert status_patch(newer, now=NOW, in_force=None) is not None


def test_the_audit_patch_touches_only_status_audit() -> None:
    assert audit_patch(AuditCounts(objects=120, violations=4), last_run=NOW) == {
        "status": {"audit": {"lastRun": "2026-03-01T12:00:00Z", "objects": 120, "violations": 4}}
    }
