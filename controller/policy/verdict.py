"""Violations, per-image results and the severity roll-up (deny > warn > audit > allow)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.policy.facts import ImageFacts
from controller.policy.model import Action, RuleCode, most_severe


@dataclass(frozen=True)
class Violation:
    """One rule of one policy broken by one image.

    ``waived`` holds the exception's text (until when, why) when a time-boxed
    exception covers it; the action is then ``allow`` and the output still
    shows it, so a waiver never hides what it waives.
    """

    policy: str
    rule: RuleCode
    action: Action
    message: str
    waived: str | None = None
    #: Which exception waived it: ``BaseImagePolicyException <ns>/<name>`` or ``exception #<i>``
    #: (a policy's own entry); reports name it apart from the text.
    waived_by: str | None = None


@dataclass(frozen=True)
class ImageResult:
    facts: ImageFacts
    violations: tuple[Violation, ...] = ()
    not_evaluated: tuple[RuleCode, ...] = ()  # rules that needed facts we did not have (offline)
    policies: tuple[str, ...] = ()  # the policies that applied to this image

    @property
    def verdict(self) -> Action:
        return most_severe(v.action for v in self.violations)


def summarize(results: Iterable[ImageResult]) -> dict[str, int]:
    """``{"deny": n, "warn": n, "audit": n, "allow": n}`` counted per image result."""
    counts = {a.value: 0 for a in (Action.DENY, Action.WARN, Action.AUDIT, Action.ALLOW)}
    for r in results:
        counts[r.verdict.value] += 1
    return counts
