"""The compiled policy: frozen, parsed once, evaluated many times.

The user-facing shape is the CRD ``spec`` (a dict, validated against
``controller/policy/crd-schema.yaml``); :mod:`controller.policy.compile` turns it
into these dataclasses, with globs compiled and dates parsed, so evaluation
does no parsing at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from controller.globs import GlobSet
from controller.lineage.model import DEFAULT_MAX_DEPTH
from controller.policy.evidencespec import EvidenceSpec
from controller.reference import Reference

if TYPE_CHECKING:
    from controller.policy.trustspec import TrustPolicy

GROUP = "baseguard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTER_KIND = "ClusterBaseImagePolicy"
NAMESPACED_KIND = "BaseImagePolicy"
POLICY_KINDS = (CLUSTER_KIND, NAMESPACED_KIND)
#: A team's exception to a policy, filed in its own namespace without editing the policy.
EXCEPTION_KIND = "BaseImagePolicyException"


def policy_key(kind: str, namespace: str | None, name: str) -> str:
    """The store key of a custom resource: ``kind/namespace/name`` (namespace empty for cluster kinds)."""
    return f"{kind}/{namespace or ''}/{name}"

#: Patterns (globs, digests, catalog entries) one policy may hold. Each image is
#: matched against them, so they bound evaluation CPU; the largest policies of the
#: library hold about 250.
MAX_PATTERNS_PER_POLICY = 1000
#: Patterns all the ``BaseImagePolicy`` objects of one namespace may hold together:
#: a tenant cannot escape the per-policy cap by writing many policies.
MAX_PATTERNS_PER_NAMESPACE = 2000


class Mode(StrEnum):
    ENFORCE = "Enforce"
    WARN = "Warn"
    AUDIT = "Audit"


class Require(StrEnum):
    NONE = "None"
    VERSION = "Version"
    DIGEST = "Digest"


class OnOutcome(StrEnum):
    """What a lineage outcome does: keep the mode's action, cap it at warn, or drop it."""

    DENY = "Deny"
    WARN = "Warn"
    ALLOW = "Allow"


class Verify(StrEnum):
    LAYERS = "Layers"
    ANNOTATIONS = "Annotations"


class Action(StrEnum):
    """What a violation does; ordered by :data:`SEVERITY`."""

    ALLOW = "allow"
    AUDIT = "audit"
    WARN = "warn"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return SEVERITY[self]


SEVERITY: Mapping[Action, int] = {Action.ALLOW: 0, Action.AUDIT: 1, Action.WARN: 2, Action.DENY: 3}

MODE_ACTION: Mapping[Mode, Action] = {
    Mode.ENFORCE: Action.DENY,
    Mode.WARN: Action.WARN,
    Mode.AUDIT: Action.AUDIT,
}


def most_severe(actions: object) -> Action:
    """``deny > warn > audit > allow`` over an iterable of actions; ``allow`` when empty."""
    best = Action.ALLOW
    for action in actions:  # type: ignore[attr-defined]
        if SEVERITY[action] > SEVERITY[best]:
            best = action
    return best


class RuleCode(StrEnum):
    INVALID_REFERENCE = "invalid-reference"
    REGISTRY_NOT_ALLOWED = "registry-not-allowed"
    DISALLOWED_TAG = "disallowed-tag"
    UNPINNED = "unpinned"
    TAG_MISMATCH = "tag-mismatch"
    DEPRECATED_BASE = "deprecated-base"
    BASE_NOT_ALLOWED = "base-not-allowed"
    UNKNOWN_BASE = "unknown-base"
    LINEAGE_MISMATCH = "lineage-mismatch"
    STALE_BASE = "stale-base"
    LOOKUP_FAILED = "lookup-failed"
    UNSIGNED = "unsigned"
    SIGNATURE_INVALID = "signature-invalid"
    ATTESTATION_MISSING = "attestation-missing"
    SCAN_MISSING = "scan-missing"
    SCAN_STALE = "scan-stale"
    FIXABLE_VULNERABILITIES = "fixable-vulnerabilities"


