"""A compiled policy → a ValidatingAdmissionPolicy and its binding, as plain dicts.

PURE: no I/O, no clock (``today`` is a parameter). The objects hold the rules of
the policy that need no registry (``invalid-reference``, ``registry-not-allowed``,
``disallowed-tag``, ``unpinned``), with its scope (``match``, the namespace of a
``BaseImagePolicy``), ``exclude.images`` and the exceptions still in force on
``today``; everything else is left out and named in the objects' annotations
(:data:`NOT_EXPORTED_ANNOTATION`), so a reader of the cluster sees what the
apiserver does *not* judge while the webhook is away. The CEL text itself is
built by :mod:`controller.vap.cel`.

A kept exception has an end date the apiserver cannot see (CEL there has no
clock): :data:`REGENERATE_ANNOTATION` carries the first day on which the objects
are wrong, so a regenerate can be scheduled for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.policy.model import (
    CLUSTER_KIND,
    CompiledPolicy,
    LabelSelector,
    Mode,
    Require,
    RuleCode,
    Waiver,
)
from controller.vap import cel

API_VERSION = "admissionregistration.k8s.io/v1"
MANAGED_BY = "baseguard"
POLICY_ANNOTATION = "baseguard.io/policy"
EXPORTED_ANNOTATION = "baseguard.io/exported-rules"
NOT_EXPORTED_ANNOTATION = "baseguard.io/not-exported"
REGENERATE_ANNOTATION = "baseguard.io/regenerate-by"
#: The namespaces the chart's webhook never judges by default (its own namespace is
#: the release's, unknown here): the backstop leaves them alone too unless told otherwise.
DEFAULT_EXCLUDED_NAMESPACES = ("kube-system",)

#: ``validationActions`` of the binding, from the policy's mode.
MODE_ACTIONS: dict[Mode, list[str]] = {
    Mode.ENFORCE: ["Deny"],
    Mode.WARN: ["Warn"],
    Mode.AUDIT: ["Audit"],
}

#: What the workload rules of the chart's webhook match (charts/…/_helpers.tpl workloadRules).
RESOURCE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods", "replicationcontrollers", "podtemplates"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["UPDATE"],
        "resources": ["pods/ephemeralcontainers"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": ["batch"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["jobs", "cronjobs"],
        "scope": "Namespaced",
    },
]

_NAME_MAX = 253


@dataclass(frozen=True)
class Export:
    """The two objects for one policy, and what was and was not carried over."""

    policy: dict[str, Any]
    binding: dict[str, Any]
    exported: tuple[RuleCode, ...]
    not_exported: tuple[str, ...]
    regenerate_by: dt.date | None

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [self.policy, self.binding]


def object_name(policy: CompiledPolicy) -> str:
    """``baseguard.cluster.NAME`` or ``baseguard.ns.NAMESPACE.NAME``: one name per policy.

    A namespace is a DNS label (no dot), so the two forms never collide; past the
    253 characters a name may hold, the tail is replaced by a hash of the whole.
    """
    if policy.kind == CLUSTER_KIND or policy.namespace is None:
        name = f"baseguard.cluster.{policy.name}"
    else:
        name = f"baseguard.ns.{policy.namespace}.{policy.name}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: _NAME_MAX - 17]}.{digest}"


def left_out(policy: CompiledPolicy) -> list[str]:
    """The parts of ``policy`` the apiserver cannot judge exactly, each with why."""
    out = []
    if policy.bases_allowed is not None:
        out.append("bases.allowed (base-not-allowed: needs the image's lineage from the registry)")
    if policy.bases_deprecated:
        out.append(
            "bases.deprecated (deprecated-base: the lineage, and a pinned digest's real tags, "
            "come from the registry)"
        )
    if policy.lineage_declared:
        out.append(
            "lineage (unknown-base, lineage-mismatch, stale-base, lookup-failed: registry facts)"
        )
    if policy.trust is not None:
        out.append("trust (unsigned, signature-invalid, attestation-missing: signatures from the registry)")
    if policy.pinning.mutate_to_digest:
        out.append("pinning.mutateToDigest (a mutation: a validating policy cannot rewrite images)")
    if policy.exclude_images or any(w.images for w in policy.waivers):
        out.append(
            "exclusions and exceptions by the tag of a pinned digest are matched as written "
            "(the webhook matches the tags the registry says the digest has)"
        )
    return out


def exported_rules(policy: CompiledPolicy) -> list[RuleCode]:
    out = [RuleCode.INVALID_REFERENCE]
    if policy.registries_allowed is not None:
        out.append(RuleCode.REGISTRY_NOT_ALLOWED)
    if policy.pinning.disallowed_tags:
        out.append(RuleCode.DISALLOWED_TAG)
    if policy.pinning.require is not Require.NONE:
        out.append(RuleCode.UNPINNED)
    return out


def in_force(waivers: Sequence[Waiver], today: dt.date) -> list[Waiver]:
    """The exceptions that still waive on ``today`` (``until`` inclusive, as the evaluator)."""
    return [w for w in waivers if today <= w.until]


def _selector(selector: LabelSelector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [
            {
                "key": r.key,
                "operator": r.operator,
                **({"values": sorted(r.values)} if r.values else {}),
            }
            for r in selector.match_expressions
        ]
    return out


def _namespace_selector(policy: CompiledPolicy, excluded: Sequence[str]) -> dict[str, Any]:
    selector = _selector(policy.match.namespace_selector or LabelSelector())
    if excluded:
        selector.setdefault("matchExpressions", []).append(
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": sorted(set(excluded)),
            }
        )
    return selector


def _match_conditions(policy: CompiledPolicy) -> list[dict[str, str]]:
    """Scope that needs CEL: the policy's own namespace, namespace globs, the object selector.

    The object selector is a condition on the *new* object's labels, as the
    webhook reads them: the apiserver's ``objectSelector`` would also match on
    the old object's labels during an UPDATE.
    """
    out = []
    match = policy.match
    if policy.kind != CLUSTER_KIND and policy.namespace is not None:
        out.append(
            {
                "name": "policy-namespace",
                "expression": f"request.namespace == {cel.string(policy.namespace)}",
            }
        )
    if match.namespaces:
        out.append(
            {
                "name": "match-namespaces",
                "expression": cel.glob_test(match.namespaces, "request.namespace"),
            }
        )
    if match.exclude_namespaces:
        out.append(
            {
                "name": "exclude-namespaces",
                "expression": "!" + cel.glob_test(match.exclude_namespaces, "request.namespace"),
            }
        )
    if match.object_selector is not None:
        selector = match.object_selector
        labels = "(has(object.metadata.labels) ? object.metadata.labels : {})"
        out.append(
            {
                "name": "object-selector",
                "expression": cel.label_selector_condition(
                    labels,
                    selector.match_labels,
                    [(r.key, r.operator, sorted(r.values)) for r in selector.match_expressions],
                ),
            }
        )
    return out


def _exempt(policy: CompiledPolicy, waivers: Sequence[Waiver]) -> str:
    """CEL over ``e`` (a parsed ref): excluded by ``exclude.images``, or waived by an exception."""
    terms = []
    if policy.exclude_images:
        terms.append(cel.image_matches(policy.exclude_images))
    for waiver in waivers:
        parts = []
        if waiver.images:
            parts.append(cel.image_matches(waiver.images))
        if waiver.namespaces:
            parts.append(cel.glob_test(waiver.namespaces, "request.namespace"))
        terms.append("(" + (" && ".join(parts) or "true") + ")")
    return " || ".join(terms) if terms else "false"


def _validations(policy: CompiledPolicy) -> list[dict[str, str]]:
    """One validation per exported rule, each over the judged images that parsed."""
    key = policy.key
    checks: list[tuple[RuleCode, str, str]] = [
        (RuleCode.INVALID_REFERENCE, "e.valid == 'y'", "is not a valid image reference"),
    ]
    if policy.registries_allowed is not None:
        checks.append(
            (
                RuleCode.REGISTRY_NOT_ALLOWED,
                "e.valid != 'y' || " + cel.glob_test(policy.registries_allowed, "e.name"),
                "comes from a registry the policy does not allow",
            )
        )
    tags = policy.pinning.disallowed_tags
    if tags:
        checks.append(
            (
                RuleCode.DISALLOWED_TAG,
                "e.valid != 'y' || e.tag == '' || !" + cel.glob_test(tags, "e.tag"),
                "uses a tag the policy disallows (or none, which pulls latest)",
            )
        )
    require = policy.pinning.require
    if require is Require.DIGEST:
        checks.append(
            (RuleCode.UNPINNED, "e.valid != 'y' || e.hasDigest != ''", "is not pinned by digest")
        )
    elif require is Require.VERSION:
        checks.append(
            (
                RuleCode.UNPINNED,
                f"e.valid != 'y' || e.hasDigest != '' || e.tag.matches({cel.string(cel.FULL_VERSION_RE)})",
                "names no full version (three numeric parts) and no digest",
            )
        )
    out = []
    for rule, passes, what in checks:
        prefix = cel.string(f"baseguard policy {key} ({rule.value}): image ")
        suffix = cel.string(f" {what}")
        out.append(
            {
                "expression": f"variables.judged.all(e, {passes})",
                "messageExpression": (
                    f"{prefix} + variables.judged.filter(e, !({passes})).map(e, e.raw).join(', ') + {suffix}"
                ),
                "reason": "Forbidden",
            }
        )
    return out


def export(
    policy: CompiledPolicy,
    *,
    today: dt.date,
    exclude_namespaces: Sequence[str] = DEFAULT_EXCLUDED_NAMESPACES,
) -> Export:
    """The ValidatingAdmissionPolicy and binding that judge ``policy``'s string rules in the apiserver."""
    name = object_name(policy)
    waivers = in_force(policy.waivers, today)
    regenerate = min((w.until for w in waivers), default=None)
    regenerate_by = regenerate + dt.timedelta(days=1) if regenerate is not None else None
    rules = exported_rules(policy)
    missing = left_out(policy)
    annotations = {
        POLICY_ANNOTATION: f"{policy.kind}/{policy.key}",
        EXPORTED_ANNOTATION: ",".join(r.value for r in rules),
        NOT_EXPORTED_ANNOTATION: "; ".join(missing) or "none",
    }
    if regenerate_by is not None:
        annotations[REGENERATE_ANNOTATION] = regenerate_by.isoformat()
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY}
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    variables = [
        {"name": "spec", "expression": cel.pod_spec_expression("object")},
        {"name": "old", "expression": cel.old_spec_expression()},
        {"name": "images", "expression": cel.images_expression()},
        *({"name": n, "expression": e} for n, e in cel.parse_steps()),
        {
            "name": "judged",
            "expression": f"variables.refs.filter(e, !({_exempt(policy, waivers)}))",
        },
    ]
    constraints: dict[str, Any] = {"resourceRules": RESOURCE_RULES, "matchPolicy": "Equivalent"}
    selector = _namespace_selector(policy, exclude_namespaces)
    if selector:
        constraints["namespaceSelector"] = selector
    spec: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": constraints,
        "variables": variables,
        "validations": _validations(policy),
    }
    conditions = _match_conditions(policy)
    if conditions:
        spec["matchConditions"] = conditions
    vap = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata,
        "spec": spec,
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {"policyName": name, "validationActions": MODE_ACTIONS[policy.mode]},
    }
    return Export(
        policy=vap,
        binding=binding,
        exported=tuple(rules),
        not_exported=tuple(missing),
        regenerate_by=regenerate_by,
    )
