"""What an AdmissionReview answer says: the denial message, warnings, audit annotations.

PURE. The limits come from what the apiserver does with each part (see
:mod:`controller.webhook.review`): warnings travel as HTTP ``Warning`` headers
(ASCII, at most 120 characters each asked for, the lot truncated past 4 KiB),
audit-annotation keys must be qualified-name *name parts*.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

from controller import reference
from controller.errors import InvalidReference
from controller.findings import Finding, Group
from controller.policy.model import Action, RuleCode
from controller.workloads import ContainerImage

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
#: The same as pairs: a few ``in`` scans and a replace cost a tenth of ``str.translate``.
_ASCII_PAIRS = tuple((chr(code), spelled) for code, spelled in _ASCII.items())
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: A lone surrogate (``"\\ud800"`` in the JSON of a review) is no character: UTF-8 cannot
#: carry it, so it is shown as its escape.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _one_line(text: str, *, ascii_only: bool = True) -> str:
    """``text`` on one line: white space runs as one space; see :func:`clip` for the characters.

    Nearly every text is already printable on one line (rule messages, container
    names): that is checked by C-speed string scans, and the regular expressions
    (some microseconds on a non-ASCII line) are left for the rest. A printable text
    has no control character, no white space but the space and no lone surrogate.
    """
    if text.isprintable():
        line = (_SPACES.sub(" ", text) if "  " in text else text).strip()
        if line.isascii() or not ascii_only:
            return line
    else:
        line = _SPACES.sub(" ", text).strip()
        if not ascii_only:
            return _SURROGATE.sub(_escape, _CONTROL.sub(" ", line))
    for char, spelled in _ASCII_PAIRS:
        if char in line:
            line = line.replace(char, spelled)
    return line if line.isascii() and line.isprintable() else _NOT_PRINTABLE.sub("?", line)


def _cut(line: str, limit: int, lookback: int = 20) -> str:
    """A one-line ``line`` in at most ``limit`` bytes, ``...`` where cut, ending on a word
    when one ends within ``lookback`` characters of the cut."""
    if len(line) <= limit and (line.isascii() or len(line.encode()) <= limit):
        return line
    room = max(limit - 3, 0)
    # by bytes, then back to whole characters (a character cut in two is dropped)
    cut = line[:room] if line.isascii() else line.encode()[:room].decode(errors="ignore")
    space = cut.rfind(" ", len(cut) - lookback)
    if space > 0:  # end on a word when one ends near the limit
        cut = cut[:space]
    return cut.rstrip() + "..."


def clip(text: str, limit: int, *, ascii_only: bool = True) -> str:
    """``text`` as one line of at most ``limit`` bytes, ``...`` where cut, ending on a word.

    ``ascii_only`` (for warnings, which travel as HTTP headers): common
    typography is spelled in ASCII (``→`` as ``->``), anything else outside
    printable ASCII becomes ``?``. Otherwise only control characters go, and a
    lone surrogate is written as its ``\\uXXXX`` escape.
    """
    return _cut(_one_line(text, ascii_only=ascii_only), limit)


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

#: The ``what`` of a warning is never cut shorter than this: fewer characters name nothing.
WHAT_MIN = 24
#: A container name is never cut shorter than this (its start and its end, ``...`` between).
NAME_MIN = 9
#: ... and not shorter than this to keep the whole of the ``what`` (the base it names).
NAME_KEPT = 12

#: ``docker.io/library/python`` is written ``python`` in a warning (as ``docker pull`` takes it).
_DOCKER_HUB = re.compile(r"\bdocker\.io/(?!library/[^a-z0-9])(?:library/)?(?=[a-z0-9])")  # not a glob's "*"
_ASIDE = re.compile(r" \(([^()]*)\)")
_FIX_MARKS = re.compile(r"[()]|; ")
#: ``…, e.g. python@sha256:<digest>`` closing a fix: an example of it, not the fix.
_EXAMPLE = re.compile(r",? e\.g\. [^;()]*$")
#: A clause that follows the fix and belongs to it (``use X; enforced from 2025-09-01``).
_FIX_SUFFIX = "enforced from "
_WHERE = re.compile(r'^(?P<noun>[^"]*) "(?P<name>.*)"$')


def _split_fix(message: str) -> tuple[str, str]:
    """``what (why; more); fix`` → (``what (why; more)``, ``fix``): the last ``; `` outside parentheses.

    Every rule's message ends with its fix after such a ``; `` (a deprecation's
    ``; enforced from <date>`` stays with the fix it dates); a message without
    one is all ``what``.
    """
    depth, cuts = 0, []
    for mark in _FIX_MARKS.finditer(message):
        char = mark.group()
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            cuts.append(mark.start())
    if not cuts:
        return message, ""
    cut = cuts[-1]
    if len(cuts) > 1 and message.startswith(_FIX_SUFFIX, cut + 2):
        cut = cuts[-2]
    return message[:cut], message[cut + 2 :]


def _brief(match: re.Match[str]) -> str:
    """An aside cut to its first clause, without the word the rule code already says:
    ``(deprecated: Python 3.8: end of life 2024-10-07; source: …)`` → ``(Python 3.8: end of life 2024-10-07)``."""
    first = match.group(1).split("; ")[0]
    return f" ({first.removeprefix('deprecated: ')})"


def _without_subject(text: str, image: str) -> str:
    """``text`` without naming the image the container name already points at.

    ``image nginx:latest uses the tag …`` → ``uses the tag …``; in mid-sentence
    it becomes ``the image`` (``the lineage of the image could not …``). Only
    the subject as the rules write it (the normalized name, Docker Hub short)
    is taken out, so a base that happens to share words stays.
    """
    said = _said_subject(text, _DOCKER_HUB.sub("", image))
    if said is None:  # written otherwise than normalized (no tag, an upper-case host)
        try:
            said = _said_subject(text, _DOCKER_HUB.sub("", reference.parse(image).normalized))
        except InvalidReference:
            return text
    return text if said is None else said


def _said_subject(text: str, shown: str) -> str | None:
    """``text`` with ``image <shown>`` taken out as :func:`_without_subject` says; ``None``
    when ``text`` does not name it."""
    # the name ends where a reference cannot go on (``image a:1`` is not in ``image a:1.2``)
    subject = re.compile(rf"(^| )(base image|image) {re.escape(shown)}(?![\w.@/-]|:\w)(: )?")

    def said(match: re.Match[str]) -> str:
        return "" if match.start() == 0 else f" the {match.group(2)}{match.group(3) or ''}"

    out, found = subject.subn(said, text)
    return out.lstrip() if found else None


def _what_forms(what: str, image: str) -> list[str]:
    """The ``what`` from whole to shortest whole: asides to their first clause (the reason
    stays), the image's own name dropped, the asides dropped, then a leading clause that
    restates the rule (``the lineage of the image could not be looked up: <why>``)."""
    briefer = _ASIDE.sub(_brief, what)
    subjectless = _without_subject(briefer, image) if image else briefer
    bare = _ASIDE.sub("", subjectless)
    lead, sep, why = bare.partition(": ")
    restated = sep and len(why) >= WHAT_MIN and "(" not in lead  # not "…pinning.require: Version"
    return [what, briefer, subjectless, bare, *((why,) if restated else ())]


def _cut_aside(text: str, room: int) -> str | None:
    """``text`` in ``room`` characters by cutting its first aside, the rest whole (the base
    and the start of the reason stay); ``None`` when too little of the aside would be left."""
    found = _ASIDE.search(text)
    if found is None:
        return None
    outside = len(text) - len(found.group(0))
    inner = room - outside - 3  # " (" and ")"
    if inner < 12:
        return None
    return f"{text[: found.start()]} ({_cut(found.group(1), inner)}){text[found.end() :]}"


def _fit_what(whats: Sequence[str], room: int) -> str | None:
    """The longest form of the what that fits ``room``, else the shortest cut to it (never
    below :data:`WHAT_MIN`); ``None`` when not even that fits."""
    for body in whats[:3]:
        if len(body) <= room:
            return body
    cut = _cut_aside(whats[2], room)
    if cut is not None and len(cut) <= room:
        return cut
    for body in whats[3:]:
        if len(body) <= room:
            return body
    # in so little room, a word end far back would leave next to nothing
    return _cut(whats[-1], room, lookback=room // 4) if room >= WHAT_MIN else None


def _fix_forms(fixes: Sequence[str]) -> list[list[str]]:
    """How the fix may be said, most whole first, in two levels.

    The fix as written: the fixes (alternatives from several policies) joined,
    then the first alone, then without its examples and explanations (``(…)``,
    ``, e.g. …``, a leading ``…: ``). Only when none of these fits: the first of
    the ways it offers (``write the tag the digest has, or pin …``).
    """
    forms = [_join_fixes(fixes), fixes[0]]
    plain = _ASIDE.sub("", fixes[0])
    forms += [plain, _EXAMPLE.sub("", plain)]
    _, sep, rest = forms[-1].partition(": ")
    if sep and rest:
        forms.append(rest)
    first, sep, _ = forms[-1].partition(", or ")
    return [[f for f in dict.fromkeys(forms) if f], [first] if sep and first else []]


def _join_fixes(fixes: Sequence[str]) -> str:
    """``use A`` and ``use B`` → ``use A or B``; other alternatives joined by ``, or``."""
    if len(fixes) == 1:
        return fixes[0]
    if all(f.startswith("use ") and ";" not in f for f in fixes):
        return "use " + " or ".join(f[4:] for f in fixes)
    return ", or ".join(fixes)


def _short_where(where: str, length: int, floor: int = NAME_MIN) -> str | None:
    """``container "a-very-long-name"`` in at most ``length`` characters, the name cut in its
    middle and never below ``floor``; ``None`` when it cannot be that short."""
    if len(where) <= length:
        return where
    found = _WHERE.match(where)
    if found is None:
        return None
    noun, name = found["noun"], found["name"]
    keep = min(length - len(noun) - 3, len(name))  # ' "' and '"'
    if keep < floor:
        return None
    left = (keep - 2) // 2
    right = keep - 3 - left
    return f'{noun} "{name[:left]}...{name[len(name) - right :]}"'


def _shortest_where(where: str) -> str:
    found = _WHERE.match(where)
    if found is None:
        return where
    return _short_where(where, len(found["noun"]) + 3 + NAME_MIN) or where


def _compose(
    rule: str, policies: Sequence[str], where: str, what: str, fixes: Sequence[str], image: str, limit: int
) -> str:
    """One warning of at most ``limit`` characters: ``rule, where: what; fix``, the fix whole."""
    named = f"{rule} ({policies[0]}" + (f" +{len(policies) - 1})" if len(policies) > 1 else ")")
    fix = _join_fixes(fixes) if fixes else ""
    line = f"{named}, {where}: {what}; {fix}" if fix else f"{named}, {where}: {what}"
    if len(line) <= limit:  # the common case: nothing to shorten, nothing parsed
        return line
    whats = _what_forms(what, image)
    if not fix:
        body = _fit_what(whats, limit - len(rule) - 4 - len(where))
        return _cut(f"{rule}, {where}: {body or whats[-1]}", limit)
    line = f"{named}, {where}: {whats[1]}; {fix}"
    if len(line) <= limit:
        return line
    # For each level of the fix: the container name whole while it leaves room, then cut in
    # its middle (so that the what keeps its base, else WHAT_MIN of it); for each, the fix
    # as whole as it can be; for each, the what as whole as fits; then no what at all.
    for forms in _fix_forms(fixes):
        for targets in ((0,), (len(whats[3]), WHAT_MIN)):
            for fix in forms:
                rest = len(rule) + 6 + len(fix)  # "rule, " + ": " + "; " + fix
                for target in targets:
                    # the what whole only while the name keeps NAME_KEPT; WHAT_MIN down to NAME_MIN
                    floor = NAME_KEPT if target > WHAT_MIN else NAME_MIN
                    short = _short_where(where, limit - rest - target, floor) if target else where
                    body = None if short is None else _fit_what(whats, limit - rest - len(short))
                    if short is not None and body is not None:
                        return f"{rule}, {short}: {body}; {fix}"
        for fix in forms:  # no room for the what: the rule, the container and the fix
            short = _short_where(where, limit - len(rule) - 4 - len(fix))
            if short is not None:
                return f"{rule}, {short}: {fix}"
    # A fix longer than a warning holds (a replacement named in some 100 characters): only
    # then is its end cut; the decision log has it whole.
    return _cut(f"{rule}, {_shortest_where(where)}: {_fix_forms(fixes)[0][-1]}", limit)


def warning(
    where: str, group: Group, text: str, limit: int = WARNING_MAX, *, image: str = "",
    fixes: Sequence[str] = (),
) -> str:  # fmt: skip
    """One warning of at most ``limit`` bytes that keeps the rule, the base, the reason and the fix.

    Kubernetes asks for at most 120 characters per warning, and rule messages
    are longer: cutting the end cut off the fix, which is what the reader
    needs. So the message is shortened, in this order, until it fits: Docker
    Hub names written short; the policy names left to the log; asides ``(…)``
    cut to their first clause (the reason); the ``image`` named again although
    the container name already points at it; the asides dropped; the ``what``
    cut from its end; the container name cut in its middle; the ``what``
    dropped. The fix stays whole; only its examples and explanations go (an
    aside, ``e.g. …``), and its end is cut only when the fix alone is longer
    than a warning. ``fixes`` are other policies' fixes for the same finding,
    offered as alternatives. The whole text is in the decision log.
    """
    what, fix, _ = _message_parts(text)
    alternatives = tuple(dict.fromkeys([fix, *fixes])) if fix else ()
    return _composed(
        group.rule.value, tuple(group.policies), _one_line(where), what, alternatives, image, limit
    )


#: Entries of each of the two caches below. Both are keyed by the whole of what a warning is
#: written from (a rule message; the rule, policies, container, message parts, fixes, image
#: and limit) and hold what those words give, the same for any review that has them: a
#: review can evict another's entry (LRU), which costs that one a rewrite, never its words.
#: Bounded in entries; each key is a few rule messages long (a reference is at most 4 KiB).
WORDS_CACHED = 2048


def words_cached() -> dict[str, functools._CacheInfo]:
    """How the two warning caches stand (hits, misses, entries): for tests and benches."""
    return {"messages": _message_parts.cache_info(), "warnings": _composed.cache_info()}


def forget_words() -> None:
    """Empty both warning caches (a bench timing the first writing of a warning)."""
    _message_parts.cache_clear()
    _composed.cache_clear()


@functools.lru_cache(maxsize=WORDS_CACHED)
def _message_parts(message: str) -> tuple[str, str, str]:
    """A rule message as warnings read it: (what, fix, what without asides), Docker Hub short.

    Remembered: the same pod template reviewed again (each pod of a ReplicaSet, an
    apply retried, a dry run) has the same messages, and splitting them was a good part
    of an answer's time on a warm cache (bench/review_parse.py).
    """
    what, fix = _split_fix(_DOCKER_HUB.sub("", _one_line(message)))
    return what, fix, _ASIDE.sub("", what)


@functools.lru_cache(maxsize=WORDS_CACHED)
def _composed(
    rule: str, policies: tuple[str, ...], where: str, what: str, fixes: tuple[str, ...], image: str,
    limit: int,
) -> str:  # fmt: skip
    """:func:`_compose`, remembered: shortening one warning costs some 40 us of regular
    expressions and forms tried; the same warning written again costs a lookup."""
    return _compose(rule, policies, where, what, fixes, image, limit)


def warning_lines(
    groups: Sequence[tuple[Finding, Group]], *, extra: Sequence[str] = ()
) -> list[str]:
    """``warnings``: warn-level findings, then waived ones, then ``extra`` notes.

    ``groups`` as for :func:`deny_message`: the same finding from several
    policies is one warning, written by :func:`warning`; so is the same finding
    with different fixes (two policies naming different replacements for one
    deprecated base): one warning offering both.
    Each at most :data:`WARNING_MAX` bytes; together at most
    :data:`WARNINGS_TOTAL_MAX`, the last line saying how many were left out.
    """
    merged: dict[tuple[ContainerImage, RuleCode, str], tuple[Finding, str, list[str], list[str]]] = {}
    for f, g in groups:
        if g.action is Action.WARN and g.waived is None:
            what, fix, bare = _message_parts(g.message)
            key = (f.image, g.rule, bare)
            _, _, fixes, policies = merged.setdefault(key, (f, what, [], []))
            fixes.extend(x for x in (fix,) if x and x not in fixes)
            policies.extend(p for p in g.policies if p not in policies)
    candidates: dict[str, None] = {}
    for (_, rule, _), (f, what, fixes, policies) in merged.items():
        line = _composed(
            rule.value, tuple(policies), _one_line(f.where), what, tuple(fixes), f.image.image,
            WARNING_MAX,
        )  # fmt: skip
        candidates.setdefault(line)
    for f, g in groups:
        if g.waived is not None:
            candidates.setdefault(warning(f.where, g, g.waived, image=f.image.image))
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

