"""The trust rules: ``unsigned``, ``signature-invalid``, ``attestation-missing``; facts in, violations out.

PURE. The signatures were fetched and verified by the adapter for the
subjects :func:`controller.policy.trustspec.subjects` names, and handed over
in :attr:`ImageFacts.trust`. A subject passes when any authority vouches for
it (under any of its digests). What could not be looked at is *not
evaluated*; what the registry could not answer, or a bound cut short, is
``lookup-failed`` and ``onLookupFailure`` decides, as for every lineage
lookup: never an allow by omission.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.policy.model import TRUST_RULES, CompiledPolicy, RuleCode
from controller.policy.rules import lookup_failed, lowered
from controller.policy.rungs import Subject, chain_of
from controller.policy.trustspec import (
    AnswerKey,
    AppliesTo,
    AuthoritySpec,
    TrustPolicy,
    TrustSubject,
    answer_key,
    subjects,
)
from controller.policy.verdict import Violation
from controller.trust.results import Reason, TrustAnswer

#: The fix each rule suggests, after the reason.
_SIGN_FIX = "sign it with a listed authority"
_ATTEST_FIX = "attest it with a listed authority"


def judge(policy: CompiledPolicy, subject: Subject) -> tuple[list[Violation], set[RuleCode]]:
    """The trust rules of ``policy`` for one image: (violations, rules not evaluated)."""
    trust = policy.trust
    if trust is None:
        return [], set()
    lineage = subject.facts.lineage
    if lineage is None:
        return [], _codes(trust)
    if lineage.failure is not None:
        if policy.judges_lineage:
            return [], set()  # the lineage rules already say lookup-failed for it
        return lookup_failed(policy, subject, lineage, ()), set()
    found: list[Violation] = []
    failure_action = lowered(policy.base_action, policy.lineage.on_lookup_failure)
    if trust.applies_to is not AppliesTo.IMAGE and not policy.judges_lineage:
        # A chain cut short (a failed lookup, maxDepth) hides bases that were never
        # checked: said as the lineage rules say it, never a pass by omission.
        settings = policy.lineage
        chains = [
            chain_of(p, max_depth=settings.max_depth, verify=settings.verify) for p in lineage.platforms
        ]
        found += lookup_failed(policy, subject, lineage, chains)
    for target in subjects(trust, lineage):
        what = _what(subject, target)
        if not target.digests:
            if failure_action is not None:
                found.append(
                    Violation(
                        policy.key,
                        RuleCode.LOOKUP_FAILED,
                        failure_action,
                        f"the signatures of {what} could not be checked: "
                        f"{target.note or 'its digest is not known'} "
                        f"(lineage.onLookupFailure: {policy.lineage.on_lookup_failure.value}); "
                        "check the registry and the pull credentials, then retry",
                    )
                )
            continue
        checks: list[tuple[Sequence[AuthoritySpec], str | None]] = [(trust.authorities, None)]
        checks += [(a.authorities, a.predicate_type) for a in trust.attestations]
        for authorities, predicate in checks:
            outcome = _outcome(subject, target, authorities, predicate)
            if outcome is None:
                continue  # vouched for
            rule, message = outcome
            if rule is RuleCode.LOOKUP_FAILED:
                if failure_action is None:
                    continue
                fix = (
                    "remove stale signatures from the image's .sig tag"
                    if "were not read" in message
                    else "check the registry and the pull credentials, then retry"
                )
                found.append(
                    Violation(
                        policy.key,
                        rule,
                        failure_action,
                        f"the signatures of {what} could not be checked: {message} "
                        f"(lineage.onLookupFailure: {policy.lineage.on_lookup_failure.value}); {fix}",
                    )
                )
                continue
            kind = f"attestation {predicate}" if predicate else "signature"
            fix = _ATTEST_FIX if predicate else _SIGN_FIX
            found.append(
                Violation(
                    policy.key,
                    rule,
                    policy.base_action,
                    f"{what} has no valid {kind} from {_names(authorities)}: {message}; {fix}",
                )
            )
    return found, set()


def _codes(trust: TrustPolicy) -> set[RuleCode]:
    """The rules left open when nothing was looked up (offline)."""
    return set(TRUST_RULES) if trust.attestations else set(TRUST_RULES) - {RuleCode.ATTESTATION_MISSING}


def _what(subject: Subject, target: TrustSubject) -> str:
    if target.depth == 0:
        return subject.title
    return f"base {target.display} (level {target.depth} of {subject.title})"


def _names(authorities: Sequence[AuthoritySpec]) -> str:
    if len(authorities) == 1:
        return authorities[0].describe
    return "any of " + "; ".join(a.describe for a in authorities)


def _outcome(
    subject: Subject,
    target: TrustSubject,
    authorities: Sequence[AuthoritySpec],
    predicate: str | None,
) -> tuple[RuleCode, str] | None:
    """``None`` when some authority vouches; else (rule, why)."""
    answers: list[tuple[AuthoritySpec, TrustAnswer]] = []
    missing = False
    for authority in authorities:
        for digest in target.digests:
            answer = subject.facts.trust.get(answer_key(target, digest, authority, predicate))
            if answer is None:
                missing = True
                continue
            if answer.result is not None and answer.result.verified:
                return None
            answers.append((authority, answer))
    failures = [(a, x.failure) for a, x in answers if x.failure is not None]
    too_many = [
        (a, x.result.message)
        for a, x in answers
        if x.result is not None and x.result.reason is Reason.TOO_MANY
    ]
    if failures or too_many:
        first = (failures or too_many)[0]
        return RuleCode.LOOKUP_FAILED, f"{first[0].name}: {first[1]}"
    if missing or not answers:
        # The lineage is there but these signatures were not asked about: never a pass.
        return RuleCode.LOOKUP_FAILED, "the signatures were not looked up in this review"
    refused = [(a, x.result) for a, x in answers if x.result is not None]
    telling = [(a, r) for a, r in refused if r.reason is not Reason.UNSIGNED]
    if predicate is not None:
        rule = RuleCode.ATTESTATION_MISSING
    else:
        rule = RuleCode.SIGNATURE_INVALID if telling else RuleCode.UNSIGNED
    shown = telling or refused
    reasons = dict.fromkeys(
        f"{a.name} refused it ({r.reason.value if r.reason else 'refused'}): {r.message}" for a, r in shown
    )
    return rule, "; ".join(reasons)


def signed_by(answers: Mapping[AnswerKey, TrustAnswer]) -> dict[tuple[str, str], list[str]]:
    """Who signed what, from the answers gathered: (repository, digest) → ``signer (authority a)``.

    For output only (``lineage``, ``check``): verified signatures, each said once.
    """
    out: dict[tuple[str, str], list[str]] = {}
    for (name, digest, _, predicate), answer in answers.items():
        result = answer.result
        if result is None or not result.verified or predicate:
            continue
        text = f"{result.signer} (authority {result.authority})"
        seen = out.setdefault((name, digest), [])
        if text not in seen:
            seen.append(text)
    return out
