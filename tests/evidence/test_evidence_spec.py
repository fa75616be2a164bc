"""``spec.evidence`` compiled and refused with field paths; the readers of scanners' documents."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main
from controller.errors import LookupFailed
from controller.evidence import choose, documents
from controller.evidence.documents import DocumentError
from controller.policy.compile import check_policy, compile_policy
from controller.policy.evidencespec import EvidenceSpec, Scope
from controller.registry.media import Descriptor

DIGEST = "sha256:" + "a" * 64


def doc(evidence: Any) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "p"}, "spec": {"evidence": evidence},
    }  # fmt: skip


def test_the_section_compiles_with_its_defaults() -> None:
    compiled = compile_policy(doc({"maxScanAge": "7d", "denyFixable": ["HIGH", "CRITICAL"]}))
    assert compiled.evidence == EvidenceSpec(
        max_scan_age=dt.timedelta(days=7), deny_fixable=("CRITICAL", "HIGH"), scope=Scope.ALL
    )
    assert compiled.needs_lineage and not compiled.judges_lineage
    without = doc(None)
    del without["spec"]["evidence"]
    assert compile_policy(without).evidence is None


@pytest.mark.parametrize(
    ("evidence", "path", "reason"),
    [
        ({"maxScanAge": "7 days"}, "spec.evidence.maxScanAge", "7 days"),
        ({"maxScanAge": "0d"}, "spec.evidence.maxScanAge", "longer than zero"),
        ({"denyFixable": ["CRITICAL", "SEVERE"]}, "spec.evidence.denyFixable[1]", "SEVERE"),
        ({"denyFixable": "CRITICAL"}, "spec.evidence.denyFixable", "list"),
        ({"scope": "Layers"}, "spec.evidence.scope", "Layers"),
        ({"requireScan": "yes"}, "spec.evidence.requireScan", "boolean"),
        ({"denyFixable": ["LOW"] * 6}, "spec.evidence.denyFixable", "6"),
    ],
    ids=["age-words", "age-zero", "severity", "not-a-list", "scope", "require", "too-many"],
)
def test_a_bad_section_is_refused_with_its_field_path(
    evidence: Any, path: str, reason: str
) -> None:
    errors = check_policy(doc(evidence))
    assert any(e.path == path and reason in e.reason for e in errors), [
        (e.path, e.reason) for e in errors
    ]


def test_policy_validate_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(json.dumps(doc({"scope": "Everything"})))
    assert main(["policy", "validate", str(policy)]) == 2
    assert "spec.evidence.scope" in capsys.readouterr().out


def test_offline_the_evidence_rules_are_not_evaluated_and_count_as_lookups_that_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(json.dumps(doc({"denyFixable": ["CRITICAL"]})))
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\n"
        "spec: {containers: [{name: app, image: 'registry.example.com/shop/app:1.0.0'}]}\n"
    )
    code = main(
        [
            "check",
            str(tmp_path / "pod.yaml"),
            "-p",
            str(tmp_path / "p.yaml"),
            "--offline",
            "--format",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    (result,) = out["results"]
    assert {"scan-missing", "fixable-vulnerabilities"} <= set(result["notEvaluated"]), result
    assert code != 0 and result["verdict"] != "allow"


# --------------------------------------------------------------------------- readers


def statement(predicate_type: str, predicate: Any, subject: str = DIGEST) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": predicate_type,
        "subject": [{"name": "x", "digest": {"sha256": subject.removeprefix("sha256:")}}],
        "predicate": predicate,
    }


def test_a_statement_in_dsse_and_in_a_sigstore_bundle_reads_the_same() -> None:
    body = json.dumps(statement(documents.OPENVEX_PREFIX, {})).encode()
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(body).decode(),
        "signatures": [],
    }
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "dsseEnvelope": envelope,
    }
    for text in (body, json.dumps(envelope).encode(), json.dumps(bundle).encode()):
        read = documents.parse_statement(text)
        assert read.subjects == {DIGEST} and read.predicate_type == documents.OPENVEX_PREFIX


def test_a_vuln_predicate_of_another_scanner_is_named_not_guessed() -> None:
    grype = {
        "scanner": {
            "uri": "pkg:github/anchore/grype@0.80.0",
            "version": "0.80.0",
            "result": {"matches": []},
        }
    }
    with pytest.raises(
        DocumentError, match=r"grype 0\.80\.0: scanner\.result is not a Trivy JSON report"
    ):
        documents.vuln_predicate_scan(grype, source="x", created=None)


def test_trivy_times_with_nanoseconds_and_offsets() -> None:
    assert documents.parse_time("2026-12-06T10:00:00.123456789Z") == dt.datetime(
        2026, 12, 6, 10, 0, 0, 123456, tzinfo=dt.UTC
    )
    assert documents.parse_time("2026-12-06T12:00:00+02:00") == dt.datetime(
        2026, 12, 6, 10, tzinfo=dt.UTC
    )
    assert documents.parse_time("yesterday") is None


def vex(*statements: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "timestamp": "2026-01-01T00:00:00Z",
        "statements": list(statements),
    }


def test_vex_the_latest_statement_wins_and_another_images_statement_never_suppresses() -> None:
    found = documents.vex_statements(vex(
        {"vulnerability": {"name": "CVE-1"}, "status": "not_affected", "timestamp": "2026-01-01T00:00:00Z"},
        {"vulnerability": {"name": "CVE-1"}, "status": "affected", "timestamp": "2026-02-01T00:00:00Z"},
        {"vulnerability": "CVE-2", "status": "not_affected", "products": [f"pkg:oci/app@{DIGEST.replace(':', '%3A')}"]},
        {"vulnerability": {"name": "CVE-3"}, "status": "not_affected", "products": [{"@id": "pkg:oci/other@sha256%3A" + "b" * 64}]},
        {"vulnerability": {"name": "CVE-4"}, "status": "fixed"},
    ))  # fmt: skip
    assert documents.suppressed(found, frozenset({DIGEST})) == {"CVE-2"}


def test_a_report_past_the_vulnerability_bound_is_named() -> None:
    many = [
        {"VulnerabilityID": f"CVE-{i}", "Severity": "LOW"}
        for i in range(documents.MAX_VULNERABILITIES + 1)
    ]
    with pytest.raises(LookupFailed, match="MAX_VULNERABILITIES"):
        documents.trivy_vulnerabilities(
            {"SchemaVersion": 2, "Results": [{"Vulnerabilities": many}]}
        )


def test_referrers_are_chosen_by_type_before_any_blob_is_fetched() -> None:
    def d(artifact_type: str, **annotations: str) -> Descriptor:
        return Descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            DIGEST,
            10,
            annotations=annotations,
            artifact_type=artifact_type,
        )

    offered = [
        d("application/spdx+json"),
        d("application/vnd.dev.cosign.artifact.sig.v1+json"),
        d(
            "application/vnd.in-toto+json",
            **{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"},
        ),
        d(
            "application/vnd.in-toto+json",
            **{"in-toto.io/predicate-type": documents.VULN_PREDICATES.__iter__().__next__()},
        ),
        d(choose.TRIVY_REPORT),
        d(choose.OPENVEX),
        d("application/json", **{"created-by": "trivy"}),
        d("application/json"),
    ]
    kept = [x.artifact_type for x in choose.referrers(offered)]
    assert kept == [
        "application/vnd.in-toto+json",
        choose.TRIVY_REPORT,
        choose.OPENVEX,
        "application/json",
    ]
    assert len(choose.referrers([d(choose.TRIVY_REPORT)] * 20)) == choose.MAX_REFERRERS


DATA = Path(__file__).parent / "data"


def test_baseguard_test_judges_described_scans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``baseguard test``: images described with a ``scan`` carry a Trivy report as a referrer."""
    assert main(["test", str(DATA)]) == 0
    assert "PASS" in capsys.readouterr().out
    # the same case expecting an allow fails, and says what was found and the fix
    case = (DATA / "patched" / "baseguard-test.yaml").read_text()
    for name in ("patched-bases.yaml", "deployment.yaml"):
        (tmp_path / name).write_text((DATA / "patched" / name).read_text())
    (tmp_path / "baseguard-test.yaml").write_text(
        case.replace(
            "on-old-base, verdict: deny, rules: [fixable-vulnerabilities]",
            "on-old-base, verdict: allow, rules: []",
        )
    )
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "has 1 fixable CRITICAL vulnerability in its base's layers (CVE-2024-5535 libssl3 3.0.11-1, "
        "fixed in 3.0.15-1); the base was rebuilt since and scans clean of them; rebuild on the "
        "current docker.io/library/python:3.12-slim"
    ) in out


def test_findings_are_placed_by_layer_and_unknown_without_an_established_base() -> None:
    from controller.evidence.gather import attributed
    from controller.evidence.model import Scan, Vulnerability, Where

    base, own = ("sha256:" + "1" * 64,), ("sha256:" + "2" * 64,)
    found = tuple(
        Vulnerability(f"CVE-{i}", "p", "1", "2", "CRITICAL", diff_id=d)
        for i, d in enumerate((base[0], own[0], "sha256:" + "3" * 64, ""))
    )
    scan = Scan("s", "trivy", None, found)
    placed = [v.where for v in attributed(scan, base, base + own).vulnerabilities]
    assert placed == [Where.BASE, Where.APPLICATION, Where.UNKNOWN, Where.UNKNOWN]
    # no base established: no layer is known to be the application's
    assert {v.where for v in attributed(scan, None, base + own).vulnerabilities} == {Where.UNKNOWN}
    # built from scratch: every layer is the image's own
    assert attributed(scan, (), base + own).vulnerabilities[0].where is Where.APPLICATION
