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
* **Policy objects at the door.** A review of a ``ClusterBaseImagePolicy`` or
  ``BaseImagePolicy`` is checked with the compiler
  (:func:`controller.policy.compile.check_policy`), a
  ``BaseImagePolicyException`` with
  :func:`controller.policy.exceptions.check_exception`: /validate refuses an
  invalid one (403) listing every field path and reason; /mutate leaves
  them alone.
* **Registry credentials per review.** ``credentials`` (the operator: the
  pod's ``imagePullSecrets`` and its service account's) is asked for each
  workload review; its answer binds the assessor to that credential set for
  this review only (:func:`controller.memo.bind_credentials`).
  It gets a slice of the budget; if it fails or runs late, the lookups go
  out with the configured credentials only.
* **Memory.** When the assessor remembers (a
  :class:`~controller.memo.MemoAssessor`, as ``serve`` and ``run``
  use), a review whose judged bytes were seen within its TTL is answered
  without extracting its workload again (:func:`.review.memo_key`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from controller import logs
from controller.errors import PolicyError
from controller.findings import Finding
from controller.memo import MemoAssessor, bind_credentials
from controller.policy.model import EXCEPTION_KIND, POLICY_KINDS, Action, Mode, most_severe
from controller.policy.store import PolicyStore, Snapshot
from controller.webhook import messages, patches
from controller.webhook import review as rv
from controller.webhook.review import Review
from controller.workloads import pod_spec

if TYPE_CHECKING:
    from controller.assess import Assessor, WorkloadResult
    from controller.registry.config import Credentials
    from controller.webhook.metrics import Metrics

#: Reviews naming more images than this are answered from a worker thread (a
#: typical pod has a handful; the hand-off costs more than it saves below this).
ANSWER_IN_THREAD_ABOVE = 256

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

CredentialsLookup = Callable[[str | None, Mapping[str, Any]], Awaitable[Mapping[str, "Credentials"]]]
"""Registry credentials for a pod spec in a namespace, host → credentials (``{}``: none beyond
the configured). It takes plain data, not a webhook object, so the operator can offer it
without importing the webhook.

The operator's is the reviewed pod's ``imagePullSecrets`` and its service
account's; the webhook itself never talks to Kubernetes."""

#: The share of a review's budget the credentials lookup may take, and its bounds in seconds.
CREDENTIALS_SHARE, CREDENTIALS_MIN, CREDENTIALS_MAX = 0.25, 0.05, 1.0


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
        credentials: CredentialsLookup | None = None,
    ) -> None:
        self.store = store
        self.assessor = assessor
        self.metrics = metrics
        self.clock = clock
        self.namespace_labels = namespace_labels
        self.credentials = credentials

    async def __call__(
        self, review: Review, *, endpoint: Endpoint, budget: float, started: float | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter() if started is None else started
        snapshot = self.store.snapshot  # one snapshot for the whole review
        found: list[Finding] = []
        patch: list[dict[str, Any]] = []
        errors: list[str] = []
        try:
            if not snapshot.loaded:
                body, verdict = self._not_ready(review, endpoint)
            elif rv.is_policy(review):
                body, verdict, errors = self._policy(review, endpoint)
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
        self._record(review, endpoint, verdict, found, patch, elapsed, errors)
        return body

    # ---- the two endpoints

    async def _assess(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> list[WorkloadResult]:
        policies = snapshot.policies
        if not policies or review.object is None or not rv.is_workload(review):
            return []
        assessor = self.assessor
        if self.credentials is not None and review.operation in ("CREATE", "UPDATE"):
            creds = await self._credentials(review, budget, started)
            if creds:
                assessor = bind_credentials(assessor, creds)
        labels: dict[str, Mapping[str, str]] = {}
        if self.namespace_labels is not None and review.namespace:
            found = await self.namespace_labels(review.namespace)
            if found is not None:
                labels[review.namespace] = found
        now = self.clock()

        async def judge() -> list[WorkloadResult]:
            workloads = rv.workloads_of(review)
            if not any(w.images for w in workloads):
                return []
            left = max(budget - (time.perf_counter() - started), 0.0)
            return await assessor.assess(
                workloads, policies, now=now, namespace_labels=labels, budget=left
            )

        if not isinstance(assessor, MemoAssessor) or (reviewed := rv.memo_key(review)) is None:
            return await judge()
        ns_labels = labels.get(review.namespace or "")
        key = (
            reviewed,
            None if ns_labels is None else tuple(sorted(ns_labels.items())),
            now.date(),
        )
        return await assessor.judged(key, policies, judge)

    async def _credentials(
        self, review: Review, budget: float, started: float
    ) -> Mapping[str, Credentials]:
        """The review's registry credentials, within a slice of the budget; ``{}`` when they fail."""
        assert self.credentials is not None
        left = budget - (time.perf_counter() - started)
        limit = min(max(left * CREDENTIALS_SHARE, CREDENTIALS_MIN), CREDENTIALS_MAX)
        try:
            spec = pod_spec(review.object, review.kind)
            return await asyncio.wait_for(self.credentials(review.namespace, spec), timeout=limit)
        except TimeoutError:
            problem = f"not found within {limit:.2f}s"
        except Exception as exc:  # a broken secret must not break admission
            problem = f"lookup failed: {type(exc).__name__}"
        log.warning(
            "registry credentials unavailable; looking images up without them",
            extra={
                "fields": {"uid": review.uid, "namespace": review.namespace, "problem": problem}
            },
        )
        return {}

    async def _validate(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> tuple[dict[str, Any], str, list[Finding]]:
        results = await self._assess(review, snapshot, budget, started)
        offline = self.assessor.resolver is None
        if sum(len(r.workload.images) for r in results) > ANSWER_IN_THREAD_ABOVE:
            # Grouping and wording the findings of thousands of images is one step of a
            # good part of a second; in a worker thread the interpreter hands the loop
            # its turn every few milliseconds, so other reviews and /healthz go on.
            body, verdict, found = await asyncio.to_thread(
                rv.validation_response, review, results, offline=offline
            )
        else:
            body, verdict, found = rv.validation_response(review, results, offline=offline)
        return body, verdict.value, found

    async def _mutate(
        self, review: Review, snapshot: Snapshot, budget: float, started: float
    ) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
        results = await self._assess(review, snapshot, budget, started)
        by_key = {p.key: p for p in snapshot.policies}
        patch = patches.pin_operations(results, by_key) + patches.digest_annotation_operations(
            review, results
        )
        verdict = most_severe(r.verdict for r in results).value
        return rv.build_response(review.uid, allowed=True, patch=patch), verdict, patch

    def _policy(self, review: Review, endpoint: Endpoint) -> tuple[dict[str, Any], str, list[str]]:
        """A review of a policy or exception object: /validate checks it compiles; /mutate
        leaves it alone. An exception is checked as of the webhook's clock (its ``until``
        may be at most 90 days from today), the day the operator will read it."""
        if endpoint is Endpoint.MUTATE:
            return rv.build_response(review.uid, allowed=True), Action.ALLOW.value, []
        check: Callable[[Mapping[str, Any]], Sequence[PolicyError]]
        if review.kind == EXCEPTION_KIND:
            check = functools.partial(self._exception_errors, today=self.clock().date())
        else:
            from controller.policy.compile import check_policy  # the schema loads on first use only

            check = check_policy
        body, verdict, errors = rv.policy_response(review, check)
        return body, verdict.value, errors

    def _exception_errors(self, doc: Mapping[str, Any], *, today: dt.date) -> list[PolicyError]:
        """An exception's field errors; when it has none, whether its namespace has room.

        A namespace holds at most 64 exceptions in force (each is tried for every image of
        every review there); one more is refused when filed rather than stored to waive
        nothing. Counted in this replica's store: only that namespace's own exceptions,
        so no other tenant's count can refuse it.
        """
        from controller.policy.exceptions import compile_exception_checked  # schema on first use

        compiled, errors = compile_exception_checked(doc, today=today)
        if compiled is None:
            return errors
        refused = self.store.exception_refusal(compiled)
        return [] if refused is None else [refused]

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
        warning = messages.clip(text, messages.WARNING_MAX)
        return rv.build_response(review.uid, allowed=True, warnings=[warning])

    # ---- log and metrics

    def _record(
        self,
        review: Review,
        endpoint: Endpoint,
        verdict: str,
        found: Sequence[Finding],
        patch: Sequence[Mapping[str, Any]],
        elapsed: float,
        errors: Sequence[str] = (),
    ) -> None:
        metrics = self.metrics
        if metrics is not None:
            # the kind label is bounded: anyone who can reach the port can send any kind
            kind = review.kind if review.kind in _KIND_LABELS else "other"
            metrics.answered(endpoint.value, kind, verdict, elapsed)
            if not review.dry_run:
                # One increment per distinct label set: a pod of thousands of images
                # costs a count, not thousands of counter updates on the loop.
                counts = Counter(
                    (f.violation.policy, f.violation.rule.value, f.violation.action.value)
                    for f in found
                )
                for (policy, rule, action), n in counts.items():
                    metrics.violated(policy, rule, action, n)
            for op in patch:
                kind = "annotate" if str(op.get("path", "")).startswith("/metadata") else "pin"
                metrics.patched(kind)
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
            "rules": sorted({f"{f.violation.policy}/{f.violation.rule.value}" for f in found})
            if found
            else [],
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
        if errors:
            fields["errors"] = list(errors)
        if patch:
            fields["patch"] = list(patch)
        logs.info(log, "decision", fields)


#: Kinds the metrics name as themselves; any other is ``other``.
_KIND_LABELS = frozenset({*rv.WORKLOAD_GROUPS, *POLICY_KINDS, EXCEPTION_KIND})


def _generated_name(review: Review) -> str | None:
    meta = (review.object or {}).get("metadata")
    if isinstance(meta, Mapping):
        name = meta.get("name") or meta.get("generateName")
        if isinstance(name, str) and name:
            return name
    return None
