"""The admission decision: review → workloads → :class:`~controller.assess.Assessor` → answer.

No HTTP here: :mod:`controller.webhook.app` reads the request, parses it into a
:class:`~controller.webhook.review.Review` and calls a :class:`Reviewer`;
:class:`Admission` is the one implementation. The Assessor is the only place a
verdict is made (the same path as ``baseguard check`` and the audit), so the
webhook and the CLI cannot disagree; this module only chooses what to judge,
under which budget, and how to say the result.

Decisions worth knowing:

* **/mutate never denies.** Denying is /validate's job; a mutating webhook that
  also denied would make the outcome depend on webhook order and report the
  same problem twice. /mutate answers ``allowed: true`` always, with a patch
  when it has one; when anything goes wrong it answers with no patch.
* **A bug answers like ``failurePolicy: Fail``, but readably.** An unexpected
  exception while judging is logged with its traceback, and /validate answers
  ``allowed: false`` with ``status.code: 500`` and a message pointing at the log
  — when at least one Enforce policy is in force (those are the ones a silent
  allow would break). With only Warn/Audit policies it allows, with a warning.
  It is never an HTTP 500: the apiserver would report "failed calling webhook"
  without our message.
* **Not loaded yet** (the operator's first listing is not done): /validate
  refuses with 503, /mutate allows without a patch. ``/readyz`` keeps the
  apiserver away in that state; this covers the race.
* **dryRun** requests get exactly the answer a real one would (that is the
  point of a dry run) and cause no side effect: baseguard writes nothing to the
  cluster from the webhook anyway, and violations of a dry run are left out of
  ``baseguard_admission_violations_total`` so the figures count what was
  really admitted. The request counter and latency still count them: they
  measure the webhook's load. The decision log line says ``dry_run: true``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from controller.policy.model import Mode, most_severe
from controller.policy.store import PolicyStore, Snapshot
from controller.webhook import review as rv
from controller.webhook.review import Finding, Review

if TYPE_CHECKING:
    from controller.assess import Assessor, WorkloadResult
    from controller.webhook.metrics import Metrics

log = logging.getLogger("baseguard.webhook")

ERROR = "error"  # the verdict label of an answer given because of an internal failure
NOT_READY = "not-ready"


class Endpoint(StrEnum):
    VALIDATE = "validate"
    MUTATE = "mutate"


class Reviewer(Protocol):
    """What the HTTP transport calls: a parsed review in, an AdmissionReview dict out.

    ``budget`` is the seconds the answer may take from ``started``
    (:func:`time.perf_counter`), set by the transport from the apiserver's
    ``?timeout=``. Implementations never raise.
    """

    async def __call__(
        self, review: Review, *, endpoint: Endpoint, budget: float, started: float
    ) -> dict[str, Any]: ...


NamespaceLabels = Callable[[str], Awaitable[Mapping[str, str] | None]]
"""Looks up a namespace's labels (the operator's informer); ``None``: unknown."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Admission:
    """Judges admission reviews with the policies in ``store`` through ``assessor``."""

    def __init__(
        self,
        *,
        store: PolicyStore,
        assessor: Assessor,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        namespace_labels: NamespaceLabels | None = None,
    ) -> None:
        self.store = store
        self.assessor = assessor
        self.metrics = metrics
        self.clock = clock
        self.namespace_labels = namespace_labels

    async def __call__(
        self, review: Review, *, endpoint: Endpoint, budget: float, started: float | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter() if started is None else started
        snapshot = self.store.snapshot  # one snapshot for the whole review
        found: list[Finding] = []
        patch: list[dict[str, Any]] = []
        try:
            if not snapshot.loaded:
                body, verdict = self._not_ready(review, endpoint)
            elif endpoint is Endpoint.VALIDATE:
                body, verdict, found = await self._validate(review, snapshot, budget, started)
            else:
                body, verdict, patch = await self._mutate(review, snapshot, budget, started)
        except Exception:
            log.exception(
                "internal error while judging a review",
                extra={
                    "fields": {"uid": review.uid, "kind": review.kind, "endpoint": endpoint.value}
                },
            )
            body, verdict = self._failed(review, snapshot, endpoint), ERROR
        elapsed = time.perf_counter() - started
        self._record(review, endpoint, verdict, found, patch, elapsed)
        return body

    # ---- the two endpoints

    async def _assess(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> list[WorkloadResult]:
        workloads = rv.workloads_of(review)
        if not snapshot.policies or not any(w.images for w in workloads):
            return []
        labels: dict[str, Mapping[str, str]] = {}
        if self.namespace_labels is not None and review.namespace:
            found = await self.namespace_labels(review.namespace)
            if found is not None:
                labels[review.namespace] = found
        left = max(budget - (time.perf_counter() - started), 0.0)
        return await self.assessor.assess(
            workloads, snapshot.policies, now=self.clock(), namespace_labels=labels, budget=left
        )

    async def _validate(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> tuple[dict[str, Any], str, list[Finding]]:
        results = await self._assess(review, snapshot, budget, started)
        offline = self.assessor.resolver is None
        body, verdict, found = rv.validation_response(review, results, offline=offline)
        return body, verdict.value, found

    async def _mutate(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
        results = await self._assess(review, snapshot, budget, started)
        by_key = {p.key: p for p in snapshot.policies}
        patch = rv.pin_operations(results, by_key) + rv.digest_annotation_operations(
            review, results
        )
        verdict = most_severe(r.verdict for r in results).value
        return rv.build_response(review.uid, allowed=True, patch=patch), verdict, patch

    # ---- answers when judging was not possible

    def _not_ready(self, review: Review, endpoint: Endpoint) -> tuple[dict[str, Any], str]:
        if endpoint is Endpoint.MUTATE:
            return rv.build_response(review.uid, allowed=True), NOT_READY
        return (
            rv.build_response(
                review.uid,
                allowed=False,
                code=503,
                reason="ServiceUnavailable",
                message="baseguard has not loaded its policies yet; retry in a moment",
            ),
            NOT_READY,
        )

    def _failed(self, review: Review, snapshot: Snapshot, endpoint: Endpoint) -> dict[str, Any]:
        if endpoint is Endpoint.MUTATE:
            return rv.build_response(review.uid, allowed=True)
        text = f"baseguard could not check this object (internal error; see its log for uid {review.uid})"
        if any(p.mode is Mode.ENFORCE for p in snapshot.policies):
            return rv.build_response(
                review.uid,
                allowed=False,
                code=500,
                reason="InternalError",
                message=f"{text}; refused because Enforce policies are in force",
            )
        return rv.build_response(review.uid, allowed=True, warnings=[rv.clip(text, rv.WARNING_MAX)])

    # ---- log and metrics

    def _record(
        self,
        review: Review,
        endpoint: Endpoint,
        verdict: str,
        found: Sequence[Finding],
        patch: Sequence[Mapping[str, Any]],
        elapsed: float,
    ) -> None:
        metrics = self.metrics
        if metrics is not None:
            # the kind label is bounded: anyone who can reach the port can send any kind
            kind = review.kind if review.kind in rv.WORKLOAD_GROUPS else "other"
            metrics.answered(endpoint.value, kind, verdict, elapsed)
            if not review.dry_run:
                for f in found:
                    v = f.violation
                    metrics.violations.labels(v.policy, v.rule.value, v.action.value).inc()
            for op in patch:
                kind = "annotate" if str(op.get("path", "")).startswith("/metadata") else "pin"
                metrics.patches.labels(kind).inc()
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "uid": review.uid,
            "endpoint": endpoint.value,
            "kind": review.kind,
            "namespace": review.namespace,
            "name": review.name or _generated_name(review),
            "operation": review.operation,
            "verdict": verdict,
            "rules": sorted({f"{f.violation.policy}/{f.violation.rule.value}" for f in found}),
            "duration_ms": round(elapsed * 1000, 3),
            "dry_run": review.dry_run,
        }
        if review.sub_resource:
            fields["sub_resource"] = review.sub_resource
        if review.user:
            fields["user"] = review.user
        if found:
            fields["violations"] = [
                {
                    "where": f.where,
                    "image": f.image.image,
                    "policy": f.violation.policy,
                    "rule": f.violation.rule.value,
                    "action": f.violation.action.value,
                    "message": f.violation.message,
                    **({"waived": f.violation.waived} if f.violation.waived else {}),
                }
                for f in found
            ]
        if patch:
            fields["patch"] = list(patch)
        log.info("decision", extra={"fields": fields})


def _generated_name(review: Review) -> str | None:
    meta = (review.object or {}).get("metadata")
    if isinstance(meta, Mapping):
        name = meta.get("name") or meta.get("generateName")
        if isinstance(name, str) and name:
            return name
    return None
