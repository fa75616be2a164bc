"""``check --format sarif``: SARIF 2.1.0, the format code-scanning UIs read.

One SARIF result per violation, at the line where the image is written: the
``image:`` of the container in a manifest, the ``FROM`` of a Dockerfile. Rule
ids are baseguard's rule codes, each with help text, so a reader of the
code-scanning page learns what the rule means and how to fix it without
opening our docs. Levels follow the action: ``deny`` is an error, ``warn`` a
warning, ``audit`` a note; a waived violation stays in the report as a
suppressed result (an exception never hides what it waives).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from controller import __version__
from controller.assess import WorkloadResult
from controller.policy.model import Action, RuleCode, most_severe
from controller.policy.trustrules import signed_by
from controller.policy.verdict import Violation

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

_LEVELS = {Action.DENY: "error", Action.WARN: "warning", Action.AUDIT: "note", Action.ALLOW: "note"}

#: (short description, help) per rule code: what it means, and what to do.
RULE_HELP: Mapping[str, tuple[str, str]] = {
    RuleCode.INVALID_REFERENCE: (
        "The image string is not a valid image reference.",
        "The image does not parse as registry/repository:tag@digest. Fix the typo, or quote a "
        "value that YAML reads as a number.",
    ),
    RuleCode.REGISTRY_NOT_ALLOWED: (
        "The image comes from a registry the policy does not allow.",
        "Pull the image from one of the registries listed in the policy's registries.allowed "
        "(often a mirror of the public one).",
    ),
    RuleCode.DISALLOWED_TAG: (
        "The image uses a tag the policy disallows (latest by default).",
        "A tag like latest moves under you. Use a version tag, or pin by digest "
        "(image:tag@sha256:...).",
    ),
    RuleCode.UNPINNED: (
        "The image is not pinned as the policy requires.",
        "With require: Digest, add @sha256:... to the image; with require: Version, use a tag "
        "holding a full version (three numeric parts, e.g. 3.12.7-slim) or a digest.",
    ),
    RuleCode.TAG_MISMATCH: (
        "The image's tag does not name the digest it is pinned to.",
        "A runtime pulls the digest and ignores the tag, so the image is judged by the tags "
        "known to name that digest. Write the tag that names the digest, or pin the digest of "
        "the tag you mean.",
    ),
    RuleCode.DEPRECATED_BASE: (
        "The image, or a base it is built on, is deprecated (e.g. end of life).",
        "Rebuild on the replacement the message names. Before enforceAfter the finding only "
        "warns; an exception in the policy can waive it until a date.",
    ),
    RuleCode.BASE_NOT_ALLOWED: (
        "Neither the image nor any base it is built on is in the policy's allowlist.",
        "Build on one of the bases the policy's bases.allowed lists, or ask the platform team "
        "to add yours.",
    ),
    RuleCode.UNKNOWN_BASE: (
        "No base could be established for the image.",
        "Record the base when building: the OCI annotations org.opencontainers.image.base.name "
        "and .base.digest (docker buildx does with --annotation), or build on a base in the "
        "policy's lineage.catalog so it is detected by layers.",
    ),
    RuleCode.LINEAGE_MISMATCH: (
        "The image claims a base that its layers contradict.",
        "The base named in the image's annotations or labels is not a layer prefix of the "
        "image. Rebuild so the claim is true, or fix the annotation.",
    ),
    RuleCode.STALE_BASE: (
        "The image's base tag has moved on, or the base is older than allowed.",
        "Rebuild the image on the current base so it picks up the base's fixes.",
    ),
    RuleCode.LOOKUP_FAILED: (
        "The registry could not be asked about the image.",
        "The registry did not answer, refused the credentials, timed out or sent content "
        "that does not match its digest. Check access (--registry-config, --docker-config); "
        "the policy's lineage.onLookupFailure decides what this means.",
    ),
    RuleCode.UNSIGNED: (
        "The image, or a base beneath it, carries no signature from the policy's authorities.",
        "Sign it with one of the keys or keyless identities in spec.trust.authorities "
        "(cosign sign), or build on a base its publisher signed.",
    ),
    RuleCode.SIGNATURE_INVALID: (
        "A signature is there but does not verify.",
        "Signed by another key, altered after signing, signed for another image's digest, "
        "outside the key's notBefore/notAfter window, or the wrong keyless identity: re-sign "
        "the image with a listed authority.",
    ),
    RuleCode.ATTESTATION_MISSING: (
        "A required attestation (by predicate type) is missing or not signed by its authorities.",
        "Attest the image (cosign attest --type, or your CI's provenance) with one of the "
        "authorities spec.trust.attestations names.",
    ),
    RuleCode.SCAN_MISSING: (
        "No vulnerability scan is attached to the image.",
        "Scan the image and attach the result: trivy image --format cosign-vuln, then cosign "
        "attest --type vuln, or push Trivy's JSON report as a referrer of the image.",
    ),
    RuleCode.SCAN_STALE: (
        "The newest scan of the image is older than the policy's evidence.maxScanAge.",
        "Rescan the image and attach the new result; scanners learn of new vulnerabilities daily.",
    ),
    RuleCode.FIXABLE_VULNERABILITIES: (
        "The image's scan lists fixable vulnerabilities of a severity the policy denies.",
        "When they sit in the base's layers, rebuild on the base's current image (the message "
        "says whether its scan is clean); when they sit in the image's own layers, update the "
        "package named.",
    ),
}


def _rule(code: str) -> dict[str, Any]:
    short, help_text = RULE_HELP.get(code, (f"baseguard rule {code}.", f"See the message of rule {code}."))
    return {
        "id": code,
        "name": "".join(part.capitalize() for part in code.split("-")),
        "shortDescription": {"text": short},
        "fullDescription": {"text": help_text},
        "help": {"text": help_text},
        "defaultConfiguration": {"level": "error"},
    }


def _line(path: str, lines: Mapping[tuple[str, int | None, str], int], key: tuple[str, int | None, str]) -> int | None:
    if path.startswith("line:"):  # a Dockerfile FROM
        return int(path.removeprefix("line:"))
    return lines.get(key)


def artifact_uri(source: str) -> str:
    """A file as SARIF wants it: a relative URI reference (as given), or ``file://`` when absolute."""
    if os.path.isabs(source):
        return Path(source).as_uri()
    return quote(source.replace(os.sep, "/"))


