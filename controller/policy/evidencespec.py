"""The policy's ``evidence`` section: what scan evidence an image must carry.

Compiled apart from :mod:`controller.policy.compile` (which calls
:func:`compile_evidence`) so the section, its defaults and its validation live in
one place. PURE: a mapping in, an :class:`EvidenceSpec` out, every refusal a
field path and a reason through the compiler's ``fail``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.evidence.model import SEVERITIES

#: Severities ``denyFixable`` may list (the CRD's ``maxItems``).
MAX_SEVERITIES = len(SEVERITIES)


class Scope(StrEnum):
    """Which vulnerabilities ``denyFixable`` judges, by the layer that holds them."""

    BASE = "Base"  # only those in the base's layers: "rebuild on the current base"
    IMAGE = "Image"  # only those the image's own layers added: "update the package"
    ALL = "All"  # every one, wherever it sits (and those no layer is known for)


@dataclass(frozen=True)
class EvidenceSpec:
    """``spec.evidence``, compiled. Its presence makes the image's scan evidence looked up."""

    max_scan_age: dt.timedelta | None = None
    deny_fixable: tuple[str, ...] = ()  # severities, in SEVERITIES order
    scope: Scope = Scope.ALL
    require_scan: bool = True


def compile_evidence(
    value: Any,
    path: str,
    *,
    fail: Callable[[str, str], None],
    duration: Callable[[Any, str], dt.timedelta | None],
) -> EvidenceSpec | None:
    """``spec.evidence`` → :class:`EvidenceSpec`; ``None`` when the section is absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        fail(path, "must be a mapping (maxScanAge, denyFixable, scope, requireScan)")
        return None
    severities: list[str] = []
    listed = value.get("denyFixable")
    if listed is not None and not isinstance(listed, list):
        fail(f"{path}.denyFixable", "must be a list of severities (e.g. [CRITICAL, HIGH])")
    elif listed is not None:
        if len(listed) > MAX_SEVERITIES:
            fail(
                f"{path}.denyFixable", f"lists {len(listed)} severities, more than {MAX_SEVERITIES}"
            )
        for i, item in enumerate(listed):
            if item not in SEVERITIES:
                fail(
                    f"{path}.denyFixable[{i}]",
                    f"unsupported value {item!r}: must be one of {', '.join(SEVERITIES)}",
                )
            elif item not in severities:
                severities.append(item)
    scope = Scope.ALL
    written = value.get("scope")
    if written is not None:
        try:
            scope = Scope(str(written))
        except ValueError:
            fail(
                f"{path}.scope",
                f"unsupported value {value.get('scope')!r}: must be one of "
                f"{', '.join(s.value for s in Scope)}",
            )
    require = value.get("requireScan", True)
    if not isinstance(require, bool):
        fail(f"{path}.requireScan", f"must be true or false, not {require!r}")
        require = True
    age = value.get("maxScanAge")
    if age is not None and not isinstance(age, str):
        fail(
            f"{path}.maxScanAge",
            f"{age!r} is not a duration: expected a number and a unit h, d or w (e.g. 7d)",
        )
    return EvidenceSpec(
        max_scan_age=duration(age, f"{path}.maxScanAge"),
        deny_fixable=tuple(s for s in SEVERITIES if s in severities),
        scope=scope,
        require_scan=require,
    )
