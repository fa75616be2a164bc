"""What a policy's ``status`` should say; PURE.

Only the fields of the CRD schema are written (the apiserver prunes anything
else): ``observedGeneration``, ``conditions`` (one, ``Ready``), ``errors``
(``[{path, reason}]``) and ``audit`` (``{lastRun, objects, violations}``).

``Ready`` follows the Kubernetes condition conventions: ``status`` is
``"True"``/``"False"``, ``reason`` is a CamelCase word a tool can switch on
(``Compiled``, ``Invalid``), ``message`` is for people, ``observedGeneration``
says which spec it describes, and ``lastTransitionTime`` moves only when
``status`` changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.operator.policies import PolicyRecord
from controller.policy.exceptions import CompiledException, expired
from controller.policy.model import CompiledPolicy

READY = "Ready"
COMPILED = "Compiled"
INVALID = "Invalid"
#: A ``BaseImagePolicyException`` past its ``until``: valid, and waiving nothing.
EXPIRED = "Expired"
MAX_STATUS_ERRORS = 256  # status.errors maxItems in the CRD schema


def rfc3339(moment: dt.datetime) -> str:
    """``metav1.Time``: seconds precision, UTC, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _previous_ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == READY:
            return condition
    return None


def ready_condition(
    record: PolicyRecord, *, now: dt.datetime, in_force: CompiledPolicy | None
) -> dict[str, Any]:
    """The ``Ready`` condition for ``record``.

    ``in_force`` is what the webhook applies under the record's key: for an
    invalid record, its last good generation (if any), which the message names
    so nobody believes the broken edit is what is enforced.
    """
    if record.exception is not None:
        status, reason, message = _exception_ready(record.exception, now.date(), in_force)
    elif record.policy is not None:
        policy = record.policy
        status, reason = "True", COMPILED
        message = f"in force in {policy.mode.value} mode"
    elif record.is_exception:
        status, reason = "False", INVALID
        message = _first_error(record) + "; not in force: it waives nothing until fixed"
    else:
        status, reason = "False", INVALID
        first = record.errors[0] if record.errors else None
        message = (
            f"{first.path}: {first.reason}" if first and first.path else str(first or "invalid")
        )
        if len(record.errors) > 1:
            message += f" (and {len(record.errors) - 1} more in status.errors)"
        if in_force is not None and in_force.generation != record.generation:
            message += f"; generation {in_force.generation} stays in force"
        else:
            message += "; not in force"
    previous = _previous_ready(record.status)
    moved = previous is None or previous.get("status") != status
    since = (
        rfc3339(now)
        if moved or not previous
        else previous.get("lastTransitionTime") or rfc3339(now)
    )
    return {
        "type": READY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": record.generation,
    }


def _first_error(record: PolicyRecord) -> str:
    first = record.errors[0] if record.errors else None
    message = f"{first.path}: {first.reason}" if first and first.path else str(first or "invalid")
    if len(record.errors) > 1:
        message += f" (and {len(record.errors) - 1} more in status.errors)"
    return message


def _exception_ready(
    exception: CompiledException, today: dt.date, target: CompiledPolicy | None
) -> tuple[str, str, str]:
    """(status, reason, message) of an exception: what it waives, or why it waives nothing."""
    gone = expired(exception, today)
    if gone is not None:
        return "False", EXPIRED, gone
    waiver = exception.waiver
    rules = ", ".join(sorted(waiver.rules)) if waiver.rules is not None else "every rule"
    message = (
        f"waives {rules} of {exception.policy_title} for the workloads of namespace "
        f"{exception.namespace} until {waiver.until.isoformat()}"
    )
    if target is None:
        message += f"; {exception.policy_title} is not in force, so it waives nothing now"
    return "True", COMPILED, message


def desired_status(
    record: PolicyRecord, *, now: dt.datetime, in_force: CompiledPolicy | None
) -> dict[str, Any]:
    """``observedGeneration``, ``conditions`` and ``errors`` (``None`` to clear them)."""
    # The CRD caps status.errors (maxItems 256); the first ones say what to fix.
    errors = [{"path": e.path, "reason": e.reason} for e in record.errors[:MAX_STATUS_ERRORS]]
    return {
        "observedGeneration": record.generation,
        "conditions": [ready_condition(record, now=now, in_force=in_force)],
        "errors": errors or None,
    }


def _comparable(condition: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        condition.get(k) for k in ("type", "status", "reason", "message", "observedGeneration")
    )


def status_patch(
    record: PolicyRecord, *, now: dt.datetime, in_force: CompiledPolicy | None
) -> dict[str, Any] | None:
    """A merge patch for the ``/status`` subresource, or ``None`` when the status already says it.

    Comparing first keeps the operator from writing (and so from waking every
    watcher) on each event it sees, including the events of its own writes.
    """
    desired = desired_status(record, now=now, in_force=in_force)
    current = record.status
    same = (
        current.get("observedGeneration") == desired["observedGeneration"]
        and (current.get("errors") or None) == desired["errors"]
        and isinstance(current.get("conditions"), list)
        and [_comparable(c) for c in current["conditions"] if isinstance(c, Mapping)]
        == [_comparable(c) for c in desired["conditions"]]
    )
    return None if same else {"status": desired}


@dataclass(frozen=True)
class AuditCounts:
    """One policy's audit figures: objects it applied to, and how many of those break it."""

    objects: int = 0
    violations: int = 0


def audit_patch(counts: AuditCounts, *, last_run: dt.datetime) -> dict[str, Any]:
    """A merge patch for ``status.audit`` (the rest of the status is left as it is)."""
    return {
        "status": {
            "audit": {
                "lastRun": rfc3339(last_run),
                "objects": counts.objects,
                "violations": counts.violations,
            }
        }
    }
