"""An index of compiled policies by where they can apply, built once per snapshot.

PURE. Every admission asks "which policies cover this object?". The plain
answer, :func:`controller.policy.evaluate.applicable`, tests every policy in
force; with a thousand team policies that scan is most of the time a review
takes, and almost every policy in it is about some other namespace. The index
narrows the question to the few policies that *could* cover the object, and
the evaluator's own predicate then decides among those, so the answer is the
same list, in the same order, as the scan's (a property test compares both).

What a policy's scope says about a namespace, and where the index files it:

* a ``BaseImagePolicy`` covers only its own namespace: filed under that name;
* a ``ClusterBaseImagePolicy`` with ``match.namespaces``: each literal pattern
  is filed under that name, and each glob under its literal prefix (the text
  before the first ``*`` or ``?``), since a glob can only match names that
  start with its prefix;
* a cluster policy without ``match.namespaces`` may cover any namespace, and
  is a candidate for every object (``excludeNamespaces`` and the selectors are
  left to the predicate: they can only remove).

An object outside the cluster (no namespace: a Dockerfile in CI) can only be
covered by cluster policies that do not restrict themselves to namespaces.

Nothing is pruned by image here: every policy that covers an object judges
each of its images unless ``exclude.images`` says otherwise, and that test is
one precompiled expression per policy. Pruning by allowlist would change what
an image result lists as the policies applied to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controller.policy.model import CompiledPolicy

_WILDCARDS = ("*", "?")


def literal_prefix(pattern: str) -> str:
    """The text before the first wildcard: every string a glob matches starts with it."""
    cut = len(pattern)
    for wildcard in _WILDCARDS:
        at = pattern.find(wildcard)
        if at != -1:
            cut = min(cut, at)
    return pattern[:cut]


def is_literal(pattern: str) -> bool:
    return not any(w in pattern for w in _WILDCARDS)


def _freeze(buckets: Mapping[str, set[int]]) -> Mapping[str, tuple[int, ...]]:
    return MappingProxyType({key: tuple(sorted(positions)) for key, positions in buckets.items()})


@dataclass(frozen=True)
class PolicyIndex:
    """Positions of the policies, filed by the namespaces they can apply to.

    Build it with :meth:`of`; :meth:`candidates` returns a superset of the
    policies covering an object, in the original order. Immutable, so a
    snapshot's index can be shared by every concurrent review.
    """

    policies: tuple[CompiledPolicy, ...]
    anywhere: tuple[int, ...]
    """Cluster policies with no ``match.namespaces``: candidates in every namespace."""
    unscoped: tuple[int, ...]
    """Candidates for an object with no namespace: cluster policies with no namespace
    restriction and no ``namespaceSelector``."""
    by_namespace: Mapping[str, tuple[int, ...]]
    """Exact namespace → policies: namespaced policies, and literal ``match.namespaces``."""
    by_prefix: Mapping[str, tuple[int, ...]]
    """Literal prefix of a ``match.namespaces`` glob → cluster policies with that glob."""
    prefix_lengths: tuple[int, ...]
    """The lengths of the keys of :attr:`by_prefix`, ascending: the only slices worth trying."""

    @classmethod
    def of(cls, policies: Iterable[CompiledPolicy]) -> PolicyIndex:
        """Index ``policies``; a tuple is kept as the very object given (callers compare by identity)."""
        ordered = policies if isinstance(policies, tuple) else tuple(policies)
        anywhere: list[int] = []
        unscoped: list[int] = []
        by_namespace: dict[str, set[int]] = {}
        by_prefix: dict[str, set[int]] = {}
        for position, policy in enumerate(ordered):
            match = policy.match
            if policy.namespace is not None:
                by_namespace.setdefault(policy.namespace, set()).add(position)
                continue
            if not match.namespaces:
                anywhere.append(position)
                if match.namespace_selector is None:
                    unscoped.append(position)
                continue
            for pattern in match.namespaces.patterns:
                if is_literal(pattern):
                    by_namespace.setdefault(pattern, set()).add(position)
                else:
                    by_prefix.setdefault(literal_prefix(pattern), set()).add(position)
        return cls(
            policies=ordered,
            anywhere=tuple(anywhere),
            unscoped=tuple(unscoped),
            by_namespace=_freeze(by_namespace),
            by_prefix=_freeze(by_prefix),
            prefix_lengths=tuple(sorted({len(prefix) for prefix in by_prefix})),
        )

    def __len__(self) -> int:
        return len(self.policies)

    def candidates(self, namespace: str | None) -> list[CompiledPolicy]:
        """Every policy that could cover an object in ``namespace`` (``None``: outside the
        cluster), in the order they were given; the evaluator's predicate decides the rest."""
        if namespace is None:
            return [self.policies[i] for i in self.unscoped]
        extra: list[tuple[int, ...]] = []
        exact = self.by_namespace.get(namespace)
        if exact:
            extra.append(exact)
        for length in self.prefix_lengths:
            if length > len(namespace):
                break
            hit = self.by_prefix.get(namespace[:length])
            if hit:
                extra.append(hit)
        if not extra:
            return [self.policies[i] for i in self.anywhere]
        found = set(self.anywhere)
        for bucket in extra:
            found.update(bucket)
        return [self.policies[i] for i in sorted(found)]

    def stats(self) -> dict[str, int]:
        """How the policies were filed (for the bench and debugging)."""
        return {
            "policies": len(self.policies),
            "anywhere": len(self.anywhere),
            "namespaces": len(self.by_namespace),
            "prefixes": len(self.by_prefix),
        }

