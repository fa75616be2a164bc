"""Who uses a base (``baseguard audit --uses``): every object whose image lineage, at
any level, matches a reference glob. Without I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from controller.evidence.model import Where
from controller.globs import GlobSet
from controller.lineage.model import Level, Lineage
from controller.operator.audit.plan import (
    ObjectRef,
    Pair,
)
from controller.policy.model import CompiledPolicy
from controller.reference import Reference

_DOCKER_HUB = "docker.io"


class UsesPattern:
    """A reference glob for ``--uses``: ``debian:buster``, ``python:3.8*``, ``ghcr.io/acme/base``.

    Normalized like an image name (``debian`` is ``docker.io/library/debian``);
    without a tag it matches every tag, with ``@sha256:…`` only that digest.
    """

    def __init__(self, text: str) -> None:
        pattern = text.strip()
        if not pattern:
            raise ValueError("--uses needs a reference or a glob, e.g. debian:buster")
        self.text = pattern
        digest = None
        if "@" in pattern:
            pattern, digest = pattern.split("@", 1)
        tag = None
        slash = pattern.rfind("/")
        colon = pattern.rfind(":")
        if colon > slash:
            pattern, tag = pattern[:colon], pattern[colon + 1 :]
        first, _, rest = pattern.partition("/")
        host_like = "." in first or ":" in first or first == "localhost"
        if not rest:
            pattern = f"{_DOCKER_HUB}/library/{pattern}"
        elif not host_like:
            pattern = f"{_DOCKER_HUB}/{pattern}"
        elif first in ("index.docker.io", "registry-1.docker.io"):
            pattern = f"{_DOCKER_HUB}/{rest}"
        self.name = GlobSet((pattern,))
        self.tag = GlobSet((tag,)) if tag else None
        self.digest = digest

    def matches(self, ref: Reference | None, digest: str | None = None) -> bool:
        if ref is None or not self.name.matches(ref.name):
            return False
        if self.tag is not None and (ref.tag is None or not self.tag.matches(ref.tag)):
            return False
        return self.digest is None or self.digest in (ref.digest, digest)

    def matches_level(self, level: Level) -> bool:
        return self.matches(level.reference, level.digest)


@dataclass(frozen=True)
class Use:
    """An image of an audited object whose lineage includes the base."""

    ref: ObjectRef
    container: str | None
    image: str
    matched: tuple[str, ...]  # the matching levels, as ``name`` (platform)
    depth: int  # 0: the image itself; 1: its base; …
    #: With ``--fixable``: the fixable findings of those severities in the base's layers,
    #: as ``ID package installed -> fixed`` (from the scans attached to the image).
    fixable: tuple[str, ...] = ()


def fixable_in_base(lineage: Lineage | None, severities: Collection[str]) -> tuple[str, ...]:
    """The fixable findings of ``severities`` that the scans place in the base's layers."""
    found: dict[str, None] = {}
    for platform in lineage.platforms if lineage else ():
        evidence = platform.evidence
        for v in evidence.open_vulnerabilities() if evidence else ():
            if v.fixable and v.where is Where.BASE and v.severity in severities:
                found.setdefault(f"{v.id} {v.package} {v.installed} -> {v.fixed}", None)
    return tuple(found)


def uses(pairs: Sequence[Pair], pattern: UsesPattern, *, fixable: Collection[str] = ()) -> list[Use]:
    """Every image whose own reference or any lineage level matches ``pattern``; with
    ``fixable`` (severities), only those whose base carries fixable findings of them."""
    out: list[Use] = []
    for audited, result in pairs:
        for image in result.results:
            facts = image.facts
            matched: dict[str, int] = {}
            if pattern.matches(facts.reference):
                matched[facts.reference.normalized if facts.reference else facts.image] = 0
            lineage = facts.lineage
            for platform in lineage.platforms if lineage else ():
                for depth, level in enumerate(platform.levels):
                    if pattern.matches_level(level):
                        label = f"{level.name} ({platform.platform})"
                        matched.setdefault(label, depth)
            found = fixable_in_base(lineage, fixable) if fixable else ()
            if matched and (found or not fixable):
                out.append(
                    Use(
                        ref=audited.ref,
                        container=facts.container,
                        image=facts.image,
                        matched=tuple(matched),
                        depth=min(matched.values()),
                        fixable=found,
                    )
                )
    return out


PROBE = "baseguard-uses"


def probe_policy(fixable: Sequence[str] = ()) -> CompiledPolicy:
    """A policy that matches everything and asks for every image's lineage, deciding nothing.

    ``--uses`` needs lineage even where no real policy does; going through the
    Assessor with this probe keeps one assessment path. Its findings (it has
    none that are not ``allow``) are never shown.
    """
    from controller.policy.compile import compile_policy
    from controller.policy.model import API_VERSION, CLUSTER_KIND

    return compile_policy(
        {
            "apiVersion": API_VERSION,
            "kind": CLUSTER_KIND,
            "metadata": {"name": PROBE},
            "spec": {
                "mode": "Audit",
                "lineage": {
                    "maxDepth": 10,
                    "onUnknownBase": "Allow",
                    "onLookupFailure": "Allow",
                    "staleBase": "Allow",
                    "verify": "Annotations",
                },
                # ``--fixable``: the scans are read too (costing their requests only then).
                **({"evidence": {"requireScan": False, "denyFixable": list(fixable), "scope": "Base"}} if fixable else {}),
            },
        }
    )
