"""``check --offline``: what was not judged is not a pass.

Offline, the policy core judges an image's own reference and lists the rules
that needed the registry as *not evaluated*; the image then carries no
violation for them, so an allowlist would let ``FROM ubuntu:22.04`` through
as ``ALLOW`` (exit 0) in every CI job that has no registry access. An offline
run is a run whose lookups did not happen, so here every policy that left a
rule open gets what its own ``lineage.onLookupFailure`` says for a lookup that
did not happen: a ``lookup-failed`` violation (deny, warn, or none for
``Allow``), lowered by the policy's mode and waived by its exceptions exactly
as an online lookup failure is — the core decides both, this module only asks.
A gap never weighs more than the rules it hides could have: one left open only
by ``stale-base`` under ``staleBase: Warn`` is a warning, not a denial.

``--allow-unevaluated`` keeps the permissive reading (open rules are listed,
not counted): the caller simply does not call :func:`judge_unevaluated`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace

from controller.assess import WorkloadResult
from controller.lineage.model import Lineage
from controller.policy.evaluate import evaluate
from controller.policy.model import Action, CompiledPolicy, RuleCode, most_severe
from controller.policy.rules import capped, lowered
from controller.policy.rungs import Subject
from controller.policy.verdict import ImageResult, Violation

#: The failure an offline run stands for, as the core reads it (a lookup that did not happen).
OFFLINE_FAILURE = "--offline: no registry lookup was made"

#: The rule an offline gap is reported under: the registry did not answer, for whatever reason.
RULE = RuleCode.LOOKUP_FAILED


def is_unjudged(violation: Violation) -> bool:
    """A finding that says "could not judge", not "judged and refused" (exit codes tell them apart)."""
    return violation.rule is RULE


def judge_unevaluated(
    results: Sequence[WorkloadResult], policies: Sequence[CompiledPolicy], *, now: dt.datetime
) -> list[WorkloadResult]:
    """``results`` with a ``lookup-failed`` violation for each policy that left rules open offline."""
    by_key = {p.key: p for p in policies}
    out = []
    for wr in results:
        images = tuple(_judged(wr, r, by_key, now=now) if r.not_evaluated else r for r in wr.results)
        out.append(replace(wr, results=images))
    return out


def _judged(
    wr: WorkloadResult,
    result: ImageResult,
    by_key: Mapping[str, CompiledPolicy],
    *,
    now: dt.datetime,
) -> ImageResult:
    ref = result.facts.reference
    if ref is None:
        return result
    # As the core sees an image whose lookup failed: it then applies onLookupFailure,
    # the policy's mode and its exceptions (a waiver covers this finding too).
    failed = replace(result.facts, lineage=Lineage(ref, None, failure=OFFLINE_FAILURE))
    added: list[Violation] = []
    for key in result.policies:
        policy = by_key.get(key)
        if policy is None:
            continue
        open_rules = evaluate([policy], wr.obj, [result.facts], now=now)[0].not_evaluated
        if not open_rules:
            continue
        cap = most_severe(_most(policy, rule) for rule in open_rules)
        for found in evaluate([policy], wr.obj, [failed], now=now)[0].violations:
            if found.rule is RULE:
                action = found.action if found.waived else capped(found.action, cap)
                message = _message(policy, Subject(result.facts, ref), action)
                added.append(replace(found, action=action, message=message))
    if not added:
        return result
    violations = sorted((*result.violations, *added), key=lambda v: (v.policy, v.rule.value, v.message))
    return replace(result, violations=tuple(violations))


def _most(policy: CompiledPolicy, rule: RuleCode) -> Action:
    """The most severe action ``rule`` could have given under ``policy``: a gap never weighs
    more than what it hides (an unchecked ``stale-base`` under ``staleBase: Warn`` only warns)."""
    settings = policy.lineage
    if rule is RuleCode.STALE_BASE:
        return lowered(policy.base_action, settings.stale_base) or Action.ALLOW
    if rule is RuleCode.UNKNOWN_BASE:
        return lowered(policy.base_action, settings.on_unknown_base) or Action.ALLOW
    return policy.base_action


def _message(policy: CompiledPolicy, subject: Subject, action: Action) -> str:
    outcome = policy.lineage.on_lookup_failure
    setting = f"lineage.onLookupFailure: {outcome.value}"
    if action.value != outcome.value.lower():
        setting += f", a {action.value} here: the most the rules not evaluated give under mode: {policy.mode.value}"
    # The rules themselves are listed once, in the footer and in JSON's notEvaluated: the
    # same sentence from several policies is then said once (output groups equal findings).
    return (
        f"{subject.title} was not judged by the rules that need the registry: this run is "
        f"--offline ({setting}); run with registry access, or pass --allow-unevaluated to "
        "list them without counting them"
    )


def could_not_judge(result: ImageResult) -> bool:
    """The verdict comes only from what could not be judged (a lookup failed or did not happen):
    every finding at the verdict's level is ``lookup-failed``. Text says "not judged", JSON
    ``"judged": false``, and ``check`` exits with :attr:`ExitCode.UNJUDGED` rather than 1."""
    verdict = result.verdict
    if verdict is Action.ALLOW:
        return False
    return all(is_unjudged(v) for v in result.violations if v.action is verdict)
