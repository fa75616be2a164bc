"""Events on the offending objects, without I/O.

One Event per (object, policy, rule, container, message), named after its
hash, so a finding that persists across audits updates one Event's ``count``
instead of piling up new ones; :class:`EventLedger` keeps a persisting
finding from refreshing its Event more often than ``event_interval``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.operator.audit.plan import (
    MANAGED_BY,
    SOURCE,
    Finding,
    Pair,
    breaks,
    findings,
)
from controller.operator.status import rfc3339

EVENT_REASON = "PolicyViolation"
EVENT_MESSAGE_MAX = 1024

def event_key(f: Finding) -> str:
    """Identity of a finding for de-duplication: same object, policy, rule, container and message."""
    v = f.violation
    text = "\x00".join(
        (
            f.ref.uid or f.ref.title,
            v.policy,
            v.rule.value,
            f.image.container or "",
            f.image.image,
            v.message,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def event_name(f: Finding) -> str:
    """``<object>.<hash>``: a valid name, stable for the same finding."""
    return f"{f.ref.name[:200]}.{event_key(f)}"


def event_message(f: Finding) -> str:
    v = f.violation
    who = f"container {f.image.container}" if f.image.container else "image"
    text = f"{v.policy} {v.rule.value} ({v.action.value}): {who} {f.image.image}: {v.message}"
    return text if len(text) <= EVENT_MESSAGE_MAX else text[: EVENT_MESSAGE_MAX - 3] + "..."


def event_body(
    f: Finding, *, now: dt.datetime, first: dt.datetime, count: int, instance: str
) -> dict[str, Any]:
    """A ``v1`` Event on the offending object (``kubectl describe`` shows it)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(f),
            "namespace": f.ref.namespace or "default",
            "labels": dict(MANAGED_BY),
        },
        "involvedObject": f.ref.as_dict(),
        "reason": EVENT_REASON,
        "message": event_message(f),
        "type": "Warning",
        "source": {"component": SOURCE},
        "reportingComponent": "baseguard.io/audit",
        "reportingInstance": instance,
        "action": "Audit",
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(now),
        "count": count,
    }


def event_findings(pairs: Sequence[Pair]) -> list[Finding]:
    """The findings worth an Event: not waived, not allowed, one per :func:`event_key`."""
    seen: dict[str, Finding] = {}
    for f in findings(pairs):
        if breaks(f):
            seen.setdefault(event_key(f), f)
    return list(seen.values())


@dataclass
class EventLedger:
    """Which findings were posted when: an Event is repeated at most every ``interval``.

    Between audits a finding that persists costs no API call; after
    ``interval`` its Event's ``count`` and ``lastTimestamp`` move, so it does
    not expire from the cluster (Events live an hour by default) while the
    problem is still there.
    """

    interval: dt.timedelta
    _posted: dict[str, tuple[dt.datetime, dt.datetime, int]] = field(default_factory=dict)
    #: Findings an audit found past its Event budget: told by the report alone, and never
    #: posted later while they persist (a backlog drained 200 a pass kept every pass of an
    #: unchanged 10,000-pod cluster writing). A finding that goes and comes back is new.
    _untold: set[str] = field(default_factory=set)

    def due(self, key: str, now: dt.datetime) -> bool:
        if key in self._untold:
            return False
        last = self._posted.get(key)
        return last is None or now - last[1] >= self.interval

    def untold(self, key: str) -> None:
        """``key`` was found when the audit's Event budget was spent: the report tells it."""
        self._untold.add(key)

    def next_count(self, key: str, now: dt.datetime) -> tuple[dt.datetime, int]:
        """(firstTimestamp, count) for the next post of ``key``."""
        last = self._posted.get(key)
        return (now, 1) if last is None else (last[0], last[2] + 1)

    def posted(self, key: str, *, first: dt.datetime, now: dt.datetime, count: int) -> None:
        self._posted[key] = (first, now, count)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget findings that are gone, so a problem that comes back is told at once."""
        live = set(keys)
        for key in list(self._posted):
            if key not in live:
                del self._posted[key]
        self._untold &= live