#: What each rule means, one line each: the policy reference's table of rule codes.
RULE_DOCS: Mapping[RuleCode, str] = {
    RuleCode.INVALID_REFERENCE: "The image string is not a valid reference (grammar, unknown digest algorithm, a 64-hex name).",
    RuleCode.REGISTRY_NOT_ALLOWED: "The image's registry/repository matches no `registries.allowed` glob.",
    RuleCode.DISALLOWED_TAG: "The image uses a tag in `pinning.disallowedTags` (by default `latest`), or none.",
    RuleCode.UNPINNED: "The image is not pinned as `pinning.require` asks (a digest, or a full version tag).",
    RuleCode.TAG_MISMATCH: (
        "The image (or a base claim) writes a tag that its pinned digest does not have: the digest "
        "is known under other tags, and is judged as those."
    ),
    RuleCode.DEPRECATED_BASE: "The image, or a base in its lineage, matches `bases.deprecated`.",
    RuleCode.BASE_NOT_ALLOWED: "No base in the image's (verified) lineage matches `bases.allowed`.",
    RuleCode.UNKNOWN_BASE: "No base could be established: nothing claimed, and no catalog base's layers match.",
    RuleCode.LINEAGE_MISMATCH: "A claimed base's layers are not a prefix of the image's (`verify: Layers`).",
    RuleCode.STALE_BASE: "The base tag has moved on since the build, or the base is older than `maxBaseAge`.",
    RuleCode.LOOKUP_FAILED: "The registry could not answer (or a bound was reached); `onLookupFailure` decides.",
    RuleCode.UNSIGNED: "An image (or a base, `trust.appliesTo`) carries no signature from any `trust.authorities` entry.",
    RuleCode.SIGNATURE_INVALID: (
        "A signature is there but fails: wrong key, altered payload, another image's digest, "
        "outside the key's window, or the wrong keyless identity."
    ),
    RuleCode.ATTESTATION_MISSING: "No verified attestation of a `trust.attestations[].predicateType` from its authorities.",
    RuleCode.SCAN_MISSING: "No vulnerability scan is attached to the image (`evidence`: cosign vuln attestation, Trivy report).",
    RuleCode.SCAN_STALE: "The newest scan of the image is older than `evidence.maxScanAge`.",
    RuleCode.FIXABLE_VULNERABILITIES: (
        "The scan lists vulnerabilities of an `evidence.denyFixable` severity that have a fixed "
        "version, in the base's layers or the application's (`evidence.scope`)."
    ),
}
#: The rules of the ``evidence`` section (judged only with scan evidence from the registry).
EVIDENCE_RULES = frozenset(
    {RuleCode.SCAN_MISSING, RuleCode.SCAN_STALE, RuleCode.FIXABLE_VULNERABILITIES}
)

#: Rules judged on signatures read from the registry (``spec.trust``).
TRUST_RULES = frozenset({RuleCode.UNSIGNED, RuleCode.SIGNATURE_INVALID, RuleCode.ATTESTATION_MISSING})

#: Rules that can only be fully judged with facts from the registry.
LINEAGE_RULES = frozenset(
    {
        RuleCode.TAG_MISMATCH,
        RuleCode.DEPRECATED_BASE,
        RuleCode.BASE_NOT_ALLOWED,
        RuleCode.UNKNOWN_BASE,
        RuleCode.LINEAGE_MISMATCH,
        RuleCode.STALE_BASE,
        RuleCode.LOOKUP_FAILED,
    }
)


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True)
class LabelSelector:
    """``metav1.LabelSelector``: an empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True)
class Match:
    """Which objects a policy applies to. ``None`` means "not constrained"."""

    namespaces: GlobSet | None = None
    exclude_namespaces: GlobSet | None = None
    namespace_selector: LabelSelector | None = None
    object_selector: LabelSelector | None = None


@dataclass(frozen=True)
class Waiver:
    """A time-boxed exception: applies up to and including ``until``.

    Two sources: a policy's own ``spec.exceptions[index]`` (written by whoever may
    edit the policy), and a ``BaseImagePolicyException`` object (``source`` names
    it) filed by a team in its own namespace. The latter's ``scope`` is that
    namespace and nothing else: it can never waive a finding about another
    namespace's workload, whatever its other fields say.
    """

    images: GlobSet | None
    namespaces: GlobSet | None
    until: dt.date
    reason: str
    index: int = 0
    namespace_selector: LabelSelector | None = None
    #: The rules it waives; ``None``: every rule of the policy.
    rules: frozenset[RuleCode] | None = None
    #: The one namespace it may apply in (an exception object's own); ``None`` for a policy's entry.
    scope: str | None = None
    #: ``BaseImagePolicyException team-a/legacy``, for an exception object; ``None`` for a policy's entry.
    source: str | None = None

    @property
    def label(self) -> str:
        """How a waived finding names it: the exception object, or the policy's entry."""
        return self.source if self.source is not None else f"exception #{self.index}"


