"""The one entry: does ``authority`` vouch for the image ``digest``, by any of these artifacts?

PURE: the artifacts were fetched by the caller (and counted against its
budget); the time is the caller's, so a result can be reproduced. Each
artifact is judged alone; the image is verified when one of them verifies,
and otherwise the answer is the most telling refusal (a valid signature for
another image says more than a malformed one), with how many were examined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller import digests
from controller.trust.authorities import KeyAuthority, KeylessAuthority
from controller.trust.bundles import verify_key_bundle
from controller.trust.dsse import envelope_from_json, verify_envelope
from controller.trust.results import Reason, Refused, TrustResult
from controller.trust.simplesigning import SimpleSigning, verify_simple_signing
from controller.trust.statements import (
    COSIGN_SIGN_V1,
    Statement,
    check_subject,
    parse_statement,
)

Authority = KeyAuthority | KeylessAuthority


@dataclass(frozen=True)
class DsseArtifact:
    """A DSSE envelope as fetched (cosign ``.att`` layer, an attestation referrer's blob)."""

    envelope: bytes


@dataclass(frozen=True)
class BundleArtifact:
    """A Sigstore bundle as fetched (an OCI referrer's layer)."""

    bundle: bytes


Artifact = SimpleSigning | DsseArtifact | BundleArtifact

#: Signatures (or attestations) examined for one image and one authority. Each costs
#: signature verifications (keyless: a chain, an SCT, a checkpoint), and how many an
#: image has is the registry's to say. Past it the first ones are examined; if none of
#: them verifies the image is not evaluated (``too-many``), never verified.
MAX_ARTIFACTS = 16

#: The refusals from most to least telling.
_PRECEDENCE = (
    Reason.OTHER_IMAGE,
    Reason.OTHER_PREDICATE,
    Reason.OUTSIDE_WINDOW,
    Reason.WRONG_IDENTITY,
    Reason.TAMPERED,
    Reason.WRONG_KEY,
    Reason.BAD_SIGNATURE,
    Reason.UNTRUSTED,
    Reason.MALFORMED,
    Reason.UNSUPPORTED,
    Reason.TOO_MANY,
)


def verify_artifact(
    digest: str,
    artifact: Artifact,
    authority: Authority,
    at: datetime,
    *,
    predicate_type: str | None = None,
) -> TrustResult:
    """One artifact judged for ``digest``.

    With ``predicate_type``, only a statement of that type counts (an attestation).
    Without, only a signature counts: simple signing, a bundle's message signature,
    or a statement of cosign's signature type (``https://sigstore.dev/cosign/sign/v1``).
    """
    problem = digests.problem(digest)
    if problem:
        return TrustResult.refused(authority.name, Reason.MALFORMED, problem)
    try:
        signer, statement = _verify(digest, artifact, authority, at)
        if predicate_type is not None and (
            statement is None or statement.predicate_type != predicate_type
        ):
            got = statement.predicate_type if statement else "a plain signature"
            raise Refused(Reason.OTHER_PREDICATE, f"an attestation of {got}, not {predicate_type}")
        if predicate_type is None and statement and statement.predicate_type != COSIGN_SIGN_V1:
            # A signed scan report or provenance about an image is not its signer's approval
            # of it: only cosign's signature statement stands for a signature.
            raise Refused(
                Reason.OTHER_PREDICATE,
                f"an attestation of {statement.predicate_type}, not a signature ({COSIGN_SIGN_V1})",
            )
    except Refused as refused:
        return TrustResult.refused(authority.name, refused.reason, refused.message)
    what = (
        f"attestation {statement.predicate_type}" if statement and predicate_type else "signature"
    )
    return TrustResult.ok(
        authority.name,
        signer,
        f"{what} for {digest} verified: signed by {signer}",
        predicate_type=statement.predicate_type if statement else None,
    )


def verify(
    digest: str,
    artifacts: Sequence[Artifact],
    authority: Authority,
    at: datetime,
    *,
    predicate_type: str | None = None,
    limit: int = MAX_ARTIFACTS,
) -> TrustResult:
    """Whether any of ``artifacts`` verifies for ``digest`` under ``authority``; else the best refusal.

    At most ``limit`` artifacts are examined; past it, an image none of them vouches
    for is refused as ``too-many`` with the count, not as unsigned or invalid.
    """
    if not artifacts:
        kind = f"attestation of {predicate_type}" if predicate_type else "signature"
        return TrustResult.refused(authority.name, Reason.UNSIGNED, f"no {kind} for {digest}")
    results = [
        verify_artifact(digest, a, authority, at, predicate_type=predicate_type)
        for a in artifacts[:limit]
    ]
    for result in results:
        if result.verified:
            return result
    if len(artifacts) > limit:
        return TrustResult.refused(
            authority.name,
            Reason.TOO_MANY,
            f"{len(artifacts)} signatures for {digest}, more than {limit}; the first {limit} "
            "did not verify and the rest were not examined",
        )
    best = min(results, key=lambda r: _PRECEDENCE.index(r.reason) if r.reason else 99)
    if len(results) == 1:
        return best
    return TrustResult.refused(
        authority.name,
        best.reason or Reason.MALFORMED,
        f"none of {len(results)} {'attestations' if predicate_type else 'signatures'} verified;"
        f" the closest: {best.message}",
    )


def _verify(
    digest: str, artifact: Artifact, authority: Authority, at: datetime
) -> tuple[str, Statement | None]:
    if isinstance(authority, KeylessAuthority):
        if isinstance(artifact, SimpleSigning):
            from controller.trust.cosignkeyless import verify_cosign_keyless

            identity, _ = verify_cosign_keyless(artifact, digest, authority)
            return identity, None
        if not isinstance(artifact, BundleArtifact):
            raise Refused(
                Reason.UNSUPPORTED,
                "keyless signatures are verified from Sigstore bundles or cosign's "
                "keyless simple signing; a bare DSSE envelope carries no certificate",
            )
        # Imported here: ``sigstore`` (and the HTTP and TUF clients it imports) costs half a
        # second to load, which key-based verification and ``check`` never need.
        from controller.trust.keyless import verify_keyless_bundle

        return verify_keyless_bundle(artifact.bundle, digest, authority)
    keys = authority.keys
    if isinstance(artifact, SimpleSigning):
        key, _ = verify_simple_signing(artifact, digest, keys, at)
        return key.name, None
    if isinstance(artifact, DsseArtifact):
        envelope = envelope_from_json(artifact.envelope)
        key = verify_envelope(envelope, keys, at)
        statement = parse_statement(envelope.payload_type, envelope.payload)
        check_subject(statement, digest)
        return key.name, statement
    key, bundled = verify_key_bundle(artifact.bundle, digest, keys, at)
    return key.name, bundled
