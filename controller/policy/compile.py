"""Policy documents → :class:`CompiledPolicy`, or the fields that are wrong.

The schema (:mod:`controller.policy.schema`) says what the apiserver can say:
types, enums, patterns. This module says the rest, with the same field paths:
globs whose characters can never match, patterns that can never match a
normalized name, dates that are not on the calendar, references and digests
that do not parse. It also applies the schema's defaults, because a policy read
from a file has not been through the apiserver.

Conventions a policy author can rely on:

* an empty list is the same as a missing one for the filters ``match.*``,
  ``exclude.images`` and ``bases.*.tags``/``digests``; an empty allowlist
  (``registries.allowed``, ``bases.allowed``) or ``platforms`` is refused by the
  schema, since "allow nothing" is never what was meant;
* ``pinning.disallowedTags: []`` disallows no tag; the default ``[latest]``
  applies to policies that have a ``spec.pinning`` section, so a policy about
  bases (say, end of life) does not also start judging tags;
* writing ``spec.lineage`` (even ``{}``) turns on the lineage rules.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum
from typing import Any, TypeVar

from controller import digests, globs, reference
from controller.errors import InvalidReference, PolicyError
from controller.globs import GlobSet
from controller.policy.evidencespec import compile_evidence
from controller.policy.lookups import catalog_references  # re-exported: its old home
from controller.policy.model import (
    CLUSTER_KIND,
    MAX_PATTERNS_PER_POLICY,
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
    LabelRequirement,
    LabelSelector,
    LineageSettings,
    Match,
    Mode,
    OnOutcome,
    Pinning,
    Require,
    Verify,
    Waiver,
)
from controller.policy.schema import (
    DNS_SUBDOMAIN,
    field_path,
    glob_problem,
    in_document_order,
    to_plain,
    validate_document,
)
from controller.reference import Reference

__all__ = ["catalog_references", "check_policy", "compile_policy"]

DEFAULT_NAMESPACE = "default"

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

# The defaults live on the model's dataclasses (one source); the schema repeats them for
# the apiserver and tests/unit/test_schema.py holds the two equal.
_LINEAGE_DEFAULTS = LineageSettings()
_PINNING_DEFAULTS = Pinning()


def check_policy(doc: Mapping[str, Any]) -> list[PolicyError]:
    """Every error of the policy: the schema's first, then the semantic ones, each in document order.

    A semantic error on a field the schema already faulted is left out, so each
    mistake is reported once.
    """
    return _run(doc)[1]


def compile_policy(doc: Mapping[str, Any]) -> CompiledPolicy:
    """Compile one policy document; raise the first :class:`PolicyError` if it has any.

    ``namespace`` is ``None`` for a ClusterBaseImagePolicy and
    ``metadata.namespace`` (else ``"default"``) for a BaseImagePolicy.
    """
    policy, errors = _run(doc)
    if errors:
        raise errors[0]
    assert policy is not None
    return policy


def compile_checked(doc: Mapping[str, Any]) -> tuple[CompiledPolicy | None, list[PolicyError]]:
    """The compiled policy and every error, in one pass (``None`` when there are errors).

    For callers that report all errors and then use the policy: validating a
    document is the costly part, so it is done once.
    """
    return _run(doc)


def _run(doc: Mapping[str, Any]) -> tuple[CompiledPolicy | None, list[PolicyError]]:
    plain = to_plain(doc)
    schema_errors = validate_document(plain)
    if not isinstance(plain, dict):
        return None, schema_errors
    compiler = _Compiler()
    policy = compiler.policy(plain)
    faulted = [e.path for e in schema_errors]
    semantic = [e for e in compiler.errors if not _covered(e.path, faulted)]
    errors = schema_errors + in_document_order(plain, semantic)
    return (None if errors else policy), errors


def patterns_refusal(count: int) -> str:
    """Why a policy of ``count`` patterns is refused (said at the first pattern past the cap)."""
    return (
        f"the policy holds {count} patterns (globs, digests and catalog entries together), "
        f"more than the {MAX_PATTERNS_PER_POLICY} one policy may hold: every image is matched "
        "against them; use wider globs (docker.io/acme/*) or split the policy"
    )


def _covered(path: str, faulted: list[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in faulted if p)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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


class _Compiler:
    """One pass over a plain policy document: builds the policy and collects errors.

    Written defensively: a value of the wrong type has already been reported by
    the schema, so here it silently falls back to the default.
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
        for key, val in _mapping(value.get("matchLabels")).items():
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

    # --- sections -------------------------------------------------------------------

    def policy(self, doc: dict[str, Any]) -> CompiledPolicy:
        metadata = _mapping(doc.get("metadata"))
        spec = _mapping(doc.get("spec"))
        kind = doc.get("kind") if isinstance(doc.get("kind"), str) else CLUSTER_KIND
        name = metadata.get("name")
        namespace = metadata.get("namespace")
        generation = metadata.get("generation")
        uid = metadata.get("uid")
        lineage = spec.get("lineage")
        bases = _mapping(spec.get("bases"))
        exclude = _mapping(spec.get("exclude"))
        compiled = CompiledPolicy(
            kind=str(kind),
            name=name if isinstance(name, str) else "",
            namespace=None
            if kind == CLUSTER_KIND
            else (namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE),
            uid=uid if isinstance(uid, str) else "",
            generation=generation if isinstance(generation, int) else 0,
            mode=self.enum(spec.get("mode"), Mode, "spec.mode", CompiledPolicy.mode),
            match=self.match(spec.get("match"), "spec.match"),
            exclude_images=self.globs(
                exclude.get("images"),
                "spec.exclude.images",
                globs.IMAGE_CHARS,
                "image pattern",
                names=True,
            ),
            waivers=self.waivers(spec.get("exceptions"), "spec.exceptions"),
            registries_allowed=self.globs(
                _mapping(spec.get("registries")).get("allowed"),
                "spec.registries.allowed",
                globs.REPOSITORY_CHARS,
                "repository pattern",
                names=True,
                repository=True,
            ),
            pinning=self.pinning(spec.get("pinning"), "spec.pinning"),
            bases_allowed=self.allowed(bases.get("allowed"), "spec.bases.allowed"),
            bases_deprecated=self.deprecated(bases.get("deprecated"), "spec.bases.deprecated"),
            lineage=self.lineage(lineage, "spec.lineage"),
            lineage_declared=isinstance(lineage, dict),
        )
        paths = self.patterns
        if len(paths) > MAX_PATTERNS_PER_POLICY:
            self.fail(paths[MAX_PATTERNS_PER_POLICY], patterns_refusal(len(paths)))
        evidence = compile_evidence(
            spec.get("evidence"), "spec.evidence", fail=self.fail, duration=self.duration
        )
        return replace(compiled, pattern_paths=tuple(paths), evidence=evidence)

    def match(self, value: Any, path: str) -> Match:
        match = _mapping(value)
        return Match(
            namespaces=self.globs(
                match.get("namespaces"),
                f"{path}.namespaces",
                globs.NAMESPACE_CHARS,
                "namespace pattern",
            ),
            exclude_namespaces=self.globs(
                match.get("excludeNamespaces"),
                f"{path}.excludeNamespaces",
                globs.NAMESPACE_CHARS,
                "namespace pattern",
            ),
            namespace_selector=self.selector(
                match.get("namespaceSelector"), f"{path}.namespaceSelector"
            ),
            object_selector=self.selector(match.get("objectSelector"), f"{path}.objectSelector"),
        )

    def waivers(self, value: Any, path: str) -> tuple[Waiver, ...]:
        out: list[Waiver] = []
        for index, item in enumerate(value if isinstance(value, list) else []):
            here = f"{path}[{index}]"
            if not isinstance(item, dict):
                continue
            images = self.globs(
                item.get("images"), f"{here}.images", globs.IMAGE_CHARS, "image pattern", names=True
            )
            namespaces = self.globs(
                item.get("namespaces"),
                f"{here}.namespaces",
                globs.NAMESPACE_CHARS,
                "namespace pattern",
            )
            selector = self.selector(item.get("namespaceSelector"), f"{here}.namespaceSelector")
            until = self.date(item.get("until"), f"{here}.until")
            reason = item.get("reason")
            if until is not None:
                out.append(
                    Waiver(
                        images=images,
                        namespaces=namespaces,
                        until=until,
                        reason=reason if isinstance(reason, str) else "",
                        index=index,
                        namespace_selector=selector,
                    )
                )
        return tuple(out)

    def pinning(self, value: Any, path: str) -> Pinning:
        pinning = _mapping(value)
        tags = pinning.get("disallowedTags")
        mutate = pinning.get("mutateToDigest")
        return Pinning(
            require=self.enum(pinning.get("require"), Require, f"{path}.require", _PINNING_DEFAULTS.require),
            disallowed_tags=(
                self.globs(tags, f"{path}.disallowedTags", globs.TAG_CHARS, "tag pattern")
                or GlobSet(())
                if isinstance(tags, list)
                # The ["latest"] default belongs to policies that speak about pinning:
                # an end-of-life policy must not start judging tags on its own.
                else GlobSet(("latest",) if value is not None else ())
            ),
            mutate_to_digest=mutate if isinstance(mutate, bool) else _PINNING_DEFAULTS.mutate_to_digest,
        )

    def _entry(
        self, item: dict[str, Any], here: str
    ) -> tuple[GlobSet, GlobSet | None, frozenset[str] | None]:
        image = item.get("image")
        pattern: str | None = None
        if isinstance(image, str):
            pattern = self.glob(
                image,
                f"{here}.image",
                globs.REPOSITORY_CHARS,
                "repository pattern",
                names=True,
                repository=True,
                tags_field=True,
            )
        tags = self.globs(item.get("tags"), f"{here}.tags", globs.TAG_CHARS, "tag pattern")
        digests = self.digests(item.get("digests"), f"{here}.digests")
        return GlobSet((pattern,) if pattern else ()).prepared(), tags, digests

    def allowed(self, value: Any, path: str) -> tuple[BaseEntry, ...] | None:
        if not isinstance(value, list):
            return None
        out: list[BaseEntry] = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                image, tags, digests = self._entry(item, f"{path}[{index}]")
                out.append(BaseEntry(image=image, tags=tags, digests=digests))
        return tuple(out)

    def deprecated(self, value: Any, path: str) -> tuple[DeprecatedEntry, ...]:
        out: list[DeprecatedEntry] = []
        for index, item in enumerate(value if isinstance(value, list) else []):
            here = f"{path}[{index}]"
            if not isinstance(item, dict):
                continue
            image, tags, digests = self._entry(item, here)
            replacement = self.reference(item.get("replacement"), f"{here}.replacement")
            reason = item.get("reason")
            out.append(
                DeprecatedEntry(
                    image=image,
                    tags=tags,
                    digests=digests,
                    reason=reason if isinstance(reason, str) else "",
                    replacement=replacement.normalized if replacement else None,
                    enforce_after=self.date(item.get("enforceAfter"), f"{here}.enforceAfter"),
                )
            )
        return tuple(out)

    def lineage(self, value: Any, path: str) -> LineageSettings:
        lineage = _mapping(value)
        depth = lineage.get("maxDepth")
        catalog = lineage.get("catalog")
        refs = [
            self.reference(item, f"{path}.catalog[{index}]")
            for index, item in enumerate(catalog if isinstance(catalog, list) else [])
        ]
        self.patterns.extend(
            f"{path}.catalog[{index}]" for index, ref in enumerate(refs) if ref is not None
        )
        default = _LINEAGE_DEFAULTS
        return LineageSettings(
            max_depth=depth
            if isinstance(depth, int) and not isinstance(depth, bool)
            else default.max_depth,
            verify=self.enum(lineage.get("verify"), Verify, f"{path}.verify", default.verify),
            catalog=tuple(r for r in refs if r is not None),
            on_unknown_base=self.enum(
                lineage.get("onUnknownBase"), OnOutcome, f"{path}.onUnknownBase", default.on_unknown_base
            ),
            on_lookup_failure=self.enum(
                lineage.get("onLookupFailure"),
                OnOutcome,
                f"{path}.onLookupFailure",
                default.on_lookup_failure,
            ),
            max_base_age=self.duration(lineage.get("maxBaseAge"), f"{path}.maxBaseAge"),
            stale_base=self.enum(
                lineage.get("staleBase"), OnOutcome, f"{path}.staleBase", default.stale_base
            ),
            platforms=self.platforms(lineage.get("platforms"), f"{path}.platforms"),
        )


def image_globs(value: Any, path: str) -> tuple[GlobSet | None, list[PolicyError]]:
    """Image globs read exactly as ``exclude.images``/``exceptions[].images`` are, and their errors.

    For documents other than policies (a ``BaseImagePolicyException``), so an image
    pattern means the same, and is refused in the same words, wherever it is written.
    """
    compiler = _Compiler()
    found = compiler.globs(value, path, globs.IMAGE_CHARS, "image pattern", names=True)
    return found, compiler.errors


def calendar_date(value: Any, path: str) -> tuple[dt.date | None, list[PolicyError]]:
    """A ``YYYY-MM-DD`` date read as ``until`` is in a policy (calendar, range), and its errors."""
    compiler = _Compiler()
    day = compiler.date(value, path)
    return day, compiler.errors