@dataclass(frozen=True)
class BaseEntry:
    """An allowlist entry (``spec.bases.allowed[]``)."""

    image: GlobSet
    tags: GlobSet | None = None
    digests: frozenset[str] | None = None


@dataclass(frozen=True)
class DeprecatedEntry:
    """A deprecated base (``spec.bases.deprecated[]``)."""

    image: GlobSet
    tags: GlobSet | None = None
    digests: frozenset[str] | None = None
    reason: str = ""
    replacement: str | None = None
    enforce_after: dt.date | None = None


@dataclass(frozen=True)
class Pinning:
    """``spec.pinning``; its defaults are the ones the compiler applies."""

    require: Require = Require.NONE
    disallowed_tags: GlobSet = field(default_factory=lambda: GlobSet(("latest",)))
    mutate_to_digest: bool = False


@dataclass(frozen=True)
class LineageSettings:
    """``spec.lineage``; these defaults are the ones the compiler applies (one source)."""

    max_depth: int = DEFAULT_MAX_DEPTH
    verify: Verify = Verify.LAYERS
    catalog: tuple[Reference, ...] = ()
    on_unknown_base: OnOutcome = OnOutcome.DENY
    on_lookup_failure: OnOutcome = OnOutcome.DENY
    max_base_age: dt.timedelta | None = None
    stale_base: OnOutcome = OnOutcome.WARN
    platforms: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CompiledPolicy:
    """One policy, ready to evaluate. ``namespace`` is ``None`` for the cluster kind."""

    kind: str
    name: str
    namespace: str | None = None
    uid: str = ""
    generation: int = 0
    mode: Mode = Mode.ENFORCE
    match: Match = field(default_factory=Match)
    exclude_images: GlobSet | None = None
    waivers: tuple[Waiver, ...] = ()
    registries_allowed: GlobSet | None = None
    pinning: Pinning = field(default_factory=Pinning)
    bases_allowed: tuple[BaseEntry, ...] | None = None
    bases_deprecated: tuple[DeprecatedEntry, ...] = ()
    lineage: LineageSettings = field(default_factory=LineageSettings)
    #: ``spec.lineage`` was written: lineage rules (unknown-base, stale-base …) apply even
    #: without ``bases``. A pinning-only policy never costs a registry lookup.
    lineage_declared: bool = False
    #: Where each pattern of the policy is written (globs, digests, catalog entries), in
    #: the compiler's order: what evaluation costs grows with their number, so the compiler
    #: caps it per policy and the store per namespace, each naming the path that crosses.
    pattern_paths: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: ``BaseImagePolicyException`` objects that name this policy, by their namespace (their
    #: only scope): a finding about a workload in ``ns`` consults ``granted[ns]`` and no
    #: other entry, so one namespace's exceptions cost another's reviews one dict lookup.
    granted: Mapping[str, tuple[Waiver, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: ``spec.trust`` compiled (:mod:`controller.policy.trustspec`); ``None``: no signatures required.
    trust: TrustPolicy | None = None
    #: ``spec.evidence``: the scan evidence the image must carry (``None``: not judged).
    evidence: EvidenceSpec | None = None

    @property
    def patterns(self) -> int:
        """How many patterns the policy holds (what :data:`MAX_PATTERNS_PER_POLICY` caps)."""
        return len(self.pattern_paths)

    @property
    def key(self) -> str:
        """How the policy is named in every violation: ``name`` or ``namespace/name``."""
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"

    @property
    def needs_lineage(self) -> bool:
        """True when some rule of this policy needs the registry (lookups are lazy: none without it)."""
        return (
            self.judges_lineage
            or self.pinning.mutate_to_digest
            or self.trust is not None
            or self.evidence is not None
        )

    @property
    def judges_lineage(self) -> bool:
        """True when the lineage rules (:data:`LINEAGE_RULES`) apply under this policy."""
        return (
            self.bases_allowed is not None or bool(self.bases_deprecated) or self.lineage_declared
        )

    @property
    def judges_unknown_base(self) -> bool:
        """``unknown-base`` needs an allowlist or a ``spec.lineage`` section.

        A policy that only lists deprecated bases (the EOL library) cannot say
        an image with no established base is wrong: it judges what it can
        establish, and leaves the rest to policies that demand a known base.
        """
        return self.bases_allowed is not None or self.lineage_declared

    @property
    def base_action(self) -> Action:
        return MODE_ACTION[self.mode]
