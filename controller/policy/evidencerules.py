"""The ``evidence`` rules: ``scan-missing``, ``scan-stale``, ``fixable-vulnerabilities``.

PURE: judged from the :class:`~controller.evidence.model.Evidence` the lineage
lookup attached to each platform, with the clock a parameter. What cannot be
judged (offline, no lookup) is *not evaluated*; a lookup that failed, or a
budget that ran out, is ``lookup-failed`` under ``lineage.onLookupFailure``,
never an allow.

``fixable-vulnerabilities`` says where the fix is: vulnerabilities in the base's
layers are fixed by rebuilding on the base's current image when its own scan
no longer has them (or, without a scan of it, when the tag has moved since the
build); otherwise, and for the application's own layers, by updating the package.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from controller.evidence.model import SEVERITIES, Evidence, Vulnerability, Where
from controller.lineage.model import Lineage
from controller.policy import rules
from controller.policy.evidencespec import EvidenceSpec, Scope
from controller.policy.model import EVIDENCE_RULES, Action, CompiledPolicy, RuleCode
from controller.policy.verdict import Violation
from controller.roles import ImageRole

#: Where the platforms go in a message: filled once the platforms are merged (:func:`_merged`).
_AT = "\x00platforms\x00"
#: Characters of a note on an unused document a message carries (a denial line has 600).
NOTE_MAX = 160
#: Vulnerabilities a message names; the rest are counted.
SHOWN = 3
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def rules_of(spec: EvidenceSpec | None) -> set[RuleCode]:
    """The evidence rules a section judges (what "not evaluated" lists when it cannot)."""
    if spec is None:
        return set()
    out = {RuleCode.SCAN_MISSING} if spec.require_scan else set()
    if spec.max_scan_age is not None:
        out.add(RuleCode.SCAN_STALE)
    if spec.deny_fixable:
        out.add(RuleCode.FIXABLE_VULNERABILITIES)
    return out


def judge(
    policy: CompiledPolicy, subject: rules.Subject, *, now: dt.datetime
) -> tuple[list[Violation], set[RuleCode]]:
    """The evidence rules of ``policy`` for one image: (violations, rules not evaluated)."""
    spec = policy.evidence
    if spec is None or subject.facts.role is ImageRole.BUILD:
        return [], set()
    lineage = subject.facts.lineage
    wanted = rules_of(spec)
    if lineage is None:
        return [], wanted
    if lineage.failure is not None:
        # A policy that judges lineage reports the failure with its lineage rules already.
        failed = [] if policy.judges_lineage else rules.lookup_failed(policy, subject, lineage, ())
        return failed, wanted
    found: list[tuple[str, Violation]] = []
    skipped: set[RuleCode] = set()
    for platform in lineage.platforms:
        evidence = platform.evidence
        if evidence is None:
            skipped |= wanted
            continue
        if evidence.failure is not None:
            found += [(platform.platform, v) for v in _failed(policy, subject, evidence.failure)]
            skipped |= wanted
            continue
        judged = _judge_one(policy, spec, subject, evidence, now=now)
        found += [(platform.platform, v) for v in judged]
    return _merged(found, several=len(lineage.platforms) > 1), skipped & wanted


def _merged(found: Sequence[tuple[str, Violation]], *, several: bool) -> list[Violation]:
    """One violation per message, naming the platforms it holds for when the image has several."""
    platforms: dict[Violation, list[str]] = {}
    for platform, v in found:
        platforms.setdefault(v, []).append(platform)
    at = {v: f" ({', '.join(sorted(set(p)))})" if several else "" for v, p in platforms.items()}
    return [replace(v, message=v.message.replace(_AT, at[v])) for v in platforms]


def _violation(policy: CompiledPolicy, rule: RuleCode, action: Action, message: str) -> Violation:
    return Violation(policy=policy.key, rule=rule, action=action, message=message)


def _failed(policy: CompiledPolicy, subject: rules.Subject, failure: str) -> list[Violation]:
    lineage = Lineage(subject.reference, None, failure=failure)
    return rules.lookup_failed(policy, subject, lineage, ())


def _judge_one(
    policy: CompiledPolicy,
    spec: EvidenceSpec,
    subject: rules.Subject,
    evidence: Evidence,
    *,
    now: dt.datetime,
) -> list[Violation]:
    action = policy.base_action
    if spec.authorities:
        evidence = evidence.signed_by(spec.fingerprints)
    newest = evidence.newest
    if newest is None:
        if not spec.require_scan:
            return []
        if spec.authorities:
            return [_unsigned(policy, spec, subject, evidence)]
        seen = ""
        if evidence.notes:  # what was found and not used: the first, cut, and a count
            first = evidence.notes[0]
            first = first if len(first) <= NOTE_MAX else first[: NOTE_MAX - 3] + "..."
            more = f", and {len(evidence.notes) - 1} more" if len(evidence.notes) > 1 else ""
            seen = f" (found but not used: {first}{more})"
        return [
            _violation(
                policy,
                RuleCode.SCAN_MISSING,
                action,
                f"{subject.title}{_AT} has no vulnerability scan attached{seen}; "
                "attach a scan with cosign attest --type vuln",
            )
        ]
    out: list[Violation] = []
    if spec.max_scan_age is not None:
        if newest.finished is None:
            out.append(_violation(
                policy, RuleCode.SCAN_STALE, action,
                f"the newest scan of {subject.title}{_AT} ({newest.source}) records no time, so its "
                f"age is unknown (evidence.maxScanAge {_days(spec.max_scan_age)}); rescan it and "
                "attach the result",
            ))  # fmt: skip
        elif newest.finished < _utc(now) - spec.max_scan_age:
            out.append(_violation(
                policy, RuleCode.SCAN_STALE, action,
                f"the newest scan of {subject.title}{_AT} ({newest.scanner}, {newest.source}) finished "
                f"{newest.finished.date().isoformat()} ({_days(_utc(now) - newest.finished)} ago), "
                f"older than evidence.maxScanAge ({_days(spec.max_scan_age)}); rescan it and attach "
                "the result",
            ))  # fmt: skip
    if spec.deny_fixable:
        out += _fixable(policy, spec, subject, evidence)
    return out


def _unsigned(
    policy: CompiledPolicy, spec: EvidenceSpec, subject: rules.Subject, evidence: Evidence
) -> Violation:
    """scan-missing under ``evidence.authorities``: how many documents were passed over unsigned."""
    names = ", ".join(a.name for a in spec.authorities)
    ignored = evidence.unsigned
    said = (
        f"; {ignored} scan/VEX document{'s' if ignored != 1 else ''} ignored: not signed by "
        f"evidence.authorities ({names})"
        if ignored
        else ""
    )
    seen = ""
    if evidence.notes:
        first = evidence.notes[0]
        first = first if len(first) <= NOTE_MAX else first[: NOTE_MAX - 3] + "..."
        more = f", and {len(evidence.notes) - 1} more" if len(evidence.notes) > 1 else ""
        seen = f" (found but not used: {first}{more})"
    return _violation(
        policy,
        RuleCode.SCAN_MISSING,
        policy.base_action,
        f"{subject.title}{_AT} has no vulnerability scan signed by {names} attached{said}{seen}; "
        f"attach a scan with cosign attest --type vuln, signed by {names}",
    )


def _where(v: Vulnerability, subject: rules.Subject) -> Where:
    """A Dockerfile ``FROM`` image is the base itself: all it carries is the base's."""
    return Where.BASE if subject.facts.role is ImageRole.BASE else v.where


