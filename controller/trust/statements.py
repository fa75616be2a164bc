"""in-toto statements (v0.1 and v1): what an attestation says, and whether it is about this image.

PURE. A verified DSSE signature only proves who signed the statement; the
statement's ``subject`` list says which artifacts it is about. Libraries
(``sigstore``'s ``verify_dsse`` among them) return the payload unchecked, so
the subject digest is checked here: the digest judged must be one subject's
digest under the same algorithm, else ``other-image``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.trust.encoding import json_object
from controller.trust.results import Reason, Refused

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)
SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
#: What cosign's new bundle format signs for a plain image signature.
COSIGN_SIGN_V1 = "https://sigstore.dev/cosign/sign/v1"


@dataclass(frozen=True)
class Subject:
    """One subject: its name and digests (algorithm to lower-case hex)."""

    name: str
    digest: dict[str, str]


@dataclass(frozen=True)
class Statement:
    """A parsed statement; ``predicate`` is left as the JSON it was."""

    statement_type: str
    predicate_type: str
    subjects: tuple[Subject, ...]
    predicate: Any


def parse_statement(payload_type: str, payload: bytes) -> Statement:
    """The statement in a DSSE payload; ``unsupported`` for other payload or statement types."""
    if payload_type != PAYLOAD_TYPE:
        raise Refused(Reason.UNSUPPORTED, f"payload type {payload_type!r} is not {PAYLOAD_TYPE!r}")
    doc = json_object(payload, "the in-toto statement")
    kind = doc.get("_type")
    if not isinstance(kind, str) or kind not in STATEMENT_TYPES:
        raise Refused(Reason.UNSUPPORTED, f"statement type {kind!r} is not an in-toto Statement")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise Refused(Reason.MALFORMED, "the statement has no predicateType")
    raw = doc.get("subject")
    if not isinstance(raw, list) or not raw:
        raise Refused(Reason.MALFORMED, "the statement has no subject")
    subjects = []
    for i, entry in enumerate(raw):
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in digest.items()
        ):
            raise Refused(Reason.MALFORMED, f"the statement's subject[{i}] has no digest set")
        name = entry.get("name")
        subjects.append(Subject(name if isinstance(name, str) else "", dict(digest)))
    return Statement(str(kind), predicate_type, tuple(subjects), doc.get("predicate"))


def check_subject(statement: Statement, digest: str) -> Subject:
    """The subject that is the image judged; ``other-image`` naming what it is about otherwise."""
    algorithm, _, encoded = digest.partition(":")
    for subject in statement.subjects:
        if subject.digest.get(algorithm, "").lower() == encoded:
            return subject
    about = ", ".join(
        f"{s.name or '?'}@{next(iter(s.digest.items()), ('?', '?'))[0]}:"
        f"{next(iter(s.digest.values()), '?')}"
        for s in statement.subjects[:3]
    )
    raise Refused(
        Reason.OTHER_IMAGE, f"the statement is about {about}, not the image judged, {digest}"
    )
