"""Pushing signatures as cosign does, for the trust policy tests: tags and referrers.

The manifests are written from cosign's and the OCI 1.1 specs (nothing here
imports ``controller``): a signature manifest under the tag ``sha256-<hex>.sig``
whose layers are simple-signing payloads with the signature in the
``dev.cosignproject.cosign/signature`` annotation; attestations under
``sha256-<hex>.att`` as DSSE envelope layers; Sigstore bundles as referrers (an
artifact manifest with ``subject``), kept under the referrers tag
``sha256-<hex>`` for a registry without the referrers API.
"""

from __future__ import annotations

import json
from typing import Any

from support import signing
from support.images import Pusher, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def tag_of(digest: str, suffix: str = "") -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}-{hexa}{suffix}"


def _manifest(pusher: Pusher, repository: str, layers: list[dict[str, Any]], **extra: Any) -> bytes:
    config = pusher.push_blob(repository, b"{}")
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": EMPTY_CONFIG, **config},
            "layers": layers,
            **extra,
        }
    ).encode()


def push_signature(
    pusher: Pusher,
    repository: str,
    digest: str,
    key: signing.PrivateKey,
    *,
    signed_digest: str | None = None,
    payload: bytes | None = None,
    tamper: bool = False,
) -> str:
    """cosign sign --key: the ``.sig`` tag for ``digest``; returns the signature manifest digest.

    ``signed_digest`` signs another image's digest (stored under this one's tag);
    ``tamper`` changes the payload after signing (the signature is over the original).
    """
    body = payload or signing.simple_signing_payload(signed_digest or digest, f"{pusher.host}/{repository}")
    signature = signing.b64(signing.sign(key, body))
    if tamper:
        body = body.replace(b'"creator":"tests"', b'"creator":"mallory"')
    blob = pusher.push_blob(repository, body)
    layer = {
        "mediaType": SIMPLE_SIGNING,
        **blob,
        "annotations": {"dev.cosignproject.cosign/signature": signature},
    }
    manifest = _manifest(pusher, repository, [layer])
    return pusher.push_manifest(repository, tag_of(digest, ".sig"), manifest, OCI_MANIFEST)


def push_attestation(
    pusher: Pusher,
    repository: str,
    digest: str,
    key: signing.PrivateKey,
    predicate_type: str,
    *,
    about: str | None = None,
) -> str:
    """cosign attest --key --type: a DSSE envelope layer under the ``.att`` tag.

    ``about`` makes the statement's subject another image's digest (stored under this one's tag).
    """
    statement = signing.statement(about or digest, predicate_type)
    envelope = json.dumps(signing.envelope(key, statement)).encode()
    blob = pusher.push_blob(repository, envelope)
    layer = {
        "mediaType": DSSE,
        **blob,
        "annotations": {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type},
    }
    manifest = _manifest(pusher, repository, [layer])
    return pusher.push_manifest(repository, tag_of(digest, ".att"), manifest, OCI_MANIFEST)


def push_bundle_referrer(
    pusher: Pusher,
    repository: str,
    subject_digest: str,
    subject_size: int,
    bundle: bytes,
    *,
    artifact_type: str = BUNDLE,
    fallback_tag: bool = True,
) -> str:
    """A Sigstore bundle (or, with ``artifact_type``, any blob) as an OCI 1.1 referrer of the
    subject; with ``fallback_tag``, the referrers tag index too (for a registry without the API)."""
    blob = pusher.push_blob(repository, bundle)
    manifest = _manifest(
        pusher,
        repository,
        [{"mediaType": artifact_type, **blob}],
        artifactType=artifact_type,
        subject={"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
    )
    digest = pusher.push_manifest(repository, sha256(manifest), manifest, OCI_MANIFEST)
    if not fallback_tag:
        return digest
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest), "artifactType": BUNDLE}
            ],
        }
    ).encode()
    pusher.push_manifest(repository, tag_of(subject_digest), index, OCI_INDEX)
    return digest


def push_keyless_signature(pusher: Pusher, repository: str, digest: str, parts: dict[str, Any]) -> str:
    """cosign sign (keyless, cosign 2): the ``.sig`` layer with its certificate, chain and log promise.

    ``parts`` is what :func:`support.sigstore_root.simple_signing_keyless` returns.
    """
    blob = pusher.push_blob(repository, parts["payload"])
    notes = {
        "dev.cosignproject.cosign/signature": parts["signature"],
        "dev.sigstore.cosign/certificate": parts["certificate"],
        "dev.sigstore.cosign/bundle": parts["rekor_bundle"],
    }
    if parts.get("chain"):
        notes["dev.sigstore.cosign/chain"] = parts["chain"]
    manifest = _manifest(pusher, repository, [{"mediaType": SIMPLE_SIGNING, **blob, "annotations": notes}])
    return pusher.push_manifest(repository, tag_of(digest, ".sig"), manifest, OCI_MANIFEST)
