"""Readers of the documents scanners attach to images: in-toto statements (bare or in
DSSE, as ``cosign attest`` writes them), cosign's vulnerability predicate, Trivy's JSON
report, and OpenVEX.

PURE: bytes in, frozen data out. Every text goes through
:func:`controller.registry.jsonread.read` (bounded in bytes, values and depth);
a document that is not what it says is a :class:`DocumentError` (ignored, with
the reason, as a note), a document over a bound a
:class:`~controller.errors.LookupFailed` naming it.

Formats read:

- cosign vuln predicate ``cosign.sigstore.dev/attestation/vuln/v1`` (with and
  without ``https://``): ``scanner.{uri,version,result}``,
  ``metadata.scanFinishedOn``. ``scanner.result`` is the scanner's own report;
  Trivy's ``--format cosign-vuln`` puts its JSON report there, which is read.
- Trivy JSON (``SchemaVersion: 2``): ``CreatedAt``, ``Results[].Vulnerabilities[]``
  with ``VulnerabilityID``, ``PkgName``, ``InstalledVersion``, ``FixedVersion``,
  ``Severity``, ``Layer.DiffID``.
- OpenVEX (``@context`` ``https://openvex.dev/ns…``, as a document or as an
  in-toto predicate): ``statements[]`` with ``vulnerability`` (``{name}`` in
  v0.2, a string before), ``products``, ``status``, ``timestamp``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import LookupFailed
from controller.evidence.model import (
    SEVERITIES,
    Scan,
    VexStatement,
    Vulnerability,
    not_affected,
)
from controller.registry import jsonread

VULN_PREDICATES = frozenset(
    {"cosign.sigstore.dev/attestation/vuln/v1", "https://cosign.sigstore.dev/attestation/vuln/v1"}
)
OPENVEX_PREFIX = "https://openvex.dev/ns"
STATEMENT_PREFIX = "https://in-toto.io/Statement/"

#: Largest scan document read. Trivy's report of a large distro image with every
#: description is a few MiB; the JSON reader's value bound applies too.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: Vulnerabilities read from one report; more is a bound (named), never a silent cut.
MAX_VULNERABILITIES = 8192
#: VEX statements read from one document.
MAX_VEX_STATEMENTS = 1024


class DocumentError(ValueError):
    """A document that is not what it claims to be: ignored, with this reason."""


def bound_exceeded(what: str, limit: int, bound: str) -> LookupFailed:
    return LookupFailed(
        f"scan evidence: {what} exceeds the bound of {limit} ({bound})",
        context={"code": "BOUND", "bound": bound},
    )


def read_json(body: bytes, what: str) -> Any:
    """JSON through the registry's one reader; not JSON is a :class:`DocumentError`."""
    try:
        return jsonread.read(body, what, max_bytes=MAX_DOCUMENT_BYTES)
    except LookupFailed as exc:
        if exc.context.get("code") != "INVALID":
            raise LookupFailed(f"scan evidence: {exc.message}", context=exc.context) from None
        raise DocumentError(exc.message) from None


@dataclass(frozen=True)
class Statement:
    """An in-toto statement: its predicate type, subjects (sha256 digests) and predicate."""

    predicate_type: str
    subjects: frozenset[str]
    predicate: Any


def parse_statement(body: bytes) -> Statement:
    """An in-toto statement, bare or in a DSSE envelope (signatures are not judged here)."""
    obj = read_json(body, "an attestation")
    if isinstance(obj, dict) and isinstance(obj.get("dsseEnvelope"), dict):
        obj = obj["dsseEnvelope"]  # a Sigstore bundle (v0.2+) holding the envelope
    if isinstance(obj, dict) and "payload" in obj and "payloadType" in obj:
        payload = obj.get("payload")
        if not isinstance(payload, str):
            raise DocumentError("DSSE envelope without a payload")
        try:
            decoded = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise DocumentError(f"DSSE payload is not base64: {exc}") from None
        obj = read_json(decoded, "a DSSE payload")
    if not isinstance(obj, dict):
        raise DocumentError("attestation is not a JSON object")
    kind = obj.get("_type")
    if not isinstance(kind, str) or not kind.startswith(STATEMENT_PREFIX):
        raise DocumentError(f"not an in-toto statement (_type {kind!r})")
    predicate_type = obj.get("predicateType")
    if not isinstance(predicate_type, str):
        raise DocumentError("statement without a predicateType")
    subjects: set[str] = set()
    listed = obj.get("subject")
    for s in listed if isinstance(listed, list) else ():
        digest = s.get("digest") if isinstance(s, dict) else None
        hexa = digest.get("sha256") if isinstance(digest, dict) else None
        if isinstance(hexa, str):
            subjects.add(f"sha256:{hexa.lower()}")
    return Statement(predicate_type, frozenset(subjects), obj.get("predicate"))


def is_openvex(value: Any) -> bool:
    context = value.get("@context") if isinstance(value, dict) else None
    return isinstance(context, str) and context.startswith(OPENVEX_PREFIX)


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time (``Z`` or an offset, with or without fractions) in UTC; else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:  # Go writes nanoseconds; Python reads at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def trivy_diff_ids(report: Any) -> tuple[str, ...]:
    """``Metadata.DiffIDs``: the layers of the image Trivy scanned (absent for other targets)."""
    metadata = report.get("Metadata") if isinstance(report, dict) else None
    found = metadata.get("DiffIDs") if isinstance(metadata, dict) else None
    if not isinstance(found, list):
        return ()
    return tuple(d.lower() for d in found if isinstance(d, str))


