"""Builders for the pure policy core's inputs: compiled policies, lineage levels and
platforms, image facts. Shared by the rule tests and the evaluator tests.

Every builder returns the real frozen type (no doubles); defaults are the common case
(a cluster policy named ``p``, a verified annotation level, an amd64 lineage).
"""

from __future__ import annotations

import datetime as dt

from controller.errors import InvalidReference
from controller.globs import GlobSet
from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source
from controller.policy.facts import ImageFacts
from controller.policy.model import CLUSTER_KIND, NAMESPACED_KIND, CompiledPolicy
from controller.reference import parse
from controller.roles import ImageRole

#: The clock every rule and evaluation is judged at.
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
#: An image's own digest, and two base digests (an older and a newer build).
D_IMG = "sha256:" + "c" * 64
D_OLD = "sha256:" + "a" * 64
D_NEW = "sha256:" + "b" * 64


def g(*patterns: str) -> GlobSet:
    """A glob set of the given patterns."""
    return GlobSet(patterns)


def pol(name: str = "p", **kw: object) -> CompiledPolicy:
    """A cluster-scoped compiled policy; keyword arguments are its fields."""
    return CompiledPolicy(kind=CLUSTER_KIND, name=name, **kw)  # type: ignore[arg-type]


def nspol(namespace: str, name: str = "np", **kw: object) -> CompiledPolicy:
    """A namespaced compiled policy in ``namespace``."""
    return CompiledPolicy(kind=NAMESPACED_KIND, name=name, namespace=namespace, **kw)  # type: ignore[arg-type]


def lvl(text: str | None, **kw: object) -> Level:
    """A lineage level naming ``text`` (None: a level whose reference is unknown);
    by default claimed by an annotation and verified."""
    kw.setdefault("source", Source.ANNOTATION)
    kw.setdefault("verified", True)
    kw.setdefault("digest", None)
    return Level(reference=None if text is None else parse(text), **kw)  # type: ignore[arg-type]


def plat(
    platform: str,
    image: str,
    *ancestors: Level,
    end: End = End.KNOWN_BASE,
    failure: str | None = None,
) -> PlatformLineage:
    """One platform's lineage: the image itself, then its ancestors, closest first."""
    return PlatformLineage(platform, (lvl(image, source=Source.IMAGE), *ancestors), end, failure)


def img(
    text: str,
    *platforms: PlatformLineage,
    role: ImageRole = ImageRole.CONTAINER,
    offline: bool = False,
    failure: str | None = None,
) -> ImageFacts:
    """An image; with no platforms given and not offline, a lineage of one unknown-base platform."""
    try:
        ref = parse(text)
    except InvalidReference as exc:
        return ImageFacts(image=text, container="app", role=role, invalid=str(exc))
    lineage = None
    if not offline:
        lineage = Lineage(
            reference=ref,
            digest=None if failure else D_IMG,
            platforms=platforms
            if failure or platforms
            else (plat("linux/amd64", text, end=End.UNCLAIMED),),
            failure=failure,
        )
    return ImageFacts(image=text, container="app", role=role, reference=ref, lineage=lineage)


def built_on(text: str, *ancestors: str, **kw: object) -> ImageFacts:
    """An image whose amd64 lineage is the given chain of annotated, verified bases."""
    return img(text, plat("linux/amd64", text, *(lvl(a) for a in ancestors)), **kw)  # type: ignore[arg-type]
