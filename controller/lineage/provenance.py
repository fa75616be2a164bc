"""BuildKit provenance: which images a build pulled, read from in-toto statements.

PURE: bytes and parsed manifests in, frozen data out; no registry, no clock.
``docker buildx`` (since 0.10) writes no base annotation and no base label; what
it writes is a provenance *attestation*: an extra manifest in the image index
(``platform: unknown/unknown``, annotated ``vnd.docker.reference.type:
attestation-manifest`` and ``vnd.docker.reference.digest: <platform manifest>``)
whose layers are in-toto statements. The same statements may instead hang off
the image as OCI 1.1 *referrers* (manifests whose ``subject`` is the image).

A SLSA provenance statement lists the build's inputs: v0.2 in
``predicate.materials``, v1 in ``predicate.buildDefinition.resolvedDependencies``.
Images among them are ``pkg:docker/…`` purls with a sha256 (of an index or of a
platform manifest). A multi-stage build lists every stage's image and the
Dockerfile frontend's, so a statement yields *candidates*; the resolver keeps the
one whose layers are the longest prefix of the image's, which is why nothing
here guesses which candidate is the ``FROM`` of the final stage.

Trust rules, each enforced here:

- a statement speaks only for its own ``subject``: one whose subjects do not
  include the platform manifest being judged is not read for it (an arm64
  statement must not name the amd64 image's base);
- every input is bounded (statement bytes, materials read, image candidates,
  statements and referrers looked at); past a bound the lookup fails with a
  message that names the bound, as for every other per-review bound.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import InvalidReference, LookupFailed
from controller.reference import Reference, parse
from controller.registry import jsonread
from controller.registry.media import Descriptor, ImageIndex, ImageManifest, Platform

IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
#: BuildKit's ``oci-artifact=true`` attestation manifests, pushed as referrers.
DOCKER_ATTESTATION = "application/vnd.docker.attestation.manifest.v1+json"
STATEMENT_TYPES = frozenset({IN_TOTO, DSSE})
PREDICATE_TYPE = "in-toto.io/predicate-type"  # layer annotation BuildKit writes
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_TYPES = frozenset({SLSA_V02, SLSA_V1})
STATEMENT_PREFIX = "https://in-toto.io/Statement/"

#: Largest statement read. BuildKit's ``mode=max`` provenance of a large build is
#: tens of KiB; a MiB is room to spare and still cheap to parse.
MAX_STATEMENT_BYTES = 1024 * 1024
#: Materials (or resolved dependencies) read from one statement.
MAX_MATERIALS = 256
#: Distinct images among them: each one costs registry requests to check.
MAX_CANDIDATES = 16
#: Provenance statements (in-toto layers) read per attestation manifest.
MAX_STATEMENTS = 4
#: Referrer manifests looked at per image.
MAX_REFERRERS = 8


class StatementError(ValueError):
    """A statement that cannot be read (not JSON, not in-toto): ignored, with this reason."""


def bound_exceeded(what: str, limit: int, bound: str) -> LookupFailed:
    """The error for a bound: the message names it (``MAX_CANDIDATES``), so a user can tell why."""
    return LookupFailed(
        f"provenance: {what} exceeds the bound of {limit} ({bound})",
        context={"code": "BOUND", "bound": bound},
    )


# --------------------------------------------------------------------------- purls


@dataclass(frozen=True)
class ImageMaterial:
    """An image a build pulled: ``reference`` is ``name:tag@sha256:…`` (the digest it resolved to)."""

    reference: Reference
    platform: Platform | None  # the purl's ``platform`` qualifier, when given


def parse_purl(uri: str) -> tuple[Reference, Platform | None]:
    """A ``pkg:docker/…`` purl as a reference and the platform it was pulled for.

    ``pkg:docker/alpine@3.17?platform=linux%2Famd64`` is
    ``docker.io/library/alpine:3.17`` (BuildKit writes Docker Hub's library
    images without ``library/``, as Docker's short names do; other registries'
    names carry their host: ``pkg:docker/ghcr.io/org/app@v1``). The version is a
    tag, or a digest; a ``digest`` qualifier pins the tag. Raises
    :class:`ValueError` for anything else, saying why.
    """
    text = uri.strip()
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() != "pkg":
        raise ValueError(f"{uri!r} is not a package URL")
    rest = rest.lstrip("/").split("#", 1)[0]
    rest, _, query = rest.partition("?")
    purl_type, sep, path = rest.partition("/")
    if purl_type.lower() != "docker" or not sep:
        raise ValueError(f"{uri!r} is not a pkg:docker package URL")
    path, at, version = path.rpartition("@") if "@" in path else (path, "", "")
    segments = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
    if not segments:
        raise ValueError(f"{uri!r} names no image")
    qualifiers = {k.lower(): v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=False)}
    version = urllib.parse.unquote(version) if at else ""
    tag: str | None = None
    digest = qualifiers.get("digest")
    if version.startswith("sha256:"):
        if digest is not None and digest != version:
            raise ValueError(f"{uri!r}: digest qualifier {digest} contradicts version {version}")
        digest = version
    elif version:
        tag = version
    name = "/".join(segments) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    try:
        ref = parse(name)
    except InvalidReference as exc:
        raise ValueError(f"{uri!r}: {exc}") from None
    platform = None
    if qualifiers.get("platform"):
        try:
            platform = Platform.parse(qualifiers["platform"])
        except ValueError as exc:
            raise ValueError(f"{uri!r}: {exc}") from None
    return ref, platform


def _sha256_of(digests: Any) -> str | None:
    """``{"sha256": "<hex>"}`` → ``sha256:<hex>`` when well formed."""
    if not isinstance(digests, dict):
        return None
    hexa = digests.get("sha256")
    if not isinstance(hexa, str):
        return None
    digest = f"sha256:{hexa}"
    try:
        parse(f"example.invalid/x@{digest}")
    except InvalidReference:
        return None
    return digest


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    """A provenance statement: what it is about, and the images its build pulled."""

    predicate_type: str
    subjects: frozenset[str]  # sha256 digests
    images: tuple[ImageMaterial, ...]
    skipped: tuple[str, ...] = ()  # image materials that could not be used, and why

    def describes(self, digest: str) -> bool:
        return digest in self.subjects


def _unwrap(obj: Any) -> Any:
    """A DSSE envelope (cosign, Sigstore) carries the statement base64-encoded in ``payload``.

    Signatures are not checked: a claim only says which bases to try, and the
    layers decide whether the image is built on one of them.
    """
    if isinstance(obj, dict) and "payload" in obj and "payloadType" in obj:
        payload = obj.get("payload")
        if not isinstance(payload, str):
            raise StatementError("DSSE envelope without a payload")
        try:
            decoded = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise StatementError(f"DSSE payload is not base64 JSON: {exc}") from None
        return _read(decoded, "its DSSE payload", "DSSE payload is not base64 JSON")
    return obj


def _read(body: bytes, what: str, invalid: str) -> Any:
    """JSON through :mod:`controller.registry.jsonread`: not JSON is a :class:`StatementError`
    (the statement is ignored, with the reason), over a bound a :class:`LookupFailed` naming it."""
    try:
        return jsonread.read(body, what, max_bytes=MAX_STATEMENT_BYTES)
    except LookupFailed as exc:
        if exc.context.get("code") != "INVALID":
            raise LookupFailed(f"provenance: {exc.message}", context=exc.context) from None
        raise StatementError(f"{invalid}: {exc.message.partition(' is not JSON: ')[2]}") from None


def _materials(predicate_type: str, predicate: Mapping[str, Any]) -> list[Any]:
    if predicate_type == SLSA_V1:
        definition = predicate.get("buildDefinition")
        found = definition.get("resolvedDependencies") if isinstance(definition, dict) else None
    else:
        found = predicate.get("materials")
    return found if isinstance(found, list) else []


def parse_statement(body: bytes) -> Statement | None:
    """Read one in-toto statement (or DSSE envelope); ``None`` when it is not SLSA provenance.

    Over :data:`MAX_STATEMENT_BYTES`, :data:`MAX_MATERIALS` materials or
    :data:`MAX_CANDIDATES` images is a :class:`LookupFailed` naming the bound;
    a body that is not an in-toto statement is a :class:`StatementError`.
    Materials that are not docker images (git sources, HTTP downloads) are
    skipped silently; docker images without a usable sha256 are listed in
    ``skipped``, since a tag alone may have moved since the build.
    """
    if len(body) > MAX_STATEMENT_BYTES:
        raise bound_exceeded(
            f"a statement of {len(body)} bytes", MAX_STATEMENT_BYTES, "MAX_STATEMENT_BYTES"
        )
    obj = _unwrap(_read(body, "an in-toto statement", "statement is not JSON"))
    if not isinstance(obj, dict):
        raise StatementError("statement is not a JSON object")
    kind = obj.get("_type")
    if not isinstance(kind, str) or not kind.startswith(STATEMENT_PREFIX):
        raise StatementError(f"not an in-toto statement (_type {kind!r})")
    predicate_type = obj.get("predicateType")
    if predicate_type not in PROVENANCE_TYPES:
        return None
    assert isinstance(predicate_type, str)
    subjects = obj.get("subject")
    digests = (
        frozenset(
            d
            for d in (_sha256_of(s.get("digest")) for s in subjects if isinstance(s, dict))
            if d is not None
        )
        if isinstance(subjects, list)
        else frozenset()
    )
    predicate = obj.get("predicate")
    materials = _materials(predicate_type, predicate if isinstance(predicate, dict) else {})
    if len(materials) > MAX_MATERIALS:
        raise bound_exceeded(f"{len(materials)} materials", MAX_MATERIALS, "MAX_MATERIALS")
    images: list[ImageMaterial] = []
    skipped: list[str] = []
    for material in materials:
        if not isinstance(material, dict):
            continue
        uri = material.get("uri")
        if not isinstance(uri, str) or not uri.lower().startswith("pkg:docker/"):
            continue
        try:
            ref, platform = parse_purl(uri)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        recorded = _sha256_of(material.get("digest"))
        if recorded is None and ref.digest is None:
            skipped.append(f"{uri} has no sha256 digest")
            continue
        if recorded is not None and ref.digest is not None and recorded != ref.digest:
            skipped.append(f"{uri}: its digest qualifier contradicts the recorded {recorded}")
            continue
        pinned = ref.with_digest(recorded or ref.digest or "")
        if all(m.reference != pinned for m in images):
            images.append(ImageMaterial(pinned, platform))
    if len(images) > MAX_CANDIDATES:
        raise bound_exceeded(f"{len(images)} images in one build", MAX_CANDIDATES, "MAX_CANDIDATES")
    return Statement(predicate_type, digests, tuple(images), tuple(skipped))


def candidates(statements: Iterable[Statement], digest: str) -> tuple[Reference, ...]:
    """Every image the statements *about ``digest``* list, in order, without repeats."""
    out: list[Reference] = []
    for statement in statements:
        if not statement.describes(digest):
            continue
        for image in statement.images:
            if image.reference not in out:
                out.append(image.reference)
    if len(out) > MAX_CANDIDATES:
        raise bound_exceeded(f"{len(out)} candidate bases", MAX_CANDIDATES, "MAX_CANDIDATES")
    return tuple(out)


# --------------------------------------------------------------------------- where statements live


def statement_layers(manifest: ImageManifest) -> list[Descriptor]:
    """The layers of an attestation (or referrer) manifest that may hold provenance.

    In-toto layers annotated with a predicate type other than SLSA provenance
    (SPDX SBOMs, which can be large) are not fetched. More than
    :data:`MAX_STATEMENTS` candidates is a bound; a layer whose descriptor
    already says it is over :data:`MAX_STATEMENT_BYTES` is refused unread.
    """
    layers = [
        d
        for d in manifest.layers
        if d.media_type in STATEMENT_TYPES
        and d.annotations.get(PREDICATE_TYPE, SLSA_V02) in PROVENANCE_TYPES
    ]
    if len(layers) > MAX_STATEMENTS:
        raise bound_exceeded(
            f"{len(layers)} provenance statements in one manifest", MAX_STATEMENTS, "MAX_STATEMENTS"
        )
    for desc in layers:
        if desc.size > MAX_STATEMENT_BYTES:
            raise bound_exceeded(
                f"statement {desc.digest} of {desc.size} bytes",
                MAX_STATEMENT_BYTES,
                "MAX_STATEMENT_BYTES",
            )
    return layers


def referrer_manifests(index: ImageIndex) -> list[Descriptor]:
    """The referrers worth opening: attestation-like artifact types, at most :data:`MAX_REFERRERS`.

    Signatures and SBOM-only artifacts are passed over by their
    ``artifactType``; an entry without one is opened (its layers tell).
    """
    wanted = [
        d
        for d in index.manifests
        if not d.artifact_type
        or d.artifact_type in STATEMENT_TYPES | {DOCKER_ATTESTATION}
        or d.annotations.get(PREDICATE_TYPE) in PROVENANCE_TYPES
    ]
    return wanted[:MAX_REFERRERS]