def trivy_vulnerabilities(report: Any) -> tuple[list[Vulnerability], dt.datetime | None]:
    """The vulnerabilities of a Trivy JSON report, and its ``CreatedAt``.

    A report must be a mapping with ``Results`` a list (or absent: nothing found);
    anything else is a :class:`DocumentError`.
    """
    if not isinstance(report, dict) or not ("Results" in report or "SchemaVersion" in report):
        raise DocumentError("not a Trivy JSON report (no SchemaVersion or Results)")
    results = report.get("Results") or []
    if not isinstance(results, list):
        raise DocumentError("Trivy report: Results is not a list")
    out: list[Vulnerability] = []
    for result in results:
        found = result.get("Vulnerabilities") if isinstance(result, dict) else None
        if not isinstance(found, list):
            continue
        if len(out) + len(found) > MAX_VULNERABILITIES:
            raise bound_exceeded(
                "a report of more vulnerabilities", MAX_VULNERABILITIES, "MAX_VULNERABILITIES"
            )
        for v in found:
            if not isinstance(v, dict) or not _text(v.get("VulnerabilityID")):
                continue
            severity = _text(v.get("Severity")).upper()
            layer = v.get("Layer")
            diff_id = _text(layer.get("DiffID")) if isinstance(layer, dict) else ""
            out.append(
                Vulnerability(
                    id=_text(v.get("VulnerabilityID")),
                    package=_text(v.get("PkgName")) or _text(v.get("PkgID")),
                    installed=_text(v.get("InstalledVersion")),
                    fixed=_text(v.get("FixedVersion")),
                    severity=severity if severity in SEVERITIES else "UNKNOWN",
                    diff_id=diff_id.lower(),
                )
            )
    return out, parse_time(report.get("CreatedAt"))


def trivy_scan(body: bytes, *, source: str, created: dt.datetime | None) -> Scan:
    """A Trivy JSON report pushed as an artifact; ``created`` is the referrer's annotation."""
    report = read_json(body, "a Trivy report")
    found, at = trivy_vulnerabilities(report)
    version = (
        report.get("Trivy", {}).get("Version") if isinstance(report.get("Trivy"), dict) else None
    )
    scanner = f"trivy {version}" if isinstance(version, str) else "trivy"
    return Scan(source, scanner, at or created, tuple(found), trivy_diff_ids(report))


def vuln_predicate_scan(predicate: Any, *, source: str, created: dt.datetime | None) -> Scan:
    """cosign's vuln predicate; ``scanner.result`` must be a Trivy report to be judged."""
    if not isinstance(predicate, dict):
        raise DocumentError("vuln predicate is not a JSON object")
    scanner: dict[str, Any] = (
        predicate["scanner"] if isinstance(predicate.get("scanner"), dict) else {}
    )
    metadata: dict[str, Any] = (
        predicate["metadata"] if isinstance(predicate.get("metadata"), dict) else {}
    )
    uri, version = _text(scanner.get("uri")), _text(scanner.get("version"))
    name = " ".join(p for p in (uri.rsplit("/", 1)[-1].split("@")[0] or uri, version) if p)
    try:
        found, at = trivy_vulnerabilities(scanner.get("result"))
    except DocumentError:
        raise DocumentError(
            f"vuln predicate of {name or 'an unnamed scanner'}: scanner.result is not a Trivy "
            "JSON report, which is the format baseguard reads"
        ) from None
    finished = parse_time(metadata.get("scanFinishedOn"))
    layers = trivy_diff_ids(scanner.get("result"))
    return Scan(source, name or "scanner", finished or at or created, tuple(found), layers)


def vex_statements(doc: Any) -> list[VexStatement]:
    """The statements of an OpenVEX document (v0.0.x and v0.2.x shapes)."""
    if not is_openvex(doc):
        raise DocumentError("not an OpenVEX document (@context)")
    assert isinstance(doc, dict)
    statements = doc.get("statements") or []
    if not isinstance(statements, list):
        raise DocumentError("OpenVEX statements is not a list")
    if len(statements) > MAX_VEX_STATEMENTS:
        raise bound_exceeded(
            f"{len(statements)} VEX statements", MAX_VEX_STATEMENTS, "MAX_VEX_STATEMENTS"
        )
    default_time = parse_time(doc.get("timestamp"))
    out = []
    for s in statements:
        if not isinstance(s, dict):
            continue
        vuln = s.get("vulnerability")
        name = _text(vuln.get("name")) if isinstance(vuln, Mapping) else _text(vuln)
        if not name:
            continue
        products = []
        named = s.get("products")
        for p in named if isinstance(named, list) else ():
            pid = _text(p.get("@id")) if isinstance(p, Mapping) else _text(p)
            if pid:
                products.append(pid)
        out.append(
            VexStatement(
                name,
                _text(s.get("status")),
                tuple(products),
                parse_time(s.get("timestamp")) or default_time,
            )
        )
    return out


def about_image(statements: list[VexStatement], digests: frozenset[str]) -> list[VexStatement]:
    """The statements that speak for this image.

    A statement speaks for this image when it names no products (a VEX document
    attached to an image speaks for it) or a product that carries one of
    ``digests`` (``pkg:oci/app@sha256%3A…`` or a plain digest); a statement about
    another image never suppresses anything here.
    """
    return [s for s in statements if not s.products or any(_names(p, digests) for p in s.products)]


def suppressed(statements: list[VexStatement], digests: frozenset[str]) -> frozenset[str]:
    """Vulnerability ids declared ``not_affected`` for this image, the latest statement winning."""
    return not_affected(about_image(statements, digests))


def _names(product: str, digests: frozenset[str]) -> bool:
    text = product.replace("%3A", ":").replace("%3a", ":").lower()
    return any(d in text for d in digests)
