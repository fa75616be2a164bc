"""The policies in force: an immutable snapshot, swapped whole.

PURE. Writers (``serve``'s file watcher now, the operator's kopf handlers
later) change the store; every admission review takes **one** snapshot and
judges with it, so a review never sees half an update, and readers take no
lock (replacing one attribute is atomic in the event loop and under the GIL).

Keys name a policy's origin: ``kind/namespace/name`` for a custom resource
(``ClusterBaseImagePolicy//prod-bases``), a file path for ``serve``'s errors.

A key can hold a policy *and* an error at once: a broken update keeps the last
good version in force and records why the new one was refused. Failing closed
on a typo matters here: an Enforce policy must not silently vanish because
someone's edit did not compile.

The store also holds the one bound no single policy can check by itself: the
``BaseImagePolicy`` objects of a namespace hold at most
:data:`~controller.policy.model.MAX_PATTERNS_PER_NAMESPACE` patterns together
(evaluation of every image of that namespace grows with them). The policy whose
addition crosses it is refused, with the field path of its first pattern past
the bound, while the namespace's other policies stay in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.errors import PolicyError
from controller.policy.exceptions import CompiledException, attach, namespace_full
from controller.policy.model import (
    MAX_PATTERNS_PER_NAMESPACE,
    NAMESPACED_KIND,
    CompiledPolicy,
    policy_key,
)

__all__ = ["PolicyStore", "Snapshot", "policy_key"]


@dataclass(frozen=True)
class Snapshot:
    """What is in force at one moment.

    ``policies`` are ordered by key, so evaluation order (and thus message order)
    does not depend on the order updates arrived in. ``loaded`` turns true once
    the writer has finished its first full pass (all files read, or the
    operator's initial listing done): before that, an empty store would allow
    everything, so ``/readyz`` says not ready.
    """

    policies: tuple[CompiledPolicy, ...] = ()
    errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The exception objects in force, by key; each is also filed in the ``granted`` of the
    #: policy it names (:func:`~controller.policy.exceptions.attach`).
    exceptions: tuple[CompiledException, ...] = ()
    generation: int = 0
    loaded: bool = False

    def summary(self) -> str:
        """One line for ``/readyz`` and the log: counts and what is broken."""
        text = (
            f"{len(self.policies)} {'policy' if len(self.policies) == 1 else 'policies'} in force"
        )
        if self.errors:
            text += f", {len(self.errors)} with errors"
        return text


class PolicyStore:
    """Holds the current :class:`Snapshot`; every change makes a new one."""

    def __init__(self) -> None:
        self._policies: dict[str, CompiledPolicy] = {}
        self._exceptions: dict[str, CompiledException] = {}
        self._errors: dict[str, str] = {}
        self._snapshot = Snapshot()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def replace(
        self,
        policies: Mapping[str, CompiledPolicy] | Iterable[tuple[str, CompiledPolicy]],
        errors: Mapping[str, str] | None = None,
        *,
        loaded: bool = True,
        exceptions: Iterable[CompiledException] = (),
    ) -> Snapshot:
        """Swap everything at once (``serve`` after reading its files)."""
        items = policies.items() if isinstance(policies, Mapping) else policies
        self._policies = {}
        self._exceptions = {}
        self._errors = dict(errors or {})
        for key, policy in sorted(items, key=lambda item: item[0]):  # refusals do not depend on order
            refused = self.refusal(key, policy)
            if refused is None:
                self._policies[key] = policy
            else:
                self._errors[key] = str(refused)
        for exception in sorted(exceptions, key=lambda e: e.key):
            refused = self.exception_refusal(exception)
            if refused is None:
                self._exceptions[exception.key] = exception
            else:
                self._errors[exception.key] = str(refused)
        return self._publish(loaded=loaded or self._snapshot.loaded)

    def exception_refusal(self, exception: CompiledException) -> PolicyError | None:
        """Why ``exception`` may not be put in force next to the others of its namespace, if not:
        the namespace holds :data:`~controller.policy.exceptions.MAX_EXCEPTIONS_PER_NAMESPACE`
        already (its own previous version left out)."""
        others = sum(
            1
            for k, e in self._exceptions.items()
            if k != exception.key and e.namespace == exception.namespace
        )
        return namespace_full(exception.namespace, others)

    def upsert_exception(self, key: str, item: CompiledException | str | Exception) -> Snapshot:
        """Add or change one exception object; an error takes it out of force.

        Unlike a policy's, a broken exception's last good version is *not* kept:
        what stays in force when an edit fails must be the stricter thing.
        """
        if isinstance(item, CompiledException):
            refused = self.exception_refusal(item)
            if refused is not None:
                item = refused
        if isinstance(item, CompiledException):
            self._exceptions[key] = item
            self._errors.pop(key, None)
        else:
            self._exceptions.pop(key, None)
            self._errors[key] = str(item)
        return self._publish(loaded=self._snapshot.loaded)

    def refusal(self, key: str, policy: CompiledPolicy) -> PolicyError | None:
        """Why ``policy`` may not be put under ``key`` next to what is in force, if it may not.

        A ``BaseImagePolicy`` whose patterns, added to those of the other policies
        of its namespace (its own previous version left out), come to more than
        :data:`MAX_PATTERNS_PER_NAMESPACE`. Writers call this first to report the
        refusal where they report compile errors (``status``, the log).
        """
        namespace = policy.namespace
        if policy.kind != NAMESPACED_KIND or namespace is None:
            return None
        others = sum(
            p.patterns
            for k, p in self._policies.items()
            if k != key and p.kind == NAMESPACED_KIND and p.namespace == namespace
        )
        total = others + policy.patterns
        if total <= MAX_PATTERNS_PER_NAMESPACE:
            return None
        crossing = policy.pattern_paths[max(MAX_PATTERNS_PER_NAMESPACE - others, 0)]
        return PolicyError(
            crossing,
            f"the BaseImagePolicy objects of namespace {namespace} would hold {total} patterns "
            f"together ({others} in the others, {policy.patterns} in this one), more than the "
            f"{MAX_PATTERNS_PER_NAMESPACE} one namespace may hold; this policy is not applied: "
            "use wider globs, or merge and shorten the namespace's policies",
        )

    def upsert(self, key: str, item: CompiledPolicy | str | Exception) -> Snapshot:
        """Add or change one entry.

        A :class:`CompiledPolicy` replaces the entry and clears its error, unless
        :meth:`refusal` refuses it. A string or exception (or a refusal) records
        why the entry is broken and keeps its last good policy, if it had one.
        """
        if isinstance(item, CompiledPolicy):
            refused = self.refusal(key, item)
            if refused is not None:
                item = refused
        if isinstance(item, CompiledPolicy):
            self._policies[key] = item
            self._errors.pop(key, None)
        else:
            self._errors[key] = str(item)
        return self._publish(loaded=self._snapshot.loaded)

    def remove(self, key: str) -> Snapshot:
        """Drop the entry: its policy (or exception) and its error."""
        self._policies.pop(key, None)
        self._exceptions.pop(key, None)
        self._errors.pop(key, None)
        return self._publish(loaded=self._snapshot.loaded)

    def mark_loaded(self) -> Snapshot:
        """The writer's first full pass is done: from now on the store may be served."""
        return self._publish(loaded=True)

    def _publish(self, *, loaded: bool) -> Snapshot:
        keys = sorted(self._policies)
        exceptions = tuple(self._exceptions[k] for k in sorted(self._exceptions))
        self._snapshot = Snapshot(
            policies=attach((self._policies[k] for k in keys), exceptions),
            exceptions=exceptions,
            errors=MappingProxyType(dict(sorted(self._errors.items()))),
            generation=self._snapshot.generation + 1,
            loaded=loaded,
        )
        return self._snapshot
