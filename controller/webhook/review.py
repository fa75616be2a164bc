"""AdmissionReview ``admission.k8s.io/v1``: parse the request, shape the response.

PURE: no I/O, no clock, no aiohttp. The transport (:mod:`controller.webhook.app`)
hands in bytes and serialises the dict this module builds; the decision comes
from :mod:`controller.assess`, never from here.

What the apiserver accepts in a response, and what we send:

* ``status`` on a denial: ``{code: 403, reason: Forbidden, message}``. kubectl
  prints ``admission webhook "…" denied the request: <message>``; the message
  names container, image, policy, rule and the fix, one line per problem.
* ``warnings``: the apiserver passes them to the client as ``Warning`` headers.
  Kubernetes asks for at most 120 characters each and truncates the lot past
  4,096 bytes, so we keep each under 120 (ASCII ``...`` on a cut, since a header
  is not the place for multi-byte characters) and the total under 2 KiB, then a
  last ``... and N more``. The full text is in the decision log.
* ``auditAnnotations``: the apiserver prefixes each key with the webhook's name
  and a ``/`` (``validate.baseguard.io/<key>``) and drops any pair whose result
  is not a valid qualified name. So a key is only the *name part*: no ``/``, at
  most 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends. A
  namespaced policy ``payments/legacy`` becomes ``payments.legacy``.
* ``patch``: base64 of a JSONPatch (RFC 6902), with ``patchType: JSONPatch``.

The parts live beside this envelope: findings in :mod:`controller.findings`
(shared with the CLI and the audit), their wording in :mod:`.messages`, the
patches in :mod:`.patches`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from controller.errors import BadReview, PolicyError
from controller.findings import Finding, findings, grouped_findings, not_evaluated
from controller.policy import model as policy_model
from controller.policy.model import Action
from controller.webhook.messages import (
    MESSAGE_LINE_MAX,
    WARNING_MAX,
    audit_annotations,
    clip,
    deny_message,
    warning_lines,
)
from controller.webhook.patches import encode_patch
from controller.workloads import Workload, extract, pod_spec_images

if TYPE_CHECKING:
    from controller.assess import WorkloadResult

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

#: The workload kinds the webhook judges and the API group each is served from. A kind is judged
#: only from its own group, so a CRD that happens to be called ``Job`` is not
#: mistaken for a ``batch/v1`` Job.
WORKLOAD_GROUPS: Mapping[str, str] = {
    "Pod": "",
    "ReplicationController": "",
    "PodTemplate": "",
    "Deployment": "apps",
    "ReplicaSet": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
}

EPHEMERAL_SUBRESOURCE = "ephemeralcontainers"


# --------------------------------------------------------------------------- request


@dataclass(slots=True)
class Review:
    """The part of an ``AdmissionReview.request`` baseguard needs.

    Treat it as read-only. It is not ``frozen`` because a frozen dataclass
    pays a ``object.__setattr__`` call per field, and one is built per request.
    """

    uid: str
    kind: str
    group: str = ""
    version: str = ""
    resource: str = ""
    sub_resource: str = ""
    operation: str = "CREATE"
    namespace: str | None = None
    name: str | None = None
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    dry_run: bool = False
    user: str | None = None

    @property
    def title(self) -> str:
        """``Deployment prod/web`` for messages and logs."""
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name or '<unnamed>'}"


def _field(container: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):  # parsed JSON: a dict, and much cheaper to test than Mapping
        raise BadReview(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _text(container: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = container.get(key)
    if value is None or value == "":
        if required:
            raise BadReview(f"{where}.{key} is missing")
        return ""
    if not isinstance(value, str):
        raise BadReview(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def loads(body: bytes | str) -> Any:
    """JSON text → Python, with orjson (half of :func:`json.loads`'s work on a review).

    What orjson refuses (``NaN``, ``Infinity``) is handed to :mod:`json`, so the
    same bodies are accepted as before, and a refusal reads the same. One
    difference: orjson reads an integer past 64 bits as a float; no field of
    a Kubernetes object holds one.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadReview(f"the body is not JSON: {exc}") from None


def dumps(data: Any) -> bytes:
    """Python → compact JSON bytes (UTF-8), as every answer is sent.

    A string orjson refuses (a lone surrogate from a review's ``\\ud800``, echoed
    back in a uid) goes out through :mod:`json` as its escape, which the
    apiserver reads.
    """
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def parse_review(body: bytes | str) -> Review:
    """Parse an AdmissionReview v1; :class:`BadReview` says what is wrong (HTTP 400)."""
    doc = loads(body)
    if not isinstance(doc, dict):
        raise BadReview(f"an AdmissionReview is a JSON object, not {type(doc).__name__}")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        raise BadReview(
            f"apiVersion must be {API_VERSION}, not {api_version!r}: "
            "set admissionReviewVersions: [v1] in the webhook configuration"
        )
    if kind != KIND:
        raise BadReview(f"kind must be {KIND}, not {kind!r}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request object")
    review = _well_formed(request)
    return review if review is not None else _checked(request)


def _well_formed(request: dict[str, Any]) -> Review | None:
    """The request as a :class:`Review` when every field has its usual type; else ``None``.

    Every review goes through here, so the usual shape is tested with plain
    type checks and no call per field; anything unusual (a missing or
    mistyped field) returns ``None`` and :func:`_checked` says what is wrong.
    """
    get = request.get
    uid, gvk, resource, user = get("uid"), get("kind"), get("resource"), get("userInfo")
    operation, dry_run = get("operation"), get("dryRun", False)
    if (
        type(uid) is not str
        or not uid
        or type(gvk) is not dict
        or type(operation) is not str
        or not operation
        or (dry_run is not None and type(dry_run) is not bool)
    ):
        return None
    kind = gvk.get("kind")
    if type(kind) is not str or not kind:
        return None
    if resource is None:
        res = None
    elif type(resource) is dict:
        res = resource.get("resource")
    else:
        return None
    group, version = gvk.get("group"), gvk.get("version")
    sub, namespace, name = get("subResource"), get("namespace"), get("name")
    for text in (group, version, res, sub, namespace, name):
        if text is not None and type(text) is not str:
            return None
    obj, old = get("object"), get("oldObject")
    if (
        (obj is not None and type(obj) is not dict)
        or (old is not None and type(old) is not dict)
        or (user is not None and type(user) is not dict)
    ):
        return None
    username = user.get("username") if user is not None else None
    return Review(
        uid=uid,
        kind=kind,
        group=group or "",
        version=version or "",
        resource=res or "",
        sub_resource=sub or "",
        operation=operation,
        namespace=namespace or None,
        name=name or None,
        object=obj,
        old_object=old,
        dry_run=bool(dry_run),
        user=username if isinstance(username, str) else None,
    )


def _checked(request: dict[str, Any]) -> Review:
    """The request field by field, raising :class:`BadReview` at the first that is wrong."""
    uid = _text(request, "uid", "request", required=True)
    gvk = _field(request, "kind", "request") or {}
    resource = _field(request, "resource", "request") or {}
    user = _field(request, "userInfo", "request") or {}
    dry_run = request.get("dryRun", False)
    if dry_run is not None and not isinstance(dry_run, bool):
        raise BadReview("request.dryRun must be a boolean")
    return Review(
        uid=uid,
        kind=_text(gvk, "kind", "request.kind", required=True),
        group=_text(gvk, "group", "request.kind"),
        version=_text(gvk, "version", "request.kind"),
        resource=_text(resource, "resource", "request.resource"),
        sub_resource=_text(request, "subResource", "request"),
        operation=_text(request, "operation", "request", required=True),
        namespace=_text(request, "namespace", "request") or None,
        name=_text(request, "name", "request") or None,
        object=_field(request, "object", "request"),
        old_object=_field(request, "oldObject", "request"),
        dry_run=bool(dry_run),
        user=user.get("username") if isinstance(user.get("username"), str) else None,
    )


# --------------------------------------------------------------------------- what to judge


def is_workload(review: Review) -> bool:
    """A workload kind the webhook judges, from its own API group."""
    return WORKLOAD_GROUPS.get(review.kind) == review.group


def workloads_of(review: Review) -> list[Workload]:
    """The workload in the review, holding only the images this request can change.

    * CREATE: every image. DELETE and CONNECT: none.
    * UPDATE: only images whose (JSON pointer, image) pair is not in
      ``oldObject``, so an unrelated edit (a replica count, a label) of an old
      Deployment is not blocked by an image that was admitted long ago, or
      before the policy existed. A changed or added image is judged.
    * ``pods/ephemeralcontainers``: only the ephemeral containers (``kubectl
      debug``), minus those already there. The body is a Pod (since 1.22);
      the older ``EphemeralContainers`` body is understood too.
    * any other subresource (``status``, ``scale``, ``binding`` …): none; it
      cannot change an image.

    A kind outside :data:`WORKLOAD_GROUPS` (or from another API group) yields nothing.
    """
    if review.operation not in ("CREATE", "UPDATE") or review.object is None:
        return []
    if not is_workload(review):
        return []
    ephemeral = review.sub_resource == EPHEMERAL_SUBRESOURCE and review.kind == "Pod"
    if review.sub_resource and not ephemeral:
        return []
    found = _extract(review, review.object)
    if not found:
        return []
    workload = found[0]
    images = workload.images
    if ephemeral:
        images = tuple(i for i in images if i.section == "ephemeralContainers")
    if review.operation == "UPDATE" and review.old_object is not None:
        before = {(i.path, i.image) for w in _extract(review, review.old_object) for i in w.images}
        images = tuple(i for i in images if (i.path, i.image) not in before)
    name = workload.name or _name(review)
    if images is workload.images and name == workload.name:
        return [workload]  # the common CREATE: nothing to change (and no copy to pay for)
    return [
        Workload(
            kind=workload.kind,
            name=name,
            namespace=workload.namespace,
            labels=workload.labels,
            images=images,
            source=workload.source,
            document=workload.document,
        )
    ]


def _extract(review: Review, obj: Mapping[str, Any]) -> list[Workload]:
    if obj.get("kind") == "EphemeralContainers":  # the pre-1.22 subresource body
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        name = meta.get("name")
        return [
            Workload(
                kind="Pod",
                name=name if isinstance(name, str) and name else review.name,
                namespace=review.namespace,
                images=tuple(pod_spec_images(obj, "")),
                source="admission",
            )
        ]
    if obj.get("kind") != review.kind:  # the apiserver sets it; trust the request, not the body
        obj = {**obj, "kind": review.kind}
    return extract(obj, source="admission", default_namespace=review.namespace)


def _name(review: Review) -> str | None:
    """Pods made by a controller have only ``generateName`` when admitted."""
    if review.name:
        return review.name
    meta = (review.object or {}).get("metadata")
    if isinstance(meta, Mapping):
        generate = meta.get("generateName")
        if isinstance(generate, str) and generate:
            return generate
    return None


# The metadata the judgement reads: namespace and labels (matching), annotations
# (the checked-digests annotation /mutate merges into). Name, uid, resourceVersion,
# timestamps and managedFields are left out, so the Pods of one ReplicaSet share a key.
_JUDGED_METADATA = ("namespace", "labels", "annotations")


def memo_key(review: Review) -> Hashable | None:
    """Everything :func:`workloads_of` and the mutation read from ``review``, as one hashable.

    Lets a webhook remember a judgement without extracting the workload again
    (the expensive part of a cached review): two reviews with one key yield
    the same workloads but for their names, which no rule reads. The object
    goes in whole (as orjson bytes, cheap to make and hash) but for the
    metadata nobody judges, so the key is a superset of what matters: a
    difference that changes nothing (an env var) costs a miss, never a wrong
    answer. ``None``: nothing worth remembering, or an object orjson cannot
    write (a caller's own object holding something that is not JSON).
    """
    if review.object is None or review.operation not in ("CREATE", "UPDATE"):
        return None
    old = review.old_object if review.operation == "UPDATE" else None
    try:
        return (
            review.kind,
            review.group,
            review.operation,
            review.sub_resource,
            review.namespace,
            _judged_bytes(review.object),
            None if old is None else _judged_bytes(old),
        )
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None


def _judged_bytes(obj: Mapping[str, Any]) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta = {k: meta[k] for k in _JUDGED_METADATA if k in meta}
    return orjson.dumps({**obj, "metadata": meta})


# --------------------------------------------------------------------------- the envelope


def build_response(
    uid: str,
    *,
    allowed: bool,
    code: int = 403,
    reason: str = "Forbidden",
    message: str = "",
    warnings: Sequence[str] = (),
    audit: Mapping[str, str] | None = None,
    patch: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The AdmissionReview the apiserver expects back, ``uid`` echoed."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "reason": reason, "message": message}
    if warnings:
        response["warnings"] = list(warnings)
    if audit:
        response["auditAnnotations"] = dict(audit)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(patch)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def validation_response(
    review: Review, results: Sequence[WorkloadResult], *, offline: bool = False
) -> tuple[dict[str, Any], Action, list[Finding]]:
    """Verdict → AdmissionReview: deny (403 + message), warnings, audit annotations.

    ``offline`` (``serve --offline``): the rules that needed the registry are
    named in one warning, so nobody mistakes "not checked" for "passed".
    Returns the review, the verdict and the findings (for the log and metrics).
    """
    found = findings(results)
    skipped = not_evaluated(results) if offline else []
    if not found and not skipped:  # the common answer, without the machinery
        return build_response(review.uid, allowed=True), Action.ALLOW, found
    verdict = Action.ALLOW
    for result in results:
        if result.verdict.severity > verdict.severity:
            verdict = result.verdict
    extra = [f"baseguard is offline: not evaluated: {', '.join(skipped)}"] if skipped else []
    denied = verdict is Action.DENY
    groups = grouped_findings(found)  # once: the denial and the warnings both say them
    body = build_response(
        review.uid,
        allowed=not denied,
        message=deny_message(groups, uid=review.uid) if denied else "",
        warnings=warning_lines(groups, extra=extra),
        audit=audit_annotations(found),
    )
    return body, verdict, found


# --------------------------------------------------------------------------- policy objects

#: At most this many field errors are listed when a policy object is refused.
POLICY_ERRORS_MAX = 50


#: baseguard's own kinds checked at the door: the two policy kinds and the exception kind.
CHECKED_KINDS = (*policy_model.POLICY_KINDS, policy_model.EXCEPTION_KIND)
#: Those of them that live in a namespace (the request names it when the body does not).
_NAMESPACED_KINDS = (policy_model.NAMESPACED_KIND, policy_model.EXCEPTION_KIND)


def is_policy(review: Review) -> bool:
    """A review of one of baseguard's own kinds (``baseguard.io/v1alpha1``): a policy or an
    exception, which the policy webhook checks before the apiserver stores it."""
    return (
        review.group == policy_model.GROUP
        and review.version == policy_model.VERSION
        and review.kind in CHECKED_KINDS
    )


def policy_document(review: Review) -> dict[str, Any]:
    """The part of a reviewed policy (or exception) object the compiler reads: identity and ``spec``.

    Server-side fields (``status``, ``managedFields``, ``resourceVersion`` …)
    are left out, so what is checked is what a policy file would hold. The
    request names the kind and, for a ``BaseImagePolicy`` or a
    ``BaseImagePolicyException``, the namespace when the body does not.
    """
    obj = review.object or {}
    raw_meta = obj.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    out_meta = {
        k: meta[k] for k in ("name", "generateName", "namespace") if meta.get(k) is not None
    }
    namespaced = review.kind in _NAMESPACED_KINDS
    if namespaced and not out_meta.get("namespace") and review.namespace:
        out_meta["namespace"] = review.namespace
    doc: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion") or policy_model.API_VERSION,
        "kind": obj.get("kind") or review.kind,
        "metadata": out_meta,
    }
    if "spec" in obj:
        doc["spec"] = obj["spec"]
    return doc


def policy_response(
    review: Review, check: Callable[[Mapping[str, Any]], Sequence[PolicyError]]
) -> tuple[dict[str, Any], Action, list[str]]:
    """Judge a policy object at the door: 403 with every field path and reason, or allow.

    So ``kubectl apply`` of a broken policy fails at once and says what to
    fix, instead of being stored and showing ``Ready=False`` later. ``check``
    is :func:`controller.policy.compile.check_policy` for a policy, and
    :func:`controller.policy.exceptions.check_exception` (as of the webhook's
    day) for an exception: a team's exception with a ``spec.until`` too far
    away or a bad image glob is refused when filed, not stored to waive
    nothing. Only CREATE and UPDATE
    of the object itself are judged, never a subresource (``/status`` is the
    operator writing). An UPDATE that leaves an invalid ``spec`` exactly as it
    was is allowed with a warning: labels, annotations and finalizers of a
    policy that an upgrade made invalid must stay editable.

    Returns the answer, its verdict and the error lines (for the log).
    """
    if review.operation not in ("CREATE", "UPDATE") or review.sub_resource or review.object is None:
        return build_response(review.uid, allowed=True), Action.ALLOW, []
    errors = check(policy_document(review))
    if not errors:
        return build_response(review.uid, allowed=True), Action.ALLOW, []
    lines = [f"{e.path}: {e.reason}" if e.path else e.reason for e in errors]
    name = review.name or policy_document(review)["metadata"].get("name") or "<unnamed>"
    old = review.old_object
    if (
        review.operation == "UPDATE"
        and old is not None
        and old.get("spec") == review.object.get("spec")
    ):
        noun = "exception" if review.kind == policy_model.EXCEPTION_KIND else "policy"
        note = f"{noun} {name} is still invalid: {lines[0]}"  # the rest: the decision log
        return (
            build_response(review.uid, allowed=True, warnings=[clip(note, WARNING_MAX)]),
            Action.WARN,
            lines,
        )
    shown = [clip(line, MESSAGE_LINE_MAX, ascii_only=False) for line in lines[:POLICY_ERRORS_MAX]]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    noun = "error" if len(lines) == 1 else "errors"
    message = f"{review.kind} {name} is invalid ({len(lines)} {noun}):\n" + "\n".join(shown)
    return build_response(review.uid, allowed=False, message=message), Action.DENY, lines


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``metav1.Status`` for a non-200 answer: the apiserver's client shows its message."""
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
