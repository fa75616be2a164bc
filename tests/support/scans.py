"""Scan evidence as scanners and their tools leave it in a registry, pushed by tests.

- :func:`trivy_report`: Trivy's JSON report (``SchemaVersion: 2``), written from
  Trivy's documented schema (``Results[].Vulnerabilities[]`` with
  ``VulnerabilityID``, ``PkgName``, ``InstalledVersion``, ``FixedVersion``,
  ``Severity``, ``Layer.{Digest,DiffID}``).
- :func:`cosign_attest`: what ``cosign attest --type vuln`` writes: an in-toto
  statement in a DSSE envelope, one layer per attestation of the manifest at
  the tag ``sha256-<hex>.att``, annotated ``predicateType``.
- :func:`push_artifact`: an OCI 1.1 artifact with a ``subject`` (a Trivy report,
  or OpenVEX), listed in the ``sha256-<hex>`` fallback-tag index as clients do for
  a registry without the referrers API.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from support.images import Pushed, Pusher, layer, sha256
from support.registry import RegistryProcess
from support.signing import PrivateKey, envelope

OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
TRIVY = "application/vnd.aquasec.trivy.report.v1+json"


def vuln(
    cve: str, package: str, installed: str, fixed: str, severity: str, diff_id: str
) -> dict[str, Any]:
    return {
        "VulnerabilityID": cve,
        "PkgID": f"{package}@{installed}",
        "PkgName": package,
        "InstalledVersion": installed,
        "FixedVersion": fixed,
        "Status": "fixed" if fixed else "affected",
        "Layer": {"Digest": "sha256:" + "0" * 64, "DiffID": diff_id},
        "SeveritySource": "debian",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{cve.lower()}",
        "Title": f"{package}: a flaw",
        "Severity": severity,
    }


def trivy_report(image: str, vulns: Sequence[Mapping[str, Any]], *, created: str) -> dict[str, Any]:
    return {
        "SchemaVersion": 2,
        "CreatedAt": created,
        "ArtifactName": image,
        "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "debian", "Name": "12.8"}},
        "Results": [
            {
                "Target": f"{image} (debian 12.8)",
                "Class": "os-pkgs",
                "Type": "debian",
                "Vulnerabilities": list(vulns),
            }
        ],
    }


def vuln_statement(
    subject: Pushed, report: Mapping[str, Any], *, finished: str | None
) -> dict[str, Any]:
    """Trivy's ``--format cosign-vuln`` predicate in an in-toto statement about ``subject``."""
    metadata = {"scanStartedOn": finished, "scanFinishedOn": finished} if finished else {}
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": VULN,
        "subject": [
            {
                "name": subject.repository,
                "digest": {"sha256": subject.digest.removeprefix("sha256:")},
            }
        ],
        "predicate": {
            "invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {
                "uri": "pkg:github/aquasecurity/trivy@0.58.1",
                "version": "0.58.1",
                "db": {"uri": "", "version": ""},
                "result": dict(report),
            },
            "metadata": metadata,
        },
    }


def dsse(statement: Mapping[str, Any]) -> bytes:
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": payload,
            "signatures": [{"keyid": "", "sig": "c2ln"}],
        }
    ).encode()


def cosign_attest(
    pusher: Pusher,
    subject: Pushed,
    statements: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[PrivateKey | None] = (),
) -> str:
    """The ``.att`` manifest cosign writes for ``subject``; returns its tag.

    ``keys[i]`` signs ``statements[i]`` (cosign ``attest --key``); without one the
    envelope carries a signature that verifies under no key.
    """
    repo = subject.repository
    layers = []
    for i, statement in enumerate(statements):
        key = keys[i] if i < len(keys) else None
        if key is None:
            body = dsse(statement)
        else:
            body = json.dumps(envelope(key, json.dumps(statement).encode())).encode()
        layers.append({
            "mediaType": DSSE,
            **pusher.push_blob(repo, body),
            "annotations": {"dev.cosignproject.cosign/signature": "", "predicateType": str(statement["predicateType"])},
        })  # fmt: skip
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **pusher.push_blob(repo, b"{}"),
        },
        "layers": layers,
    }
    tag = "sha256-" + subject.digest.removeprefix("sha256:") + ".att"
    pusher.push_manifest(repo, tag, json.dumps(manifest).encode(), OCI)
    return tag


