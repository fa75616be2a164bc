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

from controller.findings import Finding, Group
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


def _policies(group: Group) -> str:
    return "policy " + group.policies[0] if len(group.policies) == 1 else (
        "policies " + ", ".join(group.policies)
    )


def deny_message(groups: Sequence[tuple[Finding, Group]], *, uid: str = "") -> str:
    """The ``status.message`` of a denial: one line per denying finding.

    Each line: ``container "app" image "python:3.8": policy P, rule R: <what,
    why and the fix>``; ``groups`` come from
    :func:`controller.findings.grouped_findings` (the caller groups once for the
    denial and the warnings), so the same finding from several policies is one
    line naming them all. At most
    :data:`MESSAGE_LINES_MAX` lines of :data:`MESSAGE_LINE_MAX` bytes; the rest
    is counted and left to the log.
    """
    raw: dict[str, None] = {}
    for f, g in groups:
        if g.action is Action.DENY:
            raw.setdefault(
                f'{f.where} image "{f.image.image}": {_policies(g)}, rule {g.rule.value}: {g.message}'
            )
    # Only the lines shown are cleaned and clipped: a pod of thousands of images is
    # counted, not written out, so the answer costs what ten lines cost.
    lines = dict.fromkeys(
        clip(line, MESSAGE_LINE_MAX, ascii_only=False) for line in list(raw)[:MESSAGE_LINES_MAX]
    )
    shown = list(lines)
    rest = len(raw) - min(len(raw), MESSAGE_LINES_MAX)
    if rest:
        where = f" (uid {uid})" if uid else ""
        shown.append(f"... and {rest} more in the baseguard log{where}")
    return "\n".join(shown)


# --------------------------------------------------------------------------- warnings

#: ``docker.io/library/python`` is written ``python`` in a warning (as ``docker pull`` takes it).
_DOCKER_HUB = re.compile(r"\bdocker\.io/(?:library/)?")
_ASIDE = re.compile(r" \(([^()]*)\)")


def _split_fix(message: str) -> tuple[str, str]:
    """``what (why; more); fix`` → (``what (why; more)``, ``fix``): the last ``; `` outside parentheses.

    Every rule's message ends with its fix after such a ``; ``; a message
    without one is all ``what``.
    """
    depth, cut = 0, -1
    for i, char in enumerate(message):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0 and message.startswith("; ", i):
            cut = i
    return (message[:cut], message[cut + 2 :]) if cut >= 0 else (message, "")


def _brief(match: re.Match[str]) -> str:
    """An aside cut to its first clause: ``(Python 3.8: end of life 2024-10-07; source: …)``."""
    return f" ({match.group(1).split('; ')[0]})"


def warning(where: str, group: Group, text: str, limit: int = WARNING_MAX) -> str:
    """One warning of at most ``limit`` bytes that keeps the rule, the image's base and the fix.

    Kubernetes asks for at most 120 characters per warning, and rule messages
    are longer: cutting the end cut off the fix, which is what the reader
    needs. So the message is shortened from the middle, in this order, until
    it fits: Docker Hub names written short; the policy names left to the log;
    asides ``(…)`` cut to their first clause, then dropped; then the ``what``
    part cut, never the fix. The whole text is in the decision log.
    """
    text = _DOCKER_HUB.sub("", text)
    what, fix = _split_fix(text)
    tail = f"; {fix}" if fix else ""
    named = f"{group.rule.value} ({group.policies[0]}"
    named += f" +{len(group.policies) - 1})" if len(group.policies) > 1 else ")"
    briefer = _ASIDE.sub(_brief, what)
    bare = _ASIDE.sub("", what)
    for label, body in (
        (named, what),
        (named, briefer),
        (group.rule.value, briefer),
        (group.rule.value, bare),
    ):
        line = clip(f"{label}, {where}: {body}{tail}", 10 * limit)
        if len(line) <= limit:
            return line
    head = clip(f"{group.rule.value}, {where}:", limit) + " "
    room = limit - len(head) - len(clip(tail, limit))
    if room >= 24:  # enough of the what to name the image; the fix whole
        return head + clip(bare, room) + clip(tail, limit)
    return clip(f"{head}{bare}{tail}", limit)


def warning_lines(
    groups: Sequence[tuple[Finding, Group]], *, extra: Sequence[str] = ()
) -> list[str]:
    """``warnings``: warn-level findings, then waived ones, then ``extra`` notes.

    ``groups`` as for :func:`deny_message`: the same finding from several
    policies is one warning, written by :func:`warning`.
    Each at most :data:`WARNING_MAX` bytes; together at most
    :data:`WARNINGS_TOTAL_MAX`, the last line saying how many were left out.
    """
    candidates: dict[str, None] = {}
    for f, g in groups:
        if g.action is Action.WARN and g.waived is None:
            candidates.setdefault(warning(f.where, g, g.message))
    for f, g in groups:
        if g.waived is not None:
            candidates.setdefault(warning(f.where, g, g.waived))
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

