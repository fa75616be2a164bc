"""Whatever a registry serves as a signature, the verifier answers a result, never a traceback.

Valid artifacts of every format are mutated at a random place in their JSON (a
value replaced by another JSON value of any type) or replaced by random bytes;
each must come back as a :class:`TrustResult`, and a refused one carries a reason.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support import signing
from support.preconditions import in_ci
from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore, simple_signing_keyless

from controller.trust.authorities import KeyAuthority, KeylessAuthority
from controller.trust.keys import load_key
from controller.trust.results import TrustResult
from controller.trust.roots import load_trusted_root
from controller.trust.simplesigning import SimpleSigning
from controller.trust.verify import BundleArtifact, DsseArtifact, verify

NOW = datetime.now(UTC)
IMAGE = signing.sha256(b"an image")
KEY = signing.new_key()
KEYS = KeyAuthority("platform", (load_key("release", signing.public_pem(KEY)),))
_LOCAL = LocalSigstore(Path(tempfile.mkdtemp(prefix="trust-props-")))
KEYLESS = KeylessAuthority("ci", load_trusted_root(_LOCAL.path), issuer=GITHUB, subject=WORKFLOW)

VALID: dict[str, tuple[bytes, Any]] = {
    "keyless-message": (_LOCAL.bundle(_LOCAL.sign_message(IMAGE)), KEYLESS),
    "keyless-dsse": (_LOCAL.bundle(_LOCAL.sign_statement(signing.statement(IMAGE))), KEYLESS),
    "key-message": (signing.key_bundle(signing.message_signature(KEY, IMAGE)), KEYS),
    "key-dsse": (
        signing.key_bundle({"dsseEnvelope": signing.envelope(KEY, signing.statement(IMAGE))}),
        KEYS,
    ),
    "envelope": (json.dumps(signing.envelope(KEY, signing.statement(IMAGE))).encode(), KEYS),
    "simple": (signing.simple_signing_payload(IMAGE), KEYS),
}
_COSIGN_KEYLESS = simple_signing_keyless(_LOCAL, IMAGE)
VALID["cosign-keyless"] = (_COSIGN_KEYLESS["rekor_bundle"].encode(), KEYLESS)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.binary(max_size=40).map(signing.b64),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
SETTINGS = settings(max_examples=120, deadline=None, derandomize=in_ci(), database=None)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], tuple(rest), new)
    return copy


def _judge(kind: str, raw: bytes) -> TrustResult:
    authority = VALID[kind][1]
    if kind == "cosign-keyless":
        art: Any = SimpleSigning(
            **{**_COSIGN_KEYLESS, "rekor_bundle": raw.decode(errors="replace")}
        )
    elif kind == "simple":
        art = SimpleSigning(raw, signing.b64(signing.sign(KEY, raw)))
    elif kind == "envelope":
        art = DsseArtifact(raw)
    else:
        art = BundleArtifact(raw)
    attestation = signing.SLSA_V1 if kind in {"keyless-dsse", "key-dsse", "envelope"} else None
    return verify(IMAGE, [art], authority, NOW, predicate_type=attestation)


def test_every_valid_artifact_verifies() -> None:
    for kind, (raw, _) in VALID.items():
        assert _judge(kind, raw).verified, kind


@SETTINGS
@given(kind=st.sampled_from(sorted(VALID)), data=st.data(), value=json_values)
def test_a_mutated_artifact_gets_a_result(kind: str, data: st.DataObject, value: Any) -> None:
    doc = json.loads(VALID[kind][0])
    path = data.draw(st.sampled_from(_paths(doc)))
    result = _judge(kind, json.dumps(_replace(doc, path, value)).encode())
    assert isinstance(result, TrustResult)
    assert result.verified or result.reason is not None
    assert result.authority == VALID[kind][1].name


@SETTINGS
@given(kind=st.sampled_from(sorted(VALID)), raw=st.binary(max_size=200))
def test_random_bytes_get_a_refusal(kind: str, raw: bytes) -> None:
    result = _judge(kind, raw)
    assert not result.verified
    assert result.reason is not None
