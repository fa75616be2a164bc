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
from typing import TYPE_CHECKING, Any

from controller.evidence.model import SEVERITIES

if TYPE_CHECKING:  # as in model: the VAP generator, which imports this, never loads the verifier
    from controller.policy.trustspec import AuthoritySpec, TrustPolicy

#: Severities ``denyFixable`` may list (the CRD's ``maxItems``).
MAX_SEVERITIES = len(SEVERITIES)
#: Authorities ``authorities`` may name (the CRD's ``maxItems``): each costs a signature
#: verification per signed document read (at most MAX_DOCUMENTS per image).
MAX_EVIDENCE_AUTHORITIES = 4


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
    #: ``authorities``: only documents signed by one of these count (empty: every document).
    authorities: tuple[AuthoritySpec, ...] = ()

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(a.fingerprint for a in self.authorities)


def compile_evidence(
    value: Any,
    path: str,
    *,
    fail: Callable[[str, str], None],
    duration: Callable[[Any, str], dt.timedelta | None],
    trust: TrustPolicy | None = None,
) -> EvidenceSpec | None:
    """``spec.evidence`` → :class:`EvidenceSpec`; ``None`` when the section is absent.

    ``trust`` is the same policy's compiled ``spec.trust``: the authorities
    ``authorities`` names are looked up there (keys and identities are declared once).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        fail(path, "must be a mapping (maxScanAge, denyFixable, scope, requireScan, authorities)")
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
        authorities=_authorities(value.get("authorities"), f"{path}.authorities", fail, trust),
    )


def _authorities(
    value: Any, path: str, fail: Callable[[str, str], None], trust: TrustPolicy | None
) -> tuple[AuthoritySpec, ...]:
    """The named authorities of ``spec.trust.authorities``; each unknown name refused."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        fail(path, "must be a non-empty list of names from spec.trust.authorities")
        return ()
    if len(value) > MAX_EVIDENCE_AUTHORITIES:
        fail(path, f"names {len(value)} authorities, more than {MAX_EVIDENCE_AUTHORITIES}")
    declared = {a.name: a for a in trust.authorities} if trust is not None else {}
    out: dict[str, AuthoritySpec] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            fail(f"{path}[{i}]", f"must be an authority's name, not {name!r}")
        elif name not in declared:
            known = ", ".join(sorted(declared)) or "none: spec.trust declares no authorities"
            fail(
                f"{path}[{i}]",
                f"unknown authority {name!r}: must be one of spec.trust.authorities ({known})",
            )
        else:
            out.setdefault(name, declared[name])
    return tuple(out.values())