def push_artifact(
    pusher: Pusher,
    subject: Pushed,
    documents: Sequence[tuple[str, bytes, Mapping[str, str]]],
) -> None:
    """Artifacts about ``subject`` (artifact type, body, annotations), and the fallback-tag index."""
    repo = subject.repository
    descriptors = []
    for artifact_type, body, notes in documents:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, **pusher.push_blob(repo, b"{}")},
            "layers": [{"mediaType": artifact_type, **pusher.push_blob(repo, body)}],
            "subject": subject.descriptor(),
            "annotations": dict(notes),
        }
        raw = json.dumps(manifest).encode()
        digest = pusher.push_manifest(repo, sha256(raw), raw, OCI)
        descriptors.append({
            "mediaType": OCI, "digest": digest, "size": len(raw),
            "artifactType": artifact_type, "annotations": dict(notes),
        })  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    tag = "sha256-" + subject.digest.removeprefix("sha256:")
    pusher.push_manifest(repo, tag, json.dumps(index).encode(), OCI_INDEX)


def vex_statement(subject: Pushed, document: bytes) -> dict[str, Any]:
    """An OpenVEX document as an in-toto predicate about ``subject`` (``cosign attest --type openvex``)."""
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://openvex.dev/ns/v0.2.0",
        "subject": [
            {"name": subject.repository, "digest": {"sha256": subject.digest.removeprefix("sha256:")}}
        ],
        "predicate": json.loads(document),
    }


def openvex(subject: Pushed, not_affected: Sequence[str], *, product: str | None = None) -> bytes:
    product_id = product or f"pkg:oci/app@{subject.digest.replace(':', '%3A')}"
    return json.dumps({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "security@example.com",
        "timestamp": "2026-12-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": cve},
                "products": [{"@id": product_id}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
            for cve in not_affected
        ],
    }).encode()  # fmt: skip


# --------------------------------------------------------------------------- a scanned app

BASE_L1 = layer({"etc/os-release": "ID=debian\nVERSION_ID=12\n"})
BASE_L2 = layer({"usr/lib/libssl.so.3": "openssl 3.0.11\n"})
NEW_BASE_L2 = layer({"usr/lib/libssl.so.3": "openssl 3.0.15\n"})
APP_L = layer({"app/main.py": "print('shop')\n"})


def push_app(registry: RegistryProcess, repo: str) -> tuple[Pushed, Pushed]:
    pusher = registry.pusher
    base = pusher.push_image(f"{repo}/python", "3.12-slim", [BASE_L1, BASE_L2])
    ann = {
        "org.opencontainers.image.base.name": f"{registry.host}/{repo}/python:3.12-slim",
        "org.opencontainers.image.base.digest": base.digest,
    }
    app = pusher.push_image(f"{repo}/shop", "1.0.0", [BASE_L1, BASE_L2, APP_L], annotations=ann)
    return base, app


def findings(app: Pushed) -> list[dict[str, object]]:
    return [
        vuln(
            "CVE-2024-5535",
            "libssl3",
            "3.0.11-1~deb12u2",
            "3.0.15-1~deb12u1",
            "CRITICAL",
            BASE_L2.diff_id,
        ),
        vuln("CVE-2024-0001", "libc6", "2.36-9", "", "CRITICAL", BASE_L1.diff_id),  # no fix yet
        vuln("CVE-2024-6345", "setuptools", "65.5.1", "70.0.0", "HIGH", APP_L.diff_id),
    ]
