"""Whatever a registry serves as a scan, VEX or attestation, the readers answer with data,
a :class:`DocumentError` (ignored, with its reason) or a :class:`LookupFailed` naming a
bound: never another exception (a traceback would be a 500, an exit 1 "denied")."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import LookupFailed
from controller.evidence import documents
from controller.evidence.documents import DocumentError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from([
    "_type", "predicateType", "subject", "predicate", "scanner", "result", "metadata",
    "scanFinishedOn", "Results", "Vulnerabilities", "VulnerabilityID", "PkgName",
    "FixedVersion", "Severity", "Layer", "DiffID", "Metadata", "DiffIDs", "CreatedAt",
    "@context", "statements", "vulnerability", "products", "status", "timestamp",
    "payload", "payloadType", "dsseEnvelope", "digest", "sha256", "name", "@id",
])  # fmt: skip

VALID: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v0.1",
    "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "subject": [{"name": "x", "digest": {"sha256": "a" * 64}}],
    "predicate": {
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.1", "version": "0.58.1", "result": {
            "SchemaVersion": 2, "CreatedAt": "2026-12-06T10:00:00Z", "Metadata": {"DiffIDs": ["sha256:" + "b" * 64]},
            "Results": [{"Target": "t", "Vulnerabilities": [{
                "VulnerabilityID": "CVE-1", "PkgName": "p", "InstalledVersion": "1", "FixedVersion": "2",
                "Severity": "CRITICAL", "Layer": {"DiffID": "sha256:" + "b" * 64},
            }]}],
        }},
        "metadata": {"scanFinishedOn": "2026-12-06T10:00:00Z"},
    },
}  # fmt: skip
VEX: dict[str, Any] = {
    "@context": "https://openvex.dev/ns/v0.2.0",
    "statements": [
        {
            "vulnerability": {"name": "CVE-1"},
            "products": [{"@id": "pkg:oci/a"}],
            "status": "not_affected",
        }
    ],
}


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with a few values replaced, keys added or removed at random places."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        node = doc
        for _ in range(draw(st.integers(0, 6))):
            if isinstance(node, dict) and node:
                node = node[draw(st.sampled_from(sorted(node)))]
            elif isinstance(node, list) and node:
                node = node[draw(st.integers(0, len(node) - 1))]
            else:
                break
        if isinstance(node, dict):
            node[draw(KEYS)] = draw(JSON)
        elif isinstance(node, list):
            node.append(draw(JSON))
    return doc


def read_all(doc: Any) -> None:
    body = json.dumps(doc).encode()
    envelope = json.dumps(
        {"payloadType": "application/vnd.in-toto+json", "payload": base64.b64encode(body).decode()}
    )
    for text in (body, envelope.encode()):
        with contextlib.suppress(DocumentError, LookupFailed):
            statement = documents.parse_statement(text)
            documents.vuln_predicate_scan(statement.predicate, source="s", created=None)
    for reader in (
        lambda: documents.trivy_scan(body, source="s", created=None),
        lambda: documents.vuln_predicate_scan(doc, source="s", created=None),
        lambda: documents.suppressed(
            documents.vex_statements(doc), frozenset({"sha256:" + "a" * 64})
        ),
    ):
        with contextlib.suppress(DocumentError, LookupFailed):
            reader()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(mutated(VALID), mutated(VALID["predicate"]["scanner"]["result"]), mutated(VEX), JSON)
)
def test_the_readers_never_raise_anything_else(doc: Any) -> None:
    read_all(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {"@context": "https://openvex.dev/ns", "statements": [{"vulnerability": "C", "products": 5}]},
        {"@context": "https://openvex.dev/ns", "statements": [{"vulnerability": {"name": 5}, "products": [5]}]},
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "subject": 5},
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "subject": [{"digest": 5}]},
        {"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"VulnerabilityID": "C", "Layer": 5}]}], "Trivy": 5},
        {"SchemaVersion": 2, "Results": 5, "Metadata": {"DiffIDs": 5}},
        {"scanner": {"result": {"SchemaVersion": 2}, "uri": 5}, "metadata": 5},
    ],
    ids=["vex-products-int", "vex-name-int", "subject-int", "subject-digest-int", "layer-int", "results-int", "scanner-uri-int"],
)  # fmt: skip
def test_found_shapes_that_raised_type_errors(doc: Any) -> None:
    """``products: 5`` and ``subject: 5`` raised ``TypeError`` (found by hand after the property run)."""
    read_all(doc)
