"""The leaves of a policy document, read one field at a time, with their field paths.

A :class:`FieldReader` reads the values every section is made of — enums,
globs, dates, durations, references, digests, platforms, label selectors — the
same way wherever they are written (a policy's sections in
:mod:`controller.policy.compile`, a ``BaseImagePolicyException`` in
:mod:`controller.policy.exceptions`), and collects what is wrong with each as a
:class:`~controller.errors.PolicyError` naming its path, instead of raising at
the first. It applies no defaults of its own beyond the one a caller passes.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any, TypeVar

from controller import digests, globs, reference
from controller.errors import InvalidReference, PolicyError
from controller.globs import GlobSet
from controller.policy.model import MAX_PATTERNS_PER_POLICY, LabelRequirement, LabelSelector
from controller.policy.schema import DNS_SUBDOMAIN, field_path, glob_problem
from controller.reference import Reference

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DURATION = re.compile(r"^([0-9]+)([hdw])$")
_DURATION_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
#: The longest duration a policy may name, per unit (100 years): past it the
#: arithmetic on dates overflows (``now - 900000000d``), and no base is that old.
MAX_DURATION_DAYS = 36525
MAX_DURATION = {"h": MAX_DURATION_DAYS * 24, "d": MAX_DURATION_DAYS, "w": MAX_DURATION_DAYS // 7}
#: The dates a policy may name (inclusive): anything outside is a typo, and a
#: date near the calendar's end overflows as soon as a day is added to it.
MIN_DATE = dt.date(1970, 1, 1)
MAX_DATE = dt.date(2999, 12, 31)
_PLATFORM_PART = re.compile(r"^[a-z0-9._\-]+$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

E = TypeVar("E", bound=StrEnum)


def as_mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one (the schema has reported it)."""
    return value if isinstance(value, dict) else {}


def patterns_refusal(count: int) -> str:
    """Why a policy of ``count`` patterns is refused (said at the first pattern past the cap)."""
    return (
        f"the policy holds {count} patterns (globs, digests and catalog entries together), "
        f"more than the {MAX_PATTERNS_PER_POLICY} one policy may hold: every image is matched "
        "against them; use wider globs (docker.io/acme/*) or split the policy"
    )


def _host_like(component: str) -> bool:
    """The distribution grammar's test for "this first component is a registry host"."""
    return "." in component or ":" in component or component == "localhost"


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def _normalized_suggestion(pattern: str, *, image: bool = False) -> str | None:
    """How ``pattern`` would have to be written to match normalized names, if it does not."""
    head, slash, _ = pattern.partition("/")
    if _wild(head) or (slash and _host_like(head)):
        return None
    if not slash and image:
        # ``python:3.12`` is an image, never a registry: ask the reference grammar.
        try:
            return reference.parse(pattern).normalized
        except InvalidReference:
            return f"docker.io/library/{pattern}"
    if not slash and _host_like(head):
        return f"{pattern}/*"
    return f"docker.io/{pattern}" if slash else f"docker.io/library/{pattern}"


def _name_problem(pattern: str, *, repository: bool, tags_field: bool = False) -> str | None:
    """Why a glob can never match a *normalized* name, if it cannot.

    Normalized names always start with a registry host (``docker.io/library/python``),
    so ``python`` or ``library/*`` would silently match nothing; a repository
    pattern with a tag (``…/python:3.12``) neither.
    """
    if tags_field and pattern == "scratch":
        return None  # a base entry may name scratch: static images are built from nothing
    last = pattern.rsplit("/", 1)[-1]
    tagged = ":" in last and ("/" in pattern or not _host_like(last.split(":", 1)[0]))
    if repository and tagged:
        name = pattern[: len(pattern) - len(last)] + last.split(":", 1)[0]
        name = _normalized_suggestion(name) or name
        where = " and put the tag in 'tags'" if tags_field else ""
        return f"{pattern!r} has a tag, but this is a repository pattern: write {name!r}{where}"
    suggestion = _normalized_suggestion(pattern, image=not repository)
    if suggestion is None:
        return None
    if suggestion.endswith("/*") and suggestion[:-2] == pattern:
        return f"{pattern!r} names a registry, not a repository: write {suggestion!r}"
    return (
        f"{pattern!r} never matches: names are normalized with their registry, write {suggestion!r}"
    )


