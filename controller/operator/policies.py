"""Policy custom resources → the policy store the webhook reads.

PURE (no API calls): the kopf handlers in :mod:`.handlers` hand bodies in,
this module compiles them into the :class:`~controller.policy.store.PolicyStore`
the webhook reads, and remembers what it saw of each object (its generation
and status) so the leader can tell which status needs writing.

A policy whose new generation does not compile keeps its last good
generation in force (the store's rule: an Enforce policy must not vanish
because of a typo) and is reported ``Ready=False`` with the field path.

``BaseImagePolicyException`` objects go through the same book (a record with
``exception`` instead of ``policy``) into the same store, which files each
under the policy it names for its own namespace only. One that does not
compile waives nothing (the stricter state) and is ``Ready=False``, while
every other exception and policy keeps working.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controller.errors import InputError, PolicyError
from controller.operator.kube import KubeLike
from controller.policy.compile import DEFAULT_NAMESPACE, check_policy, compile_policy
from controller.policy.exceptions import CompiledException, attach, compile_exception_checked
from controller.policy.model import (
    API_VERSION,
    CLUSTER_KIND,
    EXCEPTION_KIND,
    GROUP,
    NAMESPACED_KIND,
    VERSION,
    CompiledPolicy,
)
from controller.policy.store import PolicyStore, policy_key


@dataclass(frozen=True)
class PolicyKind:
    kind: str
    plural: str
    namespaced: bool

    def path(
        self, namespace: str | None = None, name: str | None = None, *, status: bool = False
    ) -> str:
        """The REST path of the collection, or of one object (``/status`` with ``status=True``)."""
        base = f"/apis/{GROUP}/{VERSION}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}" + ("/status" if status else "")
        return base


KINDS: Mapping[str, PolicyKind] = {
    CLUSTER_KIND: PolicyKind(CLUSTER_KIND, "clusterbaseimagepolicies", namespaced=False),
    NAMESPACED_KIND: PolicyKind(NAMESPACED_KIND, "baseimagepolicies", namespaced=True),
    EXCEPTION_KIND: PolicyKind(EXCEPTION_KIND, "baseimagepolicyexceptions", namespaced=True),
}
#: The kinds that live in a namespace (and default to ``default`` when a body names none).
_NAMESPACED = frozenset(k.kind for k in KINDS.values() if k.namespaced)


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class PolicyRecord:
    """One policy object as last seen: its identity, what it compiled to, its status."""

    kind: str
    name: str
    namespace: str | None
    uid: str
    generation: int
    policy: CompiledPolicy | None
    errors: tuple[PolicyError, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    #: For a ``BaseImagePolicyException``: what it compiled to (``policy`` is then ``None``).
    exception: CompiledException | None = None

    @property
    def key(self) -> str:
        return policy_key(self.kind, self.namespace, self.name)

    @property
    def is_exception(self) -> bool:
        return self.kind == EXCEPTION_KIND

    @property
    def compiled(self) -> bool:
        """It compiled (a policy or an exception): ``Ready`` unless something else says not."""
        return self.policy is not None or self.exception is not None

    @property
    def title(self) -> str:
        """``ClusterBaseImagePolicy prod-bases`` / ``BaseImagePolicy team-a/legacy``, for logs."""
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @property
    def path(self) -> str:
        """The REST path of the object's ``/status`` subresource."""
        return KINDS[self.kind].path(self.namespace, self.name, status=True)


