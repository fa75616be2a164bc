"""Renderers for ``check`` and ``lineage``: a readable table, or the JSON of ``--format json`` (docs/cli.md).

Colour only on a terminal (and never with ``NO_COLOR``), so CI logs stay clean.
The table's lines are wrapped at a width (:func:`wrap_spans`; ``check`` passes the
terminal's, or ``--width``), continuation lines indented under their start; a
word is never broken, so an image reference stays whole and can be copied.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TextIO

from controller.assess import WorkloadResult
from controller.cli.unjudged import could_not_judge
from controller.findings import grouped
from controller.lineage.model import End, Lineage, PlatformLineage, Source
from controller.policy.facts import ImageFacts
from controller.policy.model import Action, RuleCode
from controller.policy.trustrules import signed_by
from controller.policy.verdict import ImageResult, Violation, summarize
from controller.roles import ImageRole

_COLOURS = {Action.DENY: "31", Action.WARN: "33", Action.AUDIT: "36", Action.ALLOW: "32"}


def _level_json(
    level_platform: str | None, ref: str, digest: str | None, source: str, verified: bool | None, note: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": ref, "digest": digest, "source": source, "verified": verified}
    if level_platform is not None:
        out["platform"] = level_platform
    if note:  # e.g. a pinned tag the identity index could not verify
        out["note"] = note
    return out


def lineage_json(facts: ImageFacts) -> list[dict[str, Any]]:
    """The chain as ``--format json`` lists it (docs/cli.md); one entry per level, per platform when known."""
    if facts.reference is None:
        return []
    levels = _lineage_json(facts)
    if facts.trust and facts.lineage is not None:
        signers = signed_by(facts.trust)
        for level, entry in zip(_levels(facts.lineage), levels, strict=False):
            found = _signers_of(signers, *level)
            if found:
                entry["signedBy"] = found
    return levels


def _levels(lineage: Lineage) -> list[tuple[str | None, tuple[str | None, ...]]]:
    """(repository, digests) of each level, in :func:`lineage_json`'s order."""
    out: list[tuple[str | None, tuple[str | None, ...]]] = []
    for platform in lineage.platforms:
        for depth, level in enumerate(platform.levels):
            ref = level.reference
            extra = (lineage.digest, lineage.reference.digest) if depth == 0 else (ref.digest if ref else None,)
            out.append((ref.name if ref else None, (level.digest, *extra)))
    return out


def _signers_of(
    signers: Mapping[tuple[str, str], list[str]], name: str | None, digests: Iterable[str | None]
) -> list[str]:
    found: list[str] = []
    for digest in digests:
        if name is not None and digest is not None:
            found += [s for s in signers.get((name, digest), []) if s not in found]
    return found


def _lineage_json(facts: ImageFacts) -> list[dict[str, Any]]:
    assert facts.reference is not None
    lineage = facts.lineage
    if lineage is None or not lineage.platforms:
        source = Source.DOCKERFILE if facts.role is not ImageRole.CONTAINER else Source.IMAGE
        digest = lineage.digest if lineage is not None else facts.reference.digest
        return [_level_json(None, facts.reference.normalized, digest, source.value, None)]
    out = []
    for platform in lineage.platforms:
        for level in platform.levels:
            out.append(
                _level_json(
                    platform.platform, level.name, level.digest, level.source.value, level.verified, level.note
                )
            )
    return out


def result_json(workload_result: WorkloadResult, result: ImageResult) -> dict[str, Any]:
    wl = workload_result.workload
    facts = result.facts
    violations = []
    for v in result.violations:
        item: dict[str, Any] = {
            "policy": v.policy,
            "rule": v.rule.value,
            "action": v.action.value,
            "message": v.message,
        }
        if v.waived:
            item["waived"] = v.waived
        if v.waived_by:  # which exception: "BaseImagePolicyException shop/x" or "exception #0"
            item["waivedBy"] = v.waived_by
        violations.append(item)
    out: dict[str, Any] = {
        "source": wl.source,
        "kind": wl.kind,
        "namespace": wl.namespace,
        "name": wl.name,
        "container": facts.container,
        "image": facts.image,
        "normalized": facts.reference.normalized if facts.reference else None,
        "verdict": result.verdict.value,
        "violations": violations,
        "lineage": lineage_json(facts),
    }
    signers = signed_by(facts.trust)
    if signers:  # who vouched for the image and its bases (spec.trust)
        out["signedBy"] = [
            {"image": name, "digest": digest, "signers": who} for (name, digest), who in signers.items()
        ]
    out["policies"] = list(result.policies)
    out["judged"] = not could_not_judge(result)
    if result.not_evaluated:
        out["notEvaluated"] = [r.value for r in result.not_evaluated]
    return out


