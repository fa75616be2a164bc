"""What the scans attached to one platform image say, as plain frozen data.

Built by :mod:`controller.evidence.gather`, judged by
:mod:`controller.policy.evidencerules`. PURE: no I/O, no registry, no clock.
Every vulnerability already carries where it sits (:class:`Where`): the base's
layers, the application's, or unknown, decided by its layer's diff_id against
the ``rootfs.diff_ids`` of the base that lineage established.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
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
    #: Fingerprints of the authorities (``spec.evidence.authorities``) whose verified
    #: signature the document carries; empty for an unsigned document, or when none was asked.
    signers: frozenset[str] = frozenset()

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
class VexStatement:
    vulnerability: str
    status: str
    products: tuple[str, ...]
    timestamp: dt.datetime | None


@dataclass(frozen=True)
class VexDocument:
    """One VEX document's statements that speak for this image, and who signed it."""

    statements: tuple[VexStatement, ...]
    signers: frozenset[str] = frozenset()


def not_affected(statements: Iterable[VexStatement]) -> frozenset[str]:
    """Vulnerability ids whose latest statement (by timestamp) says ``not_affected``."""
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    latest: dict[str, VexStatement] = {}
    for s in statements:
        held = latest.get(s.vulnerability)
        if held is None or (s.timestamp or floor) >= (held.timestamp or floor):
            latest[s.vulnerability] = s
    return frozenset(v for v, s in latest.items() if s.status == "not_affected")


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
    #: Every VEX document read (what :meth:`signed_by` recomputes ``suppressed`` from).
    vex: tuple[VexDocument, ...] = ()
    #: Set by :meth:`signed_by`: scan and VEX documents passed over for not being signed
    #: by the authorities it was asked for.
    unsigned: int = 0

    def signed_by(self, fingerprints: frozenset[str]) -> Evidence:
        """Only what one of the authorities (by fingerprint) signed: the scans, and the
        suppressions of signed VEX documents; the rest counted in :attr:`unsigned`.

        The same evidence serves every policy judging the image, each with its own
        authorities, so no policy's authority can vouch for a document another's
        does not (fingerprints are of the authority's content, see ``trustspec``).
        """
        scans = tuple(s for s in self.scans if s.signers & fingerprints)
        vex = [d for d in self.vex if d.signers & fingerprints]
        ignored = len(self.scans) - len(scans) + len(self.vex) - len(vex)
        return replace(
            self,
            scans=scans,
            suppressed=not_affected(s for d in vex for s in d.statements),
            vex=tuple(vex),
            unsigned=ignored,
        )

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
