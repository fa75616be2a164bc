"""JSONPatches (RFC 6902) that /mutate answers with: pin to a digest, or record the checked digests.

PURE: the patch operations are built from the assessment; the envelope
(base64, ``patchType``) is :func:`controller.webhook.review.build_response`'s.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from controller.policy.model import CompiledPolicy
from controller.policy.verdict import ImageResult
from controller.workloads import pointer

if TYPE_CHECKING:
    from controller.assess import WorkloadResult
    from controller.webhook.review import Review

#: The annotation that records, on a Pod, which digest each image was checked at.
CHECKED_DIGESTS = "baseguard.io/checked-digests"


def encode_patch(operations: Sequence[Mapping[str, Any]]) -> str:
    """base64 of the JSONPatch, as ``response.patch`` wants it."""
    return base64.b64encode(orjson.dumps(list(operations))).decode()


def checked_digest(result: ImageResult) -> str | None:
    """The digest the lineage was looked up at (index or manifest), if the lookup succeeded."""
    lineage = result.facts.lineage
    if lineage is None or lineage.failure is not None:
        return None
    return lineage.digest


def pin_operations(
    results: Iterable[WorkloadResult], policies: Mapping[str, CompiledPolicy]
) -> list[dict[str, Any]]:
    """``replace`` each image that a ``pinning.mutateToDigest`` policy applies to with
    ``registry/repository:tag@digest`` — the digest whose lineage was judged, so what
    runs is what was admitted.

    The normalized name is written (``python:3.12`` →
    ``docker.io/library/python:3.12@sha256:…``), not the user's short form: the
    digest was resolved on that registry, and a runtime configured with
    unqualified-search registries (CRI-O, Podman) could otherwise pull the
    short name from somewhere else. Images that already carry a digest, or
    whose lookup failed, are left alone.
    """
    ops: list[dict[str, Any]] = []
    for result in results:
        for item, image_result in zip(result.workload.images, result.results, strict=True):
            ref = image_result.facts.reference
            digest = checked_digest(image_result)
            if ref is None or ref.digest is not None or digest is None:
                continue
            wants = any(
                (p := policies.get(key)) is not None and p.pinning.mutate_to_digest
                for key in image_result.policies
            )
            if wants:
                value = f"{ref.name}:{ref.effective_tag}@{digest}"
                ops.append({"op": "replace", "path": item.path, "value": value})
    return ops


def digest_annotation_operations(
    review: Review, results: Iterable[WorkloadResult]
) -> list[dict[str, Any]]:
    """Record ``{container: digest}`` in the Pod annotation :data:`CHECKED_DIGESTS`.

    The safe default when no policy opts into rewriting images:
    only for a Pod itself (not its subresources), since annotating a
    Deployment's template would show up as drift to a GitOps tool and loop.
    Merged with what the annotation already holds, so an UPDATE that checks
    one changed image keeps the others. Image volumes are keyed ``volume:<name>``.
    """
    if review.kind != "Pod" or review.sub_resource or review.object is None:
        return []
    checked: dict[str, str] = {}
    for result in results:
        for item, image_result in zip(result.workload.images, result.results, strict=True):
            digest = checked_digest(image_result)
            if digest is None:
                continue
            name = item.container or item.path
            checked[f"volume:{name}" if item.section == "volumes" else name] = digest
    if not checked:
        return []
    raw_meta = review.object.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    annotations = meta.get("annotations")
    merged: dict[str, str] = {}
    if isinstance(annotations, Mapping):
        try:
            previous = json.loads(annotations.get(CHECKED_DIGESTS) or "{}")
        except (TypeError, json.JSONDecodeError):
            previous = {}
        if isinstance(previous, dict):
            merged.update({k: v for k, v in previous.items() if isinstance(v, str)})
    before = dict(merged)
    merged.update(checked)
    if merged == before:
        return []
    value = json.dumps(dict(sorted(merged.items())), separators=(",", ":"))
    if not isinstance(raw_meta, Mapping):
        return [
            {"op": "add", "path": "/metadata", "value": {"annotations": {CHECKED_DIGESTS: value}}}
        ]
    if not isinstance(annotations, Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": {CHECKED_DIGESTS: value}}]
    return [
        {"op": "add", "path": pointer("metadata", "annotations", CHECKED_DIGESTS), "value": value}
    ]

