"""Key-based verification never loads ``sigstore``; keyless loads it and never TUF's network."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.trust.authorities import InvalidAuthority, KeylessAuthority

KEY_BASED = """
import sys
from datetime import UTC, datetime
from support import signing
from controller.trust.authorities import KeyAuthority
from controller.trust.keys import load_key
from controller.trust.simplesigning import SimpleSigning
from controller.trust.verify import BundleArtifact, DsseArtifact, verify

key = signing.new_key()
digest = signing.sha256(b"image")
authority = KeyAuthority("platform", (load_key("release", signing.public_pem(key)),))
payload = signing.simple_signing_payload(digest)
artifacts = [
    SimpleSigning(payload, signing.b64(signing.sign(key, payload))),
    BundleArtifact(signing.key_bundle(signing.message_signature(key, digest))),
]
assert all(verify(digest, [a], authority, datetime.now(UTC)).verified for a in artifacts)
print(sorted(m for m in sys.modules if m.split(".")[0] in {"sigstore", "tuf", "requests"}))
"""


def test_key_based_verification_loads_no_sigstore_no_tuf_no_http_client() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KEY_BASED], capture_output=True, text=True, cwd="tests", check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_keyless_authority_without_one_subject_or_with_a_bad_pattern_is_refused() -> None:
    with pytest.raises(InvalidAuthority, match="needs exactly one of subject, subjectRegExp"):
        KeylessAuthority("ci", None, issuer="https://issuer")  # type: ignore[arg-type]
    with pytest.raises(InvalidAuthority, match=r"subjectRegExp '\(' is not a regular expression"):
        KeylessAuthority("ci", None, issuer="https://issuer", subject_regexp="(")  # type: ignore[arg-type]
