"""What a compiled policy needs looked up in the registry: catalog bases, tag identities.

PURE. Adapters ask these before an assessment so that the registry is asked
only about what some matching policy will judge (lazy lookups): the catalog
bases layer detection compares against, and the repositories whose tags the
identity index must know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller import reference
from controller.errors import InvalidReference
from controller.globs import GlobSet
from controller.policy.model import BaseEntry, CompiledPolicy, DeprecatedEntry
from controller.reference import Reference


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def _entries(policy: CompiledPolicy) -> list[BaseEntry | DeprecatedEntry]:
    return [*(policy.bases_allowed or ()), *policy.bases_deprecated]


def catalog_references(policy: CompiledPolicy) -> tuple[Reference, ...]:
    """The bases the layer detector should know for ``policy``.

    ``lineage.catalog``, plus ``image@digest`` for every ``bases.allowed`` and
    ``bases.deprecated`` entry that names one literal repository (no ``*``/``?``)
    and lists digests: a digest in a policy is a base someone vouched for.
    """
    out: dict[str, Reference] = {}
    for ref in policy.lineage.catalog:
        out.setdefault(ref.normalized, ref)
    for entry in _entries(policy):
        if len(entry.image.patterns) != 1 or not entry.digests:
            continue
        image = entry.image.patterns[0]
        if "*" in image or "?" in image:
            continue
        for digest in sorted(entry.digests):
            try:
                ref = reference.parse(f"{image}@{digest}")
            except InvalidReference:
                continue
            out.setdefault(ref.normalized, ref)
    return tuple(out.values())


def identity_targets(policy: CompiledPolicy) -> dict[str, frozenset[str]]:
    """Repository globs whose tags ``policy`` judges, each with its tag globs.

    Every base entry with ``tags`` (``*/library/python`` too: the end-of-life
    library names mirrors by glob), and every tagged ``lineage.catalog``
    reference. A digest pinned in a matching repository must be told by the tags
    it really has; :func:`repositories_to_index` picks the concrete repositories.
    """
    out: dict[str, set[str]] = {}
    for entry in _entries(policy):
        if not entry.tags:
            continue
        for image in entry.image.patterns:
            if image != "scratch":
                out.setdefault(image, set()).update(entry.tags.patterns)
    for ref in policy.lineage.catalog:
        if ref.tag is not None:
            out.setdefault(ref.name, set()).add(ref.tag)
    return {name: frozenset(tags) for name, tags in out.items()}


def repositories_to_index(
    targets: Mapping[str, frozenset[str]], names: Iterable[str]
) -> dict[str, frozenset[str]]:
    """The concrete repositories among ``names`` that some target glob matches, with the
    union of those targets' tag globs: what the identity index lists, and nothing more."""
    globs = [(GlobSet((pattern,)), tags) for pattern, tags in targets.items()]
    out: dict[str, frozenset[str]] = {}
    for name in names:
        tags = frozenset().union(*(t for g, t in globs if g.matches(name)))
        if tags:
            out[name] = tags
    return out