def check_json(results: Sequence[WorkloadResult], *, offline: bool, skipped: Sequence[str]) -> dict[str, Any]:
    flat = [(w, r) for w in results for r in w.results]
    return {
        "results": [result_json(w, r) for w, r in flat],
        "summary": summarize(r for _, r in flat),
        "offline": offline,
        "skipped": list(skipped),
    }


class Painter:
    def __init__(self, stream: TextIO, *, colour: bool) -> None:
        self.stream = stream
        self.colour = colour

    def verdict(self, action: Action) -> str:
        text = action.value.upper().ljust(5)
        return f"\x1b[{_COLOURS[action]}m{text}\x1b[0m" if self.colour else text

    def dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.colour else text

    def verdict_style(self, action: Action) -> Style:
        """How :meth:`verdict` paints, for a :data:`Span` (painted after wrapping)."""
        return _escape(_COLOURS[action]) if self.colour else None

    def dim_style(self) -> Style:
        return _escape("2") if self.colour else None


#: How a piece of a line is painted: ``None`` plain, else a function adding the escapes.
Style = Callable[[str], str] | None
#: A piece of one output line and its style. Lines are wrapped on their plain text and
#: painted afterwards, so an escape sequence never counts as width or is cut in two.
Span = tuple[str, Style]

_WORD = re.compile(r"\S+")


def _escape(code: str) -> Callable[[str], str]:
    return lambda text: f"\x1b[{code}m{text}\x1b[0m"