def _fixable(
    policy: CompiledPolicy, spec: EvidenceSpec, subject: rules.Subject, evidence: Evidence
) -> list[Violation]:
    wanted = set(spec.deny_fixable)
    groups: dict[Where, list[Vulnerability]] = {}
    for v in evidence.open_vulnerabilities():
        if not v.fixable or v.severity not in wanted:
            continue
        where = _where(v, subject)
        if spec.scope is Scope.BASE and where is not Where.BASE:
            continue
        if spec.scope is Scope.IMAGE and where is not Where.APPLICATION:
            continue
        groups.setdefault(where, []).append(v)
    out = []
    severities = "/".join(s for s in SEVERITIES if s in wanted)
    for where in (Where.BASE, Where.APPLICATION, Where.UNKNOWN):
        found = sorted(groups.get(where, ()), key=lambda v: (_RANK[v.severity], v.id, v.package))
        if not found:
            continue
        count = f"{len(found)} fixable {severities} vulnerabilit{'y' if len(found) == 1 else 'ies'}"
        listed = _listing(found, severities=len(wanted) > 1)
        if where is Where.BASE and subject.facts.role is ImageRole.BASE:
            head = f"{subject.title}{_AT} carries {count} ({listed})"
            fix = _package_fix(found, "pull a patched tag of it or update")
        elif where is Where.BASE:
            head = f"{subject.title}{_AT} has {count} in its base's layers ({listed})"
            why, fix = _base_fix(evidence, found)
            head += why
        elif where is Where.APPLICATION:
            head = f"{subject.title}{_AT} has {count} in its own layers ({listed})"
            fix = _package_fix(found, "update")
        else:
            head = f"{subject.title}{_AT} has {count} in layers the scan does not name ({listed})"
            fix = _package_fix(found, "update")
        out.append(
            _violation(
                policy, RuleCode.FIXABLE_VULNERABILITIES, policy.base_action, f"{head}; {fix}"
            )
        )
    return out


def _base_fix(evidence: Evidence, found: Sequence[Vulnerability]) -> tuple[str, str]:
    """(what the base's current image says, the action). The base is named once: in the
    action when it is the rebuild, else here (a denial line is cut at 600 bytes)."""
    now = evidence.base_now
    base = evidence.base or "the base"
    rebuild = f"rebuild on the current {base}"
    if evidence.base_moved_to is None:
        return f"; {base} has not been rebuilt since", _package_fix(found, "update")
    if now is None or not now.scanned:
        return "; the base was rebuilt since (not scanned)", rebuild
    still = [v for v in found if v.key in now.still]
    if not still:
        return "; the base was rebuilt since and scans clean of them", rebuild
    return f"; the current {base} still has {len(still)} of them", _package_fix(still, "update")


def _package_fix(found: Sequence[Vulnerability], verb: str) -> str:
    first = found[0]
    fixed = first.fixed.split(",")[0].strip()
    return f"{verb} {first.package} to {fixed}"


def _listing(found: Sequence[Vulnerability], *, severities: bool) -> str:
    shown = [
        f"{v.severity + ' ' if severities else ''}{v.id} {v.package} {v.installed}, fixed in {v.fixed}"
        for v in found[:SHOWN]
    ]
    more = f", and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(shown) + more


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _days(delta: dt.timedelta) -> str:
    days = delta.days
    return f"{days}d" if days else f"{int(delta.total_seconds() // 3600)}h"


__all__ = ["EVIDENCE_RULES", "judge", "rules_of"]