def _object_name(wr: WorkloadResult) -> str:
    wl = wr.workload
    if wl.kind == "Dockerfile":
        return wl.source
    return "/".join(p for p in (wl.kind, wl.namespace, wl.name) if p)


def check_sarif(
    results: Sequence[WorkloadResult],
    *,
    lines: Mapping[tuple[str, int | None, str], int],
    not_evaluated_note: str | None = None,
) -> dict[str, Any]:
    """The SARIF log of one ``check`` run.

    ``lines`` maps ``(file, document index, JSON Pointer of the image)`` to the
    image's line; a Dockerfile image carries its ``FROM`` line in its path.
    ``not_evaluated_note`` (rules ``--offline`` could not judge) goes into
    the invocation's notifications, where a reader of the run finds it.
    """
    rule_ids = list(dict.fromkeys(code.value for code in RuleCode))
    out: list[dict[str, Any]] = []
    for wr in results:
        for image, result in zip(wr.workload.images, wr.results, strict=True):
            if not result.violations:
                continue
            line = _line(image.path, lines, (wr.workload.source, wr.workload.document, image.path))
            region = {"startLine": line} if line else None
            physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(wr.workload.source)}}
            if region:
                physical["region"] = region
            where = _object_name(wr) + (f" container {image.container}" if image.container else "")
            # The same finding from several policies (six EOL lists, one registry outage) is one
            # alert, naming them all, at the most severe action: as the text output says it.
            groups: dict[tuple[str, str, str | None], list[Violation]] = {}
            for v in result.violations:
                groups.setdefault((v.rule.value, v.message, v.waived), []).append(v)
            for (rule, message, waived), found in groups.items():
                if rule not in rule_ids:
                    rule_ids.append(rule)
                action = most_severe(v.action for v in found)
                item: dict[str, Any] = {
                    "ruleId": rule,
                    "ruleIndex": rule_ids.index(rule),
                    "level": _LEVELS[action],
                    "message": {"text": f"{where}: {message}"},
                    "locations": [
                        {
                            "physicalLocation": physical,
                            "logicalLocations": [{"fullyQualifiedName": where, "kind": "resource"}],
                        }
                    ],
                    "properties": {
                        "policies": [v.policy for v in found],
                        "action": action.value,
                        "image": image.image,
                    },
                }
                if waived:
                    item["suppressions"] = [{"kind": "external", "justification": waived}]
                signers = signed_by(result.facts.trust)
                if signers:  # who did vouch (spec.trust): a base signed while the image is not
                    item["properties"]["signedBy"] = {
                        f"{name}@{digest}": who for (name, digest), who in signers.items()
                    }
                out.append(item)
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if not_evaluated_note:
        invocation["toolExecutionNotifications"] = [
            {"level": "note", "message": {"text": not_evaluated_note}}
        ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "baseguard",
                        "version": __version__,
                        "rules": [_rule(code) for code in rule_ids],
                    }
                },
                "invocations": [invocation],
                "results": out,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
