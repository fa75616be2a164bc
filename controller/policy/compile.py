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

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from controller import globs
from controller.errors import PolicyError
from controller.globs import GlobSet
from controller.policy.evidencespec import compile_evidence
from controller.policy.fields import (
    FieldReader,
    as_mapping,
    calendar_date,
    image_globs,
    patterns_refusal,
)
from controller.policy.lookups import catalog_references  # re-exported: its old home
from controller.policy.model import (
    CLUSTER_KIND,
    MAX_PATTERNS_PER_POLICY,
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
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
    in_document_order,
    to_plain,
    validate_document,
)
from controller.policy.trustspec import compile_trust

__all__ = [
    "calendar_date", "catalog_references", "check_policy", "compile_policy", "image_globs", "patterns_refusal",
]  # fmt: skip

DEFAULT_NAMESPACE = "default"

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


def _covered(path: str, faulted: list[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in faulted if p)


class _Compiler(FieldReader):
    """One pass over a plain policy document: builds the policy and collects errors.

    Written defensively: a value of the wrong type has already been reported by
    the schema, so here it silently falls back to the default.
    """

    # --- sections -------------------------------------------------------------------

    def policy(self, doc: dict[str, Any]) -> CompiledPolicy:
        metadata = as_mapping(doc.get("metadata"))
        spec = as_mapping(doc.get("spec"))
        kind = doc.get("kind") if isinstance(doc.get("kind"), str) else CLUSTER_KIND
        name = metadata.get("name")
        namespace = metadata.get("namespace")
        generation = metadata.get("generation")
        uid = metadata.get("uid")
        lineage = spec.get("lineage")
        bases = as_mapping(spec.get("bases"))
        exclude = as_mapping(spec.get("exclude"))
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
                as_mapping(spec.get("registries")).get("allowed"),
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
            trust=compile_trust(spec.get("trust"), "spec.trust", self.fail, self.trust_images),
        )
        paths = self.patterns
        if len(paths) > MAX_PATTERNS_PER_POLICY:
            self.fail(paths[MAX_PATTERNS_PER_POLICY], patterns_refusal(len(paths)))
        evidence = compile_evidence(
            spec.get("evidence"),
            "spec.evidence",
            fail=self.fail,
            duration=self.duration,
            trust=compiled.trust,
        )
        return replace(compiled, pattern_paths=tuple(paths), evidence=evidence)

    def trust_images(self, value: Any, path: str) -> GlobSet | None:
        """``spec.trust.images``: repository globs, read as ``bases.allowed[].image`` is."""
        return self.globs(
            value, path, globs.REPOSITORY_CHARS, "repository pattern", names=True, repository=True
        )

    def match(self, value: Any, path: str) -> Match:
        match = as_mapping(value)
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
        pinning = as_mapping(value)
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
        lineage = as_mapping(value)
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