def _label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f"invalid label key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"invalid label key {key!r}: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _label_value_problem(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        return (
            f"invalid label value {value!r}: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


class FieldReader:
    """Reads leaves of one document and collects their errors (see the module's docstring).

    Written defensively: a value of the wrong type has already been reported by
    the schema, so here it falls back to the default.
    """

    def __init__(self) -> None:
        self.errors: list[PolicyError] = []
        self.patterns: list[str] = []  # the path of every pattern kept, in compile order

    def fail(self, path: str, reason: str) -> None:
        self.errors.append(PolicyError(path, reason))

    # --- leaves ---------------------------------------------------------------------

    def enum(self, value: Any, cls: type[E], path: str, default: E) -> E:
        if value is None:
            return default
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            self.fail(path, f"unsupported value {value!r}: must be one of {allowed}")
            return default

    def glob(
        self,
        pattern: str,
        path: str,
        alphabet: re.Pattern[str],
        what: str,
        *,
        names: bool = False,
        repository: bool = False,
        tags_field: bool = False,
    ) -> str | None:
        """One glob, or ``None`` after reporting why it is wrong."""
        if not pattern:
            self.fail(path, "must not be empty")
            return None
        problem = glob_problem(pattern, alphabet, what) or (
            _name_problem(pattern, repository=repository, tags_field=tags_field) if names else None
        )
        if problem:
            self.fail(path, problem)
            return None
        self.patterns.append(path)
        return pattern

    def globs(
        self,
        value: Any,
        path: str,
        alphabet: re.Pattern[str],
        what: str,
        *,
        names: bool = False,
        repository: bool = False,
    ) -> GlobSet | None:
        """A list of globs; ``None`` when absent or empty (not constrained)."""
        if not isinstance(value, list) or not value:
            return None
        ok = [
            self.glob(p, f"{path}[{i}]", alphabet, what, names=names, repository=repository)
            for i, p in enumerate(value)
            if isinstance(p, str)
        ]
        return GlobSet.of(p for p in ok if p is not None).prepared()

    def date(self, value: Any, path: str) -> dt.date | None:
        if not isinstance(value, str):
            return None
        if not _DATE.match(value):
            self.fail(path, f"{value!r} is not a date: expected YYYY-MM-DD")
            return None
        try:
            day = dt.date.fromisoformat(value)
        except ValueError as exc:
            self.fail(path, f"{value!r} is not a calendar date: {exc}")
            return None
        if not MIN_DATE <= day <= MAX_DATE:
            self.fail(
                path,
                f"{value!r} is out of range: a date must be between {MIN_DATE.isoformat()} "
                f"and {MAX_DATE.isoformat()}",
            )
            return None
        return day

    def duration(self, value: Any, path: str) -> dt.timedelta | None:
        if not isinstance(value, str):
            return None
        found = _DURATION.match(value)
        if not found:
            self.fail(
                path,
                f"{value!r} is not a duration: expected a number and a unit h, d or w (e.g. 180d)",
            )
            return None
        amount, unit = int(found.group(1)), found.group(2)
        if amount == 0:
            self.fail(path, f"{value!r} must be longer than zero")
            return None
        if amount > MAX_DURATION[unit]:  # checked before timedelta(), which would overflow
            self.fail(
                path,
                f"{value!r} is longer than 100 years: at most {MAX_DURATION['d']}d, "
                f"{MAX_DURATION['h']}h or {MAX_DURATION['w']}w",
            )
            return None
        return dt.timedelta(**{_DURATION_UNITS[unit]: amount})

    def reference(self, value: Any, path: str) -> Reference | None:
        if not isinstance(value, str):
            return None
        try:
            return reference.parse(value)
        except InvalidReference as exc:
            self.fail(path, exc.message)
            return None

    def digests(self, value: Any, path: str) -> frozenset[str] | None:
        if not isinstance(value, list):
            return None
        ok: set[str] = set()
        for index, digest in enumerate(value):
            if not isinstance(digest, str):
                continue
            problem = digests.problem(digest)
            if problem is None:
                ok.add(digest)
                self.patterns.append(f"{path}[{index}]")
            else:
                self.fail(f"{path}[{index}]", f"{digest!r} is not a digest: {problem}")
        return frozenset(ok) if value else None

    def platforms(self, value: Any, path: str) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            return None
        ok: list[str] = []
        for index, text in enumerate(value):
            if not isinstance(text, str):
                continue
            parts = text.split("/")
            if len(parts) in (2, 3) and all(_PLATFORM_PART.match(p) for p in parts):
                ok.append(text)
            else:
                self.fail(
                    f"{path}[{index}]",
                    f"{text!r} is not a platform: expected os/arch or os/arch/variant in lower case "
                    "(e.g. linux/arm64)",
                )
        return tuple(ok)

    def selector(self, value: Any, path: str) -> LabelSelector | None:
        if not isinstance(value, dict):
            return None
        labels: list[tuple[str, str]] = []
        for key, val in as_mapping(value.get("matchLabels")).items():
            here = f"{path}.{field_path(('matchLabels', key))}"
            problem = _label_key_problem(key) or (
                _label_value_problem(val) if isinstance(val, str) else None
            )
            if problem:
                self.fail(here, problem)
            elif isinstance(val, str):
                labels.append((key, val))
        requirements: list[LabelRequirement] = []
        expressions = value.get("matchExpressions")
        for index, expr in enumerate(expressions if isinstance(expressions, list) else []):
            here = f"{path}.matchExpressions[{index}]"
            if not isinstance(expr, dict):
                continue
            expr_key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values")
            if not isinstance(expr_key, str) or not isinstance(operator, str):
                continue
            problem = _label_key_problem(expr_key)
            if problem:
                self.fail(f"{here}.key", problem)
                continue
            given = [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
            if operator in ("In", "NotIn") and not given:
                self.fail(f"{here}.values", f"must not be empty when operator is {operator}")
                continue
            if operator in ("Exists", "DoesNotExist") and given:
                self.fail(f"{here}.values", f"must be empty when operator is {operator}")
                continue
            requirements.append(LabelRequirement(expr_key, operator, frozenset(given)))
        return LabelSelector(tuple(sorted(labels)), tuple(requirements))



def image_globs(value: Any, path: str) -> tuple[GlobSet | None, list[PolicyError]]:
    """Image globs read exactly as ``exclude.images``/``exceptions[].images`` are, and their errors.

    For documents other than policies (a ``BaseImagePolicyException``), so an image
    pattern means the same, and is refused in the same words, wherever it is written.
    """
    compiler = FieldReader()
    found = compiler.globs(value, path, globs.IMAGE_CHARS, "image pattern", names=True)
    return found, compiler.errors


def calendar_date(value: Any, path: str) -> tuple[dt.date | None, list[PolicyError]]:
    """A ``YYYY-MM-DD`` date read as ``until`` is in a policy (calendar, range), and its errors."""
    compiler = FieldReader()
    day = compiler.date(value, path)
    return day, compiler.errors
