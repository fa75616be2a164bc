"""What the scans attached to one platform image say, as plain frozen data.

Built by :mod:`controller.evidence.gather`, judged by
:mod:`controller.policy.evidencerules`. PURE: no I/O, no registry, no clock.
Every vulnerability already carries where it sits (:class:`Where`): the base's
layers, the application's, or unknown, decided by its layer's diff_id against
the ``rootfs.diff_ids`` of the base that lineage established.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

#: Severities in the order reports rank them (Trivy's, which CVSS-based scanners share).
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


class Where(StrEnum):
    """Which part of the image a vulnerable package was installed by."""

    BASE = "base"  # a layer the base image has (its diff_ids are a prefix of the image's)
    APPLICATION = "application"  # a layer the image added on top of its base
    UNKNOWN = "unknown"  # the report names no layer, or a layer the image does not have


@dataclass(frozen=True)
class Vulnerability:
    """One vulnerable package in one image, as a scanner reported it."""

    id: str  # CVE-2024-1234, GHSA-…
    package: str
    installed: str
    fixed: str  # the version that fixes it; "" when none is known
    severity: str  # one of SEVERITIES
    where: Where = Where.UNKNOWN
    diff_id: str = ""

    @property
    def fixable(self) -> bool:
        return bool(self.fixed)

    @property
    def key(self) -> tuple[str, str]:
        """What a rebuilt base is compared by: the same vulnerability in the same package."""
        return (self.id, self.package)


@dataclass(frozen=True)
class Scan:
    """One scan report about the image."""

    source: str  # "cosign-vuln attestation", "Trivy report (referrer)"
    scanner: str  # "trivy 0.58.1", or the predicate's scanner.uri
    finished: dt.datetime | None  # scanFinishedOn, else the report's or referrer's created time
    vulnerabilities: tuple[Vulnerability, ...] = ()
    #: The layers the scanned image had (Trivy's ``Metadata.DiffIDs``): a scan of another
    #: image (another platform of the index, an older build) is told apart by them.
    diff_ids: tuple[str, ...] = ()

    def describes(self, diff_ids: tuple[str, ...]) -> bool:
        """Whether this scan can be about an image with these layers.

        By the scanned image's layers when the report records them; else by the
        layers its vulnerabilities name (one of them must be the image's); a report
        that names no layer at all cannot be told apart, and is taken as it is.
        """
        if self.diff_ids:
            return self.diff_ids == diff_ids
        named = {v.diff_id for v in self.vulnerabilities if v.diff_id}
        return not named or not named.isdisjoint(diff_ids)


@dataclass(frozen=True)
class BaseNow:
    """What the scans of the base's *current* image say (the tag moved since the build)."""

    base: str  # the base tag, as users write it (python:3.12-slim)
    digest: str  # the platform digest the tag names now
    scanned: bool  # a usable scan of it was found
    still: frozenset[tuple[str, str]] = frozenset()  # (id, package) still fixable there
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    """The scans of one platform image, what VEX suppresses, and the base it is attributed to."""

    digest: str  # the platform manifest the scans describe
    scans: tuple[Scan, ...] = ()
    suppressed: frozenset[str] = frozenset()  # vulnerability ids VEX says do not affect it
    base: str | None = None  # the verified base (tag as written), when layers could be attributed
    base_digest: str | None = None
    base_moved_to: str | None = None  # the base tag now names this platform digest
    base_now: BaseNow | None = None
    failure: str | None = None  # the evidence could not be read: lookup-failed
    notes: tuple[str, ...] = ()  # documents found but not used, and why

    @property
    def newest(self) -> Scan | None:
        """The most recent scan (one without a time counts as oldest)."""
        if not self.scans:
            return None
        floor = dt.datetime.min.replace(tzinfo=dt.UTC)
        return max(self.scans, key=lambda s: s.finished or floor)

    def open_vulnerabilities(self) -> tuple[Vulnerability, ...]:
        """The newest scan's vulnerabilities that VEX does not suppress, each once."""
        scan = self.newest
        if scan is None:
            return ()
        seen: dict[tuple[str, str, str], Vulnerability] = {}
        for v in scan.vulnerabilities:
            if v.id not in self.suppressed:
                seen.setdefault((v.id, v.package, v.installed), v)
        return tuple(seen.values())
