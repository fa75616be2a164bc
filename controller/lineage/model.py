"""What the registry told us about an image's ancestry, as plain frozen data.

The resolver (:mod:`controller.lineage.resolve`) builds these; the pure policy
core only reads them. Level 0 is always the image itself (for a Dockerfile, the
``FROM`` image); level 1 its base, and so on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from controller.evidence.model import Evidence
from controller.reference import Reference

#: How many ancestors a lookup follows when nobody says otherwise (``spec.lineage.maxDepth``'s
#: default, which the CRD schema repeats and a test holds equal).
DEFAULT_MAX_DEPTH = 4
#: The most ancestors a policy may ask for (``spec.lineage.maxDepth``'s schema maximum):
#: what messages tell a user whose chain was cut they may raise it to.
MAX_DEPTH_LIMIT = 10


class Source(StrEnum):
    """How a level was found."""

    IMAGE = "image"  # level 0: the image that was asked about
    DOCKERFILE = "dockerfile"  # level 0 of a Dockerfile base: the FROM line
    ANNOTATION = "annotation"  # platform-manifest annotation org.opencontainers.image.base.*
    INDEX_ANNOTATION = "index-annotation"  # the same keys on the index or its descriptor
    LABEL = "label"  # the same keys as image-config labels (may be inherited)
    BUILDPACKS = "buildpacks"  # io.buildpacks.lifecycle.metadata runImage
    BUILDINFO = "buildinfo"  # BuildKit's recorded sources (moby.buildkit.buildinfo.v1)
    PROVENANCE = "provenance"  # SLSA provenance attestation (index attestation or OCI referrer)
    LAYERS = "layers"  # detected: longest diff_id prefix among catalog bases


class End(StrEnum):
    """Why the chain stops where it does."""

    SCRATCH = "scratch"  # the last level was built from nothing
    UNCLAIMED = "unclaimed"  # the last level names no base and matches no catalog base
    KNOWN_BASE = "known-base"  # the last level is itself a catalog base
    MAX_DEPTH = "max-depth"  # maxDepth reached
    LOOKUP_FAILED = "lookup-failed"  # the registry could not answer for the next level


@dataclass(frozen=True)
class Level:
    """One image in the chain."""

    reference: Reference | None  # None only for ``scratch``
    digest: str | None  # the platform manifest digest, when known
    source: Source
    verified: bool | None  # True: layer prefix holds; False: contradicted; None: not checkable
    created: dt.datetime | None = None
    note: str = ""  # why unverified or contradicted, for messages
    moved_to: str | None = None  # the base's tag now names another image (platform digest)
    #: The level's ``rootfs.diff_ids``: what scan evidence attributes vulnerabilities by.
    diff_ids: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def name(self) -> str:
        return "scratch" if self.reference is None else self.reference.normalized


@dataclass(frozen=True)
class PlatformLineage:
    platform: str  # "linux/amd64", "linux/arm64/v8"
    levels: tuple[Level, ...]
    end: End
    failure: str | None = None  # with End.LOOKUP_FAILED: what went wrong
    #: Catalog bases whose layers start the image's own, found by one layer-prefix check
    #: whatever the depth (no request): a chain cut at ``maxDepth`` may hide a deprecated
    #: base, and this is how the policy still sees it. Closest (most layers) first.
    layer_bases: tuple[Level, ...] = ()
    #: Scan evidence about this platform image (read only for a policy with ``evidence``).
    evidence: Evidence | None = None

    @property
    def ancestors(self) -> tuple[Level, ...]:
        return self.levels[1:]

    @property
    def base_known(self) -> bool:
        """A base was established: a level above the image, or the image is a base itself."""
        return len(self.levels) > 1 or self.end in (End.SCRATCH, End.KNOWN_BASE)


@dataclass(frozen=True)
class Lineage:
    """The lineage of one image reference, per platform of its index."""

    reference: Reference
    digest: str | None  # what the reference resolved to (index or manifest digest)
    platforms: tuple[PlatformLineage, ...] = ()
    failure: str | None = None  # the image itself could not be looked up
