"""Base-image claims: where an image says it came from, and whether its layers agree.

PURE: frozen data in, frozen data out; no registry, no clock. The resolver
(:mod:`controller.lineage.resolve`) fetches what an image offers and asks the
readers here, in order, for the first usable claim; it then checks the claim
by layers with :func:`check_layers`.

The claim *sources* are one seam: :data:`READERS` is the ordered tuple of pure
readers (manifest annotations, index descriptor and index annotations, config
labels, Buildpacks metadata, BuildKit buildinfo), each a function of one
:class:`Subject`. A source that needs the registry (provenance attestations,
OCI referrers) plugs into the resolver as a
:class:`controller.lineage.images.ClaimSource`, asked after
the pure readers find nothing; it returns the same :class:`Claim`, so checking
it by layers is the same code.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controller.errors import InvalidReference, LookupFailed
from controller.lineage.budget import MAX_CANDIDATES
from controller.lineage.catalog import is_prefix
from controller.lineage.model import Source
from controller.reference import Reference, parse
from controller.registry import jsonread, media
from controller.registry.media import Descriptor, ImageConfig, ImageManifest

SCRATCH = "scratch"
_EMPTY: Mapping[str, str] = MappingProxyType({})
#: A BuildKit buildinfo record (base64) longer than this is not decoded: a real one
#: names a handful of images in a few KiB, and decoding 4 MiB holds the event loop.
MAX_BUILDINFO_BYTES = 64 * 1024
#: Claim sources that live in config labels, which child images inherit.
INHERITED_SOURCES = frozenset({Source.LABEL, Source.BUILDPACKS})


@dataclass(frozen=True)
class Claim:
    """What an image says it was built on.

    ``candidates`` are the named bases, carrying the claimed digest when one was
    given; there are several only for BuildKit buildinfo, which records every
    image a build pulled (multi-stage inputs too) and not which one was the
    final ``FROM``. ``digest`` alone (no candidates) is a digest without a name.
    ``exceeded`` says which bound stopped the reading (too many candidates, a
    record too large to decode): the resolver reports it as a lookup failure
    rather than judge a claim it did not read in full.
    """

    source: Source
    candidates: tuple[Reference, ...] = ()
    digest: str | None = None
    scratch: bool = False
    exceeded: str | None = None
    #: What the source found but could not use (a provenance statement about another
    #: image, say), for the claiming level's note. A claim with only a note claims nothing.
    note: str = ""

    @property
    def usable(self) -> bool:
        """Whether it names anything: a base, a digest, or scratch (or went past a bound)."""
        return (
            bool(self.candidates)
            or self.digest is not None
            or self.scratch
            or self.exceeded is not None
        )

    @property
    def described(self) -> str:
        """For messages: ``docker.io/library/debian:12-slim (label)``."""
        if self.scratch:
            what = SCRATCH
        elif self.candidates:
            what = ", ".join(display(c) for c in self.candidates)
        else:
            what = self.digest or "?"
        return f"{what} ({self.source})"


def display(ref: Reference) -> str:
    """``name:tag`` when there is a tag (the digest only adds noise to a message), else ``name@digest``."""
    return ref.without_digest().normalized if ref.tag is not None else ref.normalized


def valid_digest(digest: str) -> bool:
    try:
        parse(f"example.invalid/x@{digest}")
    except InvalidReference:
        return False
    return True


def _parse_name(text: str) -> Reference | None:
    try:
        return parse(text)
    except InvalidReference:
        return None


def annotation_claim(values: Mapping[str, str], source: Source) -> Claim | None:
    """``org.opencontainers.image.base.name`` / ``.digest`` from one place.

    Short names (``alpine:3.18``, as Docker Official Images write them) are
    normalized; ``scratch`` means built from nothing. A name that does not
    parse, with no digest, is no usable claim: the next place is asked.
    """
    name = values.get(media.BASE_NAME, "").strip()
    digest = values.get(media.BASE_DIGEST, "").strip() or None
    if digest is not None and not valid_digest(digest):
        digest = None
    if name.lower() == SCRATCH:
        return Claim(source, scratch=True)
    ref = _parse_name(name) if name else None
    if ref is not None:
        return Claim(source, (ref.with_digest(digest) if digest else ref,))
    if digest is not None:
        return Claim(source, digest=digest)
    return None


def _read_label(text: str | bytes, what: str) -> Any:
    """JSON the image author wrote into a label: ``None`` when it is not JSON (the reader
    has nothing to say), :class:`LookupFailed` naming the bound when it is too large or
    too deep to read (:mod:`controller.registry.jsonread`): never silence for that."""
    try:
        return jsonread.read(text, what)
    except LookupFailed as exc:
        if exc.context.get("code") == "INVALID":
            return None
        raise


def buildpacks_claim(labels: Mapping[str, str]) -> Claim | None:
    """The run image in ``io.buildpacks.lifecycle.metadata``.

    ``runImage.image`` (or ``stack.runImage.image``) names it; ``runImage.reference``
    pins it when it is a ``name@digest`` reference. (A bare ``sha256:…`` there is
    the daemon's image ID, a config digest, which cannot be fetched: ignored.)
    """
    raw = labels.get(media.BUILDPACKS_METADATA)
    if not raw:
        return None
    meta = _read_label(raw, f"its Buildpacks label {media.BUILDPACKS_METADATA}")
    if not isinstance(meta, dict):
        return None
    run = _dict(meta.get("runImage"))
    stack_run = _dict(_dict(meta.get("stack")).get("runImage"))
    name = run.get("image") or stack_run.get("image")
    pinned = run.get("reference")
    pinned_ref = _parse_name(pinned) if isinstance(pinned, str) and "@" in pinned else None
    ref = _parse_name(name) if isinstance(name, str) and name else None
    if ref is not None:
        if pinned_ref is not None and pinned_ref.digest is not None:
            ref = ref.with_digest(pinned_ref.digest)
        return Claim(Source.BUILDPACKS, (ref,))
    if pinned_ref is not None:
        return Claim(Source.BUILDPACKS, (pinned_ref,))
    return None


def buildinfo_claim(config: ImageConfig, *, max_candidates: int = MAX_CANDIDATES) -> Claim | None:
    """BuildKit's ``moby.buildkit.buildinfo.v1`` (base64 JSON): its ``docker-image`` sources.

    Old images only (removed in Docker 23.1). It sits at the top of the config,
    or as a label; every distinct ``{type: docker-image, ref, pin}`` is a
    candidate. Reading is bounded, because the record is the image author's to
    write: a record over :data:`MAX_BUILDINFO_BYTES` is not decoded, and the
    reading stops at the first candidate past ``max_candidates``; either way
    the claim comes back ``exceeded``. Duplicates are dropped by a set of the
    raw ``(ref, pin)`` strings before anything is parsed, so the work is linear
    in what is read.
    """
    raw = config.raw.get(media.BUILDINFO) or config.labels.get(media.BUILDINFO)
    if not isinstance(raw, str) or not raw:
        return None
    if len(raw) > MAX_BUILDINFO_BYTES:
        return Claim(
            Source.BUILDINFO,
            exceeded=(
                f"its BuildKit buildinfo record is {len(raw)} bytes, over the "
                f"{MAX_BUILDINFO_BYTES} bytes baseguard reads"
            ),
        )
    try:
        decoded = base64.b64decode(raw, validate=False)
    except (ValueError, binascii.Error):
        return None
    info = _read_label(decoded, "its BuildKit buildinfo record")
    sources = info.get("sources") if isinstance(info, dict) else None
    if not isinstance(sources, list):
        return None
    seen: set[tuple[str, str | None]] = set()
    found: dict[Reference, None] = {}
    for src in sources:
        if not isinstance(src, dict) or src.get("type") != "docker-image":
            continue
        name, pin = src.get("ref"), src.get("pin")
        if not isinstance(name, str):
            continue
        raw_key = (name, pin if isinstance(pin, str) else None)
        if raw_key in seen:
            continue
        seen.add(raw_key)
        ref = _parse_name(name)
        if ref is None:
            continue
        if isinstance(pin, str) and valid_digest(pin):
            ref = ref.with_digest(pin)
        found[ref] = None
        if len(found) > max_candidates:
            return Claim(
                Source.BUILDINFO,
                tuple(found)[:max_candidates],
                exceeded=(
                    f"its BuildKit buildinfo records more than {max_candidates} candidate "
                    f"base images (max_candidates_per_claim = {max_candidates})"
                ),
            )
    return Claim(Source.BUILDINFO, tuple(found)) if found else None


@dataclass(frozen=True)
class Subject:
    """One platform image as claim readers see it.

    ``reference``/``digest`` name the platform manifest, and ``attestations`` are
    the index entries that describe it (``vnd.docker.reference.digest`` = its
    digest): the pure readers ignore them; a provenance source needs them.
    Readers stop past ``max_candidates`` candidates (the claim is then ``exceeded``).
    """

    manifest_annotations: Mapping[str, str] = field(default_factory=dict)
    descriptor_annotations: Mapping[str, str] = field(default_factory=dict)
    index_annotations: Mapping[str, str] = field(default_factory=dict)
    config: ImageConfig | None = None
    reference: Reference | None = None
    digest: str | None = None
    manifest: ImageManifest | None = None
    attestations: tuple[Descriptor, ...] = ()
    #: Level 0, the image being judged (not one of its bases): speculative lookups
    #: (OCI referrers) are made only for it.
    top: bool = False
    max_candidates: int = MAX_CANDIDATES


#: A pure claim reader: one place an image may say what it was built on.
ClaimReader = Callable[[Subject], "Claim | None"]


def _manifest_annotations(subject: Subject) -> Claim | None:
    return annotation_claim(subject.manifest_annotations, Source.ANNOTATION)


def _descriptor_annotations(subject: Subject) -> Claim | None:
    return annotation_claim(subject.descriptor_annotations, Source.INDEX_ANNOTATION)


def _index_annotations(subject: Subject) -> Claim | None:
    return annotation_claim(subject.index_annotations, Source.INDEX_ANNOTATION)


def _labels(subject: Subject) -> Claim | None:
    return None if subject.config is None else annotation_claim(subject.config.labels, Source.LABEL)


def _buildpacks(subject: Subject) -> Claim | None:
    return None if subject.config is None else buildpacks_claim(subject.config.labels)


def _buildinfo(subject: Subject) -> Claim | None:
    if subject.config is None:
        return None
    return buildinfo_claim(subject.config, max_candidates=subject.max_candidates)


#: The pure readers, in the order claims are believed. Manifest annotations are
#: not inherited, so they come first; the index descriptor and the index next;
#: labels (inherited: they may describe a grandparent) after; Buildpacks and
#: buildinfo last.
READERS: tuple[ClaimReader, ...] = (
    _manifest_annotations,
    _descriptor_annotations,
    _index_annotations,
    _labels,
    _buildpacks,
    _buildinfo,
)


def first_claim(subject: Subject, readers: tuple[ClaimReader, ...] = READERS) -> Claim | None:
    """The first usable claim any reader finds, or ``None``."""
    for reader in readers:
        claim = reader(subject)
        if claim is not None:
            return claim
    return None


def read_claim(
    *,
    manifest_annotations: Mapping[str, str],
    descriptor_annotations: Mapping[str, str] = _EMPTY,
    index_annotations: Mapping[str, str] = _EMPTY,
    config: ImageConfig | None = None,
) -> Claim | None:
    """The first usable claim from these places, in :data:`READERS` order."""
    return first_claim(
        Subject(
            manifest_annotations=manifest_annotations,
            descriptor_annotations=descriptor_annotations,
            index_annotations=index_annotations,
            config=config,
        )
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class LayerCheck:
    verified: bool | None
    note: str = ""


def check_layers(
    base: tuple[str, ...], child: tuple[str, ...], *, claim: Claim, base_ref: Reference
) -> LayerCheck:
    """Does the claimed base's layer list prefix the child's? With the note a message needs.

    A single-layer child that fails the check is most likely squashed (or built
    by a single-snapshot tool): the claim can then be neither confirmed nor
    refuted. A base without layers proves nothing either way.
    """
    what = f"{display(base_ref)} ({claim.source})"
    if not base:
        return LayerCheck(None, f"claimed base {what} has no layers, so layers cannot confirm it")
    if is_prefix(base, child):
        return LayerCheck(True)
    if len(child) == 1:
        return LayerCheck(
            None,
            f"claimed base {what} cannot be checked: the image has a single layer (squashed?)",
        )
    return LayerCheck(False, f"claimed base {what} is not a layer prefix of the image")
