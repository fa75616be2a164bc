"""What an AdmissionReview answer says: the denial message, warnings, audit annotations.

PURE. The limits come from what the apiserver does with each part (see
:mod:`controller.webhook.review`): warnings travel as HTTP ``Warning`` headers
(ASCII, at most 120 characters each asked for, the lot truncated past 4 KiB),
audit-annotation keys must be qualified-name *name parts*.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from controller.findings import Finding
from controller.policy.model import Action

WARNING_MAX = 120
WARNINGS_TOTAL_MAX = 2048
MESSAGE_LINE_MAX = 600
MESSAGE_LINES_MAX = 10
AUDIT_KEY_MAX = 63
AUDIT_VALUE_MAX = 1024

_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r"\s+")
_AUDIT_KEY_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_AUDIT_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

_ASCII = str.maketrans(
    {
        "\u2192": "->",  # →
        "\u2190": "<-",  # ←
        "\u2026": "...",  # …
        "\u2014": "-",  # em dash
        "\u2013": "-",  # en dash
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: A lone surrogate (``"\\ud800"`` in the JSON of a review) is no character: UTF-8 cannot
#: carry it, so it is shown as its escape.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def clip(text: str, limit: int, *, ascii_only: bool = True) -> str:
    """``text`` as one line of at most ``limit`` bytes, ``...`` where cut, ending on a word.

    ``ascii_only`` (for warnings, which travel as HTTP headers): common
    typography is spelled in ASCII (``→`` as ``->``), anything else outside
    printable ASCII becomes ``?``. Otherwise only control characters go, and a
    lone surrogate is written as its ``\\uXXXX`` escape.
    """
    line = _SPACES.sub(" ", text).strip()
    line = (
        _NOT_PRINTABLE.sub("?", line.translate(_ASCII))
        if ascii_only
        else _SURROGATE.sub(_escape, _CONTROL.sub(" ", line))
    )
    if len(line.encode()) <= limit:
        return line
    cut = line[: max(limit - 3, 0)]
    while len(cut.encode()) > limit - 3:
        cut = cut[:-1]
    space = cut.rfind(" ", len(cut) - 20)
    if space > 0:  # end on a word when one ends near the limit
        cut = cut[:space]
    return cut.rstrip() + "..."


def deny_message(found: Sequence[Finding], *, uid: str = "") -> str:
    """The ``status.message`` of a denial: one line per denying violation.

    Each line: ``container "app" image "python:3.8": policy P, rule R: <what,
    why and the fix>``. At most :data:`MESSAGE_LINES_MAX` lines of
    :data:`MESSAGE_LINE_MAX` bytes; the rest is counted and left to the log.
    """
    lines: dict[str, None] = {}
    for f in found:
        if f.violation.action is not Action.DENY:
            continue
        v = f.violation
        lines.setdefault(
            clip(
                f'{f.where} image "{f.image.image}": policy {v.policy}, rule {v.rule.value}: '
                f"{v.message}",
                MESSAGE_LINE_MAX,
                ascii_only=False,
            )
        )
    shown = list(lines)[:MESSAGE_LINES_MAX]
    rest = len(lines) - len(shown)
    if rest:
        where = f" (uid {uid})" if uid else ""
        shown.append(f"... and {rest} more in the baseguard log{where}")
    return "\n".join(shown)


def warning_lines(found: Sequence[Finding], *, extra: Sequence[str] = ()) -> list[str]:
    """``warnings``: warn-level violations, then waived ones, then ``extra`` notes.

    Each at most :data:`WARNING_MAX` bytes; together at most
    :data:`WARNINGS_TOTAL_MAX`, the last line saying how many were left out.
    """
    candidates: dict[str, None] = {}
    for f in found:
        v = f.violation
        if v.action is Action.WARN:
            candidates.setdefault(clip(f"{f.label}, {f.where}: {v.message}", WARNING_MAX))
    for f in found:
        v = f.violation
        if v.waived is not None:
            candidates.setdefault(clip(f"{f.label}, {f.where}: {v.waived}", WARNING_MAX))
    for note in extra:
        candidates.setdefault(clip(note, WARNING_MAX))
    out: list[str] = []
    total = 0
    items = list(candidates)
    for i, line in enumerate(items):
        left = len(items) - i
        reserve = 0 if left == 1 else len(f"... and {left} more (see the baseguard log)")
        if total + len(line) + reserve > WARNINGS_TOTAL_MAX:
            out.append(f"... and {left} more (see the baseguard log)")
            break
        out.append(line)
        total += len(line)
    return out


def audit_key(policy: str) -> str:
    """A valid audit-annotation key (qualified-name *name part*) for a policy key.

    ``payments/legacy`` → ``payments.legacy``; longer than 63 characters →
    cut, with a short hash so two long names stay distinct.
    """
    key = _AUDIT_KEY_BAD.sub("-", policy.replace("/", ".")).strip("-._") or "policy"
    if len(key) > AUDIT_KEY_MAX:
        digest = hashlib.sha256(policy.encode()).hexdigest()[:8]
        key = key[: AUDIT_KEY_MAX - 9].rstrip("-._") + "-" + digest
    if not _AUDIT_KEY.match(key):  # pragma: no cover - the steps above guarantee it
        key = "policy-" + hashlib.sha256(policy.encode()).hexdigest()[:8]
    return key


def audit_annotations(found: Sequence[Finding]) -> dict[str, str]:
    """One key per policy with audit-level violations: ``rule: where image; ...``."""
    per_policy: dict[str, dict[str, None]] = {}
    for f in found:
        v = f.violation
        if v.action is Action.AUDIT:
            per_policy.setdefault(v.policy, {}).setdefault(
                f"{v.rule.value}: {f.where} {f.image.image}"
            )
    return {
        audit_key(policy): clip("; ".join(items), AUDIT_VALUE_MAX, ascii_only=False)
        for policy, items in per_policy.items()
    }