def wrap_spans(spans: Sequence[Span], width: int | None, *, hang: int) -> list[str]:
    """One logical line (its indent included) as the physical lines to print, painted.

    With ``width`` (columns), words move to continuation lines that start with ``hang``
    spaces, so the reader sees where a finding goes on; words are never broken (an image
    reference longer than the line stays whole and runs past it). ``None``: one line.
    """
    text = "".join(t for t, _ in spans)
    cuts: list[tuple[int, int]] = []  # (start, end) of each physical line in text
    if width is None or len(text) <= width:
        cuts.append((0, len(text)))
    else:
        hang = min(hang, max(width // 3, 0))
        start, end, room = 0, None, width
        for word in _WORD.finditer(text):
            if end is not None and word.end() - start > room:
                cuts.append((start, end))
                start, room = word.start(), width - hang
            end = word.end()
        cuts.append((start, len(text) if end is None else end))
    out = []
    for i, (a, b) in enumerate(cuts):
        pieces, offset = [" " * hang] if i else [], 0
        for piece, style in spans:
            lo, hi = max(a, offset), min(b, offset + len(piece))
            if lo < hi:
                part = piece[lo - offset : hi - offset]
                pieces.append(style(part) if style else part)
            offset += len(piece)
        out.append("".join(pieces))
    return out


def _object_name(result: WorkloadResult) -> str:
    wl = result.workload
    if wl.kind == "Dockerfile":
        return f"{wl.source} (as in namespace {wl.namespace})" if wl.namespace else wl.source
    ns = f"{wl.namespace}/" if wl.namespace else ""
    return f"{wl.kind}/{ns}{wl.name}"


def _applied(wr: WorkloadResult) -> str:
    """Which policies judged this input: an ALLOW that no policy gave must not read as a pass."""
    names = list(dict.fromkeys(p for r in wr.results for p in r.policies))
    if names:
        return f"(policies: {', '.join(names)})"
    if wr.workload.kind == "Dockerfile" and wr.workload.namespace is None:
        return (
            "(no policy applies: a Dockerfile has no namespace, so only cluster-wide policies "
            "without match.namespaces or namespaceSelector judge it; --namespace NS judges it "
            "as in NS)"
        )
    return "(no policy applies: every policy's match/exclude leaves it out)"


def _grouped(violations: Sequence[Violation]) -> list[str]:
    """One line per (rule, message, waiver): the same finding from several policies is
    said once, naming them all, with the most severe action (:func:`findings.grouped`)."""
    lines = []
    for g in grouped(violations):
        tag = g.waived if g.waived else g.action.value
        lines.append(f"{g.rule.value} [{', '.join(g.policies)}] {tag}: {g.message}")
    return lines


def write_check_text(
    results: Sequence[WorkloadResult],
    out: TextIO,
    *,
    offline: bool,
    skipped: Sequence[str],
    colour: bool,
    failing: Collection[Action] | None = None,
    width: int | None = None,
) -> None:
    """The table of ``check`` (and ``audit``): each input, its images, their findings; a summary.

    ``failing`` (``--quiet``) shows only the images whose verdict is in it, and not the
    skipped inputs (the summary still counts them). An image whose findings are exactly
    those of one shown before (the same image in six Deployments) gets one line pointing
    there instead of repeating them: the first says how many share them. ``width``:
    lines longer than that many columns are wrapped (:func:`wrap_spans`); ``None``:
    never (a log a program reads, or a terminal the caller could not measure).
    """
    paint = Painter(out, colour=colour)
    dim = paint.dim_style()

    def line(*spans: Span, hang: int) -> None:
        for physical in wrap_spans(spans, width, hang=hang):
            out.write(physical + "\n")

    flat = [r for w in results for r in w.results]
    shown_results = [
        (wr, [r for r in wr.results if failing is None or r.verdict in failing]) for wr in results
    ]
    keys = [tuple(_grouped(r.violations)) for wr, rs in shown_results for r in rs]
    repeats = Counter(k for k in keys if k)
    first: dict[tuple[str, ...], str] = {}
    for wr, images in shown_results:
        if not images:
            continue
        verdict = (action_text(wr.verdict), paint.verdict_style(wr.verdict))
        line(verdict, (f" {_object_name(wr)}  ", None), (_applied(wr), dim), hang=4)
        for r in images:
            who = r.facts.container or "-"
            shown = r.facts.reference.normalized if r.facts.reference else r.facts.image
            mark = " (not judged: see lookup-failed)" if could_not_judge(r) else ""
            image_verdict = (action_text(r.verdict), paint.verdict_style(r.verdict))
            line(("  ", None), image_verdict, (f" {who}: {shown}{mark}", None), hang=4)
            for (name, digest), who_signed in signed_by(r.facts.trust).items():
                line((f"      signed: {name}@{_short(digest)} by {', '.join(who_signed)}", dim), hang=8)
            lines = tuple(_grouped(r.violations))
            if lines and lines in first:
                line((f"      the same {_findings(len(lines))} as {first[lines]}", dim), hang=8)
                continue
            for finding in lines:
                line((f"      {finding}", None), hang=8)
            if lines and repeats[lines] > 1:
                first[lines] = f"{_object_name(wr)} {who}"
                more = repeats[lines] - 1
                line((f"      (and for {more} more image(s) below: said once)", dim), hang=8)
    counts = summarize(flat)
    summary = (
        f"{len(flat)} image(s): {counts['deny']} deny, {counts['warn']} warn, "
        f"{counts['audit']} audit, {counts['allow']} allow"
    )
    unjudged = sum(1 for r in flat if could_not_judge(r))
    if unjudged:
        summary += f" ({unjudged} of them not judged)"
    if skipped:
        summary += f"; {len(skipped)} skipped"
    out.write("\n")
    line((summary, None), hang=2)
    if skipped and failing is None:
        out.write("skipped (not judged):\n")
        for item in skipped:
            line((f"  {item}", None), hang=4)
    for note in not_evaluated_notes(flat, offline=offline):
        line((note, dim), hang=2)


def action_text(action: Action) -> str:
    """A verdict as the table prints it: upper case, in a column of five."""
    return action.value.upper().ljust(5)


def _findings(n: int) -> str:
    return "finding" if n == 1 else f"{n} findings"


#: Rules that judge the image's own name without the registry, and its ancestors with it.
_NAME_AND_ANCESTORS = (RuleCode.DEPRECATED_BASE, RuleCode.BASE_NOT_ALLOWED)


_OFFLINE = "--offline: no registry lookups"
_FAILED = "a registry lookup failed, see lookup-failed"
_UNKNOWN = "no base could be established, so unknown-base decides instead"


def why_not_evaluated(result: ImageResult, *, offline: bool) -> str:
    """Why ``result`` has rules not evaluated, in the words the footer uses.

    Offline nothing was asked; a lineage that failed (whole, or on some platform) is a
    failed lookup; otherwise every lookup answered and the allowlist could not be decided
    because no base was established: that is ``unknown-base``'s to judge, not a registry
    problem, and saying "a lookup failed" would send the reader to the wrong place.
    """
    lineage = result.facts.lineage
    if offline or lineage is None:
        return _OFFLINE
    if lineage.failure is not None or any(p.end is End.LOOKUP_FAILED for p in lineage.platforms):
        return _FAILED
    return _UNKNOWN


def not_evaluated_notes(results: Iterable[ImageResult], *, offline: bool) -> list[str]:
    """One line per reason, naming the rules each left open (see :func:`not_evaluated_note`)."""
    by_reason: dict[str, set[RuleCode]] = {}
    for r in results:
        if r.not_evaluated:
            by_reason.setdefault(why_not_evaluated(r, offline=offline), set()).update(r.not_evaluated)
    return [
        not_evaluated_note(codes, why=why)
        for why in (_OFFLINE, _FAILED, _UNKNOWN)
        if (codes := by_reason.get(why))
    ]


def not_evaluated_note(codes: set[RuleCode], *, why: str) -> str:
    """Precisely what was not judged: the ancestors for name-level rules, all of layer-level ones.

    ``deprecated-base`` can be found on an image's own name offline, so listing
    it as "not evaluated" beside a ``deprecated-base`` finding would read as a
    contradiction; what was left out is the image's bases. With every lookup
    answered, the only open rule is ``base-not-allowed`` of an image with no
    established base, which ``unknown-base`` judges: it is named, nothing more.
    """
    if why == _UNKNOWN:
        return f"not evaluated ({why}): " + ", ".join(sorted(c.value for c in codes))
    partial = [c.value for c in _NAME_AND_ANCESTORS if c in codes]
    whole = sorted(c.value for c in codes if c not in _NAME_AND_ANCESTORS)
    parts = []
    if partial:
        parts.append(
            f"{' and '.join(partial)} judged the image names only, not the bases they are built on (ancestors)"
        )
    if whole:
        parts.append(f"{', '.join(whole)} not evaluated (they need the registry)")
    return f"not evaluated ({why}): " + "; ".join(parts)


def lineage_dict(
    lineage: Lineage, signers: Mapping[tuple[str, str], list[str]] | None = None
) -> dict[str, Any]:
    """``baseguard lineage --format json``; with ``signers`` (``-p``), each level's ``signedBy``."""
    out = _lineage_dict(lineage)
    if signers is not None:
        flat = [lv for p in out["platforms"] for lv in p["levels"]]
        for level, entry in zip(_levels(lineage), flat, strict=True):
            entry["signedBy"] = _signers_of(signers, *level)
    return out


def _lineage_dict(lineage: Lineage) -> dict[str, Any]:
    return {
        "reference": lineage.reference.normalized,
        "digest": lineage.digest,
        "failure": lineage.failure,
        "platforms": [
            {
                "platform": p.platform,
                "end": p.end.value,
                "failure": p.failure,
                # Each level says its platform too: a reader that flattens the levels
                # (jq '.platforms[].levels[]') must still tell arm64's base from amd64's.
                "levels": [
                    {
                        "platform": p.platform,
                        "reference": lv.name,
                        "digest": lv.digest,
                        "source": lv.source.value,
                        "verified": lv.verified,
                        "created": lv.created.isoformat() if lv.created else None,
                        "note": lv.note or None,
                        "movedTo": lv.moved_to,
                    }
                    for lv in p.levels
                ],
            }
            for p in lineage.platforms
        ],
    }


def _verified_mark(verified: bool | None) -> str:
    return {True: "verified", False: "CONTRADICTED", None: "unverified"}[verified]


def write_lineage_text(
    lineage: Lineage, out: TextIO, signers: Mapping[tuple[str, str], list[str]] | None = None
) -> None:
    """The tree; with ``signers`` (``-p``), each level says who signed it, or ``unsigned``."""
    out.write(f"{lineage.reference.normalized}")
    out.write(f"  ({lineage.digest})\n" if lineage.digest else "\n")
    if lineage.failure:
        out.write(f"  lookup failed: {lineage.failure}\n")
        return
    marks: list[str] | None = None
    if signers is not None:
        marks = [
            ("signed by " + ", ".join(found)) if (found := _signers_of(signers, *level)) else "unsigned"
            for level in _levels(lineage)
        ]
    for platform in lineage.platforms:
        own = None
        if marks is not None:
            own, marks = marks[: len(platform.levels)], marks[len(platform.levels) :]
        _write_platform(platform, out, shown=lineage.digest, signed=own)


def _short(digest: str) -> str:
    """``sha256:0123456789ab…``: enough to tell digests apart; ``--format json`` has them whole."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}…"


def _write_platform(
    platform: PlatformLineage, out: TextIO, *, shown: str | None = None, signed: list[str] | None = None
) -> None:
    """One platform's chain; each digest said once (the header's full one is not repeated)."""
    out.write(f"  {platform.platform}\n")
    for depth, level in enumerate(platform.levels):
        indent = "    " + "   " * depth
        branch = "" if depth == 0 else "└─ "
        detail = level.source.value if depth == 0 else f"{level.source.value}, {_verified_mark(level.verified)}"
        if signed is not None and depth < len(signed):
            detail += f", {signed[depth]}"
        name = level.name
        if level.digest and name.endswith(f"@{level.digest}"):
            name = name[: -len(level.digest) - 1]
        out.write(f"{indent}{branch}{name}  [{detail}]")
        if level.digest and level.digest != shown:
            out.write(f" {_short(level.digest)}")
        out.write("\n")
        if level.note:
            out.write(f"{indent}   note: {level.note}\n")
        if level.moved_to:
            out.write(f"{indent}   stale: the tag now points to {level.moved_to}\n")
    end_note = {
        "scratch": "built from scratch",
        "unclaimed": "no further base claimed or detected",
        "known-base": "a known base (catalog)",
        "max-depth": "maxDepth reached",
        "lookup-failed": f"lookup failed: {platform.failure}",
    }[platform.end.value]
    out.write(f"    ({end_note})\n")
