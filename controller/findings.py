"""Findings: one violation of one image, where that image sits, and the grouping of repeats.

Shared by every adapter that says what was found (the webhook's answer and log,
``baseguard check``, the audit), so each says it the same way and none imports
another's internals. PURE: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.policy.model import Action, RuleCode, most_severe
from controller.policy.verdict import Violation
from controller.workloads import ContainerImage

if TYPE_CHECKING:
    from controller.assess import WorkloadResult

SECTION_NOUN = {
    "containers": "container",
    "initContainers": "init container",
    "ephemeralContainers": "ephemeral container",
    "volumes": "image volume",
}


@dataclass(frozen=True)
class Finding:
    """One violation of one image, with where the image sits in the object."""

    image: ContainerImage
    violation: Violation

    @property
    def where(self) -> str:
        """``container "app"``, ``init container "setup"``, ``image volume "models"``."""
        noun = SECTION_NOUN.get(self.image.section, "container")
        if self.image.container:
            return f'{noun} "{self.image.container}"'
        return f"{noun} at {self.image.path}"

    @property
    def label(self) -> str:
        """``rule (policy)``: how a short line names what was broken."""
        return f"{self.violation.rule.value} ({self.violation.policy})"


def findings(results: Iterable[WorkloadResult]) -> list[Finding]:
    """Every violation, in object order (image by image, then policy, rule)."""
    return [
        Finding(item, violation)
        for result in results
        for item, image_result in zip(result.workload.images, result.results, strict=True)
        for violation in image_result.violations
    ]


def not_evaluated(results: Iterable[WorkloadResult]) -> list[str]:
    """Rules no image could be judged on (``serve --offline``), by name, once each."""
    seen: dict[str, None] = {}
    for result in results:
        for image_result in result.results:
            for rule in image_result.not_evaluated:
                seen.setdefault(rule.value, None)
    return list(seen)


@dataclass(frozen=True)
class Group:
    """One finding said once: a rule broken with the same message (and waiver) by several policies.

    Six end-of-life policies that cannot reach the registry find the same
    ``lookup-failed`` six times; a reader needs it once, naming them all.
    ``action`` is the most severe of theirs.
    """

    rule: RuleCode
    message: str
    waived: str | None
    policies: tuple[str, ...]
    action: Action


def grouped(violations: Iterable[Violation]) -> list[Group]:
    """Violations of one image merged by (rule, message, waiver), in first-seen order."""
    groups: dict[tuple[RuleCode, str, str | None], list[Violation]] = {}
    for v in violations:
        groups.setdefault((v.rule, v.message, v.waived), []).append(v)
    return [
        Group(
            rule=rule,
            message=message,
            waived=waived,
            policies=tuple(dict.fromkeys(v.policy for v in items)),
            action=most_severe(v.action for v in items),
        )
        for (rule, message, waived), items in groups.items()
    ]


def grouped_findings(found: Sequence[Finding]) -> list[tuple[Finding, Group]]:
    """:func:`grouped` image by image: each group with the first finding it merged (for ``where``)."""
    by_image: dict[ContainerImage, list[Finding]] = {}
    for f in found:
        by_image.setdefault(f.image, []).append(f)
    out: list[tuple[Finding, Group]] = []
    for items in by_image.values():
        out.extend((items[0], group) for group in grouped(f.violation for f in items))
    return out