def document(
    body: Mapping[str, Any], *, kind: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The part of a policy object the compiler reads: identity and ``spec``.

    Server-side fields (``managedFields``, ``resourceVersion``, ``status`` …)
    are left out, so what is checked is exactly what a policy file would hold.
    ``kind`` fills in a body that lacks it (items of a list do);
    ``namespace`` fills in a namespaced policy whose body names none.
    """
    meta = body.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    out_kind = body.get("kind") or kind
    out_meta: dict[str, Any] = {}
    for name in ("name", "namespace", "uid", "generation"):
        if meta.get(name) is not None:
            out_meta[name] = meta[name]
    if out_kind in _NAMESPACED and not out_meta.get("namespace") and namespace:
        out_meta["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": out_kind,
        "metadata": out_meta,
    }
    if "spec" in body:
        doc["spec"] = body["spec"]
    return doc


def key_of(body: Mapping[str, Any], *, kind: str | None = None) -> str:
    """The store key of a policy object (a namespaced one without a namespace lives in ``default``)."""
    meta = document(body, kind=kind)["metadata"]
    kind_name = str(body.get("kind") or kind)
    namespace = None
    if kind_name in _NAMESPACED:
        namespace = meta.get("namespace") or DEFAULT_NAMESPACE
    return policy_key(kind_name, namespace, str(meta.get("name", "")))


def read_policy(
    body: Mapping[str, Any], *, kind: str | None = None, today: dt.date | None = None
) -> PolicyRecord:
    """Compile one policy (or exception) object into a record (never raises).

    ``today`` (default: today, UTC) bounds an exception's ``until``.
    """
    doc = document(body, kind=kind)
    meta = doc["metadata"]
    kind_name = str(doc["kind"])
    policy: CompiledPolicy | None = None
    exception: CompiledException | None = None
    if kind_name == EXCEPTION_KIND:
        exception, found = compile_exception_checked(doc, today=today or _utc_today())
        errors = tuple(found)
    else:
        errors = tuple(check_policy(doc))
        policy = None if errors else compile_policy(doc)
    raw_status = body.get("status")
    namespace = meta.get("namespace") if kind_name in _NAMESPACED else None
    if kind_name in _NAMESPACED and not namespace:
        namespace = DEFAULT_NAMESPACE
    generation = meta.get("generation")
    return PolicyRecord(
        kind=kind_name,
        name=str(meta.get("name", "")),
        namespace=namespace,
        uid=str(meta.get("uid", "")),
        generation=generation if isinstance(generation, int) else 0,
        policy=policy,
        errors=errors,
        status=dict(raw_status) if isinstance(raw_status, Mapping) else {},
        exception=exception,
    )


def error_text(errors: tuple[PolicyError, ...]) -> str:
    return "; ".join(str(e) for e in errors)


class PolicyBook:
    """The policy objects seen so far, kept in step with the store the webhook reads.

    Recompiles only when an object's uid or generation changes: a status
    write (the operator's own, after every audit) bumps neither, and must not
    publish a new store snapshot (that would empty the webhook's memo).
    """

    def __init__(self, store: PolicyStore, today: Callable[[], dt.date] = _utc_today) -> None:
        self.store = store
        self.today = today
        self._records: dict[str, PolicyRecord] = {}
        self._refused: set[str] = set()  # compiled, but over their namespace's pattern bound

    def apply(
        self, body: Mapping[str, Any], *, kind: str | None = None
    ) -> tuple[PolicyRecord, bool]:
        """Take one policy object (created, changed, or listed) into the book and the store.

        Returns the record and whether it was (re)compiled.
        """
        key = key_of(body, kind=kind)
        meta = document(body, kind=kind)["metadata"]
        known = self._records.get(key)
        if (
            known is not None
            and known.uid == meta.get("uid")
            and known.generation == meta.get("generation")
            and key not in self._refused  # room may have been made since: try again
        ):
            status = body.get("status")
            record = replace(known, status=dict(status) if isinstance(status, Mapping) else {})
            self._records[key] = record
            return record, False
        record = read_policy(body, kind=kind, today=self.today())
        if record.is_exception:
            return self._apply_exception(record), True
        refused = None if record.policy is None else self.store.refusal(record.key, record.policy)
        if refused is not None:  # over its namespace's pattern bound: Ready=False, with the path
            record = replace(record, policy=None, errors=(refused,))
            self._refused.add(record.key)
        else:
            self._refused.discard(record.key)
        self._records[record.key] = record
        self.store.upsert(
            record.key, record.policy if record.policy is not None else error_text(record.errors)
        )
        return record, True

    def _apply_exception(self, record: PolicyRecord) -> PolicyRecord:
        """An exception into the store; over its namespace's bound it is refused (Ready=False)."""
        exception = record.exception
        refused = None if exception is None else self.store.exception_refusal(exception)
        if refused is not None:
            record = replace(record, exception=None, errors=(refused,))
            self._refused.add(record.key)
        else:
            self._refused.discard(record.key)
        self._records[record.key] = record
        self.store.upsert_exception(
            record.key,
            record.exception if record.exception is not None else error_text(record.errors),
        )
        return record

    def remove(self, body: Mapping[str, Any], *, kind: str | None = None) -> PolicyRecord | None:
        """Forget a deleted policy object: it stops applying at once."""
        key = key_of(body, kind=kind)
        self.store.remove(key)
        self._refused.discard(key)
        return self._records.pop(key, None)

    def get(self, key: str) -> PolicyRecord | None:
        return self._records.get(key)

    def records(self) -> Iterator[PolicyRecord]:
        yield from list(self._records.values())

    def in_force(self, key: str) -> CompiledPolicy | None:
        """The policy the webhook applies under ``key`` (for an invalid record: its last good generation)."""
        for policy in self.store.snapshot.policies:
            if policy_key(policy.kind, policy.namespace, policy.name) == key:
                return policy
        return None


async def cluster_policies(kube: KubeLike) -> tuple[list[CompiledPolicy], list[str]]:
    """The cluster's compiled policies (with the exceptions that name them filed in), and
    one line per policy or exception that does not compile.

    A cluster whose CRDs predate ``BaseImagePolicyException`` has no exceptions:
    that is not an error, while a missing policy CRD is.
    """
    policies: list[CompiledPolicy] = []
    exceptions: list[CompiledException] = []
    problems: list[str] = []
    for kind in KINDS.values():
        try:
            items = await kube.list(kind.path(), kind=kind.kind)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                if kind.kind == EXCEPTION_KIND:
                    continue
                raise InputError(
                    f"{kind.plural}.baseguard.io is not installed in this cluster (install the chart's CRDs)"
                ) from None
            raise
        for item in items:
            record = read_policy(item, kind=kind.kind)
            if record.policy is not None:
                policies.append(record.policy)
            elif record.exception is not None:
                exceptions.append(record.exception)
            else:
                problems.extend(f"{record.title}: {e}" for e in record.errors)
    return list(attach(policies, exceptions)), problems
