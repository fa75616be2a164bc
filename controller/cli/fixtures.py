"""Images a policy test describes, answered to the real lineage resolver without a registry.

A policy test must be able to prove what an allowlist or an end-of-life list
does to an image *by its lineage* (``base-not-allowed``, ``deprecated-base``
found by a base claim or by layers, ``tag-mismatch``, ``stale-base``,
``lineage-mismatch``, ``unknown-base``), offline and the same on every run.
Judging with a second, simplified evaluator would test that evaluator, not
the product. So the test's ``images:`` become the content of a registry held
in memory, and :class:`DescribedRegistry` answers the calls the lineage walk
(:class:`controller.lineage.images.RegistryClient`: manifests, digests,
configs) and the identity index (:class:`controller.lineage.indexer.TagClient`:
tag listings) make. Everything above that seam is what the webhook runs: the
same :class:`~controller.lineage.resolve.LineageResolver` walk, the same
verification by layers, the same catalog detection, the same identity index,
the same :class:`controller.assess.Assessor`.

Each image is described by what the resolver reads from a registry::

    - name: docker.io/library/python:3.12-slim   # repository, and a tag that names it now
      tags: [3.12.7-slim]                         # more tags naming it now
      pastTags: []                                # tags that named it before (an old digest)
      digest: sha256:…                            # optional; else derived from the content
      platforms: [linux/amd64]                    # default: its from image's, else linux/amd64
      from: debian:bookworm-slim                  # starts with that described image's layers (tag, @digest)
      baseAnnotations: true                       # writes the OCI base.name/base.digest of from
      layers: [python-3.12]                       # names (stable fake diff_ids) or sha256 diff_ids
      labels: {…}                                 # config labels
      annotations: {…}                            # manifest annotations (each platform's)
      created: "2024-06-01"                       # the config's created date

Digests and diff_ids are sha256 values computed from the description, so a
test gives the same answers on every machine. An image the resolver asks for
that the test does not describe is a lookup failure ("not described"), as an
image missing from a registry is: a test sees ``lookup-failed``, never a
silent pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import digests
from controller.errors import InvalidReference, LookupFailed
from controller.evidence.choose import TRIVY_REPORT
from controller.lineage.catalog import Catalog
from controller.lineage.identity import TagHistory
from controller.platforms import Platform
from controller.reference import Reference, parse
from controller.registry.media import (
    BASE_DIGEST,
    BASE_NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
)

DEFAULT_PLATFORM = "linux/amd64"
_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

#: The shape of one described image (``images[]`` of a test file), for the test file's schema.
IMAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "repository[:tag]"},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "pastTags": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "digest": {"type": "string", "minLength": 1},
        "platforms": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "from": {"type": "string", "minLength": 1},
        "baseAnnotations": {"type": "boolean"},
        "layers": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "created": {"type": "string", "minLength": 1},
        "scan": {
            "type": "object",
            "description": "a Trivy report attached to each platform image, as a referrer",
            "properties": {
                "finished": {"type": "string", "minLength": 1},
                "vulnerabilities": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "package", "severity", "layer"],
                        "properties": {
                            "id": {"type": "string", "minLength": 1},
                            "package": {"type": "string", "minLength": 1},
                            "installed": {"type": "string"},
                            "fixed": {"type": "string"},
                            "severity": {"type": "string", "minLength": 1},
                            "layer": {"type": "string", "minLength": 1},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def layer_id(name: str, platform: str) -> str:
    """A named layer's diff_id: stable, and distinct per platform (as real layers are)."""
    if digests.is_digest(name):
        return name
    return _sha256(f"baseguard-test-layer\0{name}\0{platform}")


@dataclass(frozen=True)
class Fetched:
    """A described manifest as :meth:`DescribedRegistry.fetch_manifest` returns it."""

    digest: str
    manifest: ImageIndex | ImageManifest


@dataclass
class _Built:
    """One described image once built: its digest and, per platform, its layers."""

    name: str
    digest: str
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _created(text: str) -> dt.datetime | None:
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class DescribedRegistry:
    """A registry whose content is a policy test's described images; no network, no clock.

    Built with :meth:`build`, which returns every problem of the description
    with its field path (``images[2].from: …``) instead of raising on the
    first. Content is kept per repository, as a registry keeps it: a digest is
    found only under the repository that holds it.
    """

    def __init__(self) -> None:
        self._manifests: dict[tuple[str, str], ImageIndex | ImageManifest] = {}
        self._configs: dict[str, ImageConfig] = {}
        self._tags: dict[tuple[str, str], str] = {}
        #: (repository, tag, digest) in the order the tags named them, oldest first
        self._past: list[tuple[str, str, str]] = []
        #: (repository, platform digest) → its referrers; blobs by digest (scan reports)
        self._referrers: dict[tuple[str, str], ImageIndex] = {}
        self._blobs: dict[str, bytes] = {}

    # ------------------------------------------------------------ building

    @classmethod
    def build(cls, images: Sequence[Mapping[str, Any]]) -> tuple[DescribedRegistry, list[str]]:
        """The registry holding ``images`` (validated by the schema), and the problems found."""
        registry = cls()
        return registry, registry.load(images)

    def load(self, images: Sequence[Mapping[str, Any]]) -> list[str]:
        """Build every described image into this registry; the problems found, with field paths."""
        problems: list[str] = []
        refs: list[Reference | None] = []
        for i, item in enumerate(images):
            try:
                ref = parse(item["name"])
                refs.append(ref)
            except InvalidReference as exc:
                problems.append(f"images[{i}].name: {exc.message}")
                refs.append(None)
                continue
            if ref.digest is not None:
                problems.append(f"images[{i}].name: give the digest as digest:, not in the name")
            digest = item.get("digest")
            if digest is not None and not digests.is_digest(digest):
                problems.append(f"images[{i}].digest: {digest!r} is not a digest (sha256:<64 hex>)")
            for key in ("tags", "pastTags"):
                for j, tag in enumerate(item.get(key, ())):
                    try:
                        parse(f"{ref.name}:{tag}")
                    except InvalidReference:
                        problems.append(f"images[{i}].{key}[{j}]: {tag!r} is not a tag")
            for j, text in enumerate(item.get("platforms", ())):
                try:
                    Platform.parse(text)
                except ValueError as exc:
                    problems.append(f"images[{i}].platforms[{j}]: {exc}")
            if "created" in item and _created(item["created"]) is None:
                problems.append(
                    f"images[{i}].created: {item['created']!r} is not a date (YYYY-MM-DD or RFC 3339)"
                )
            if item.get("baseAnnotations") and "from" not in item:
                problems.append(f"images[{i}].baseAnnotations: needs from: (the base it names)")
        if problems:
            return problems
        built: dict[int, _Built] = {}
        for i in range(len(images)):
            self._build(i, images, refs, built, (), problems)
        for i, item in enumerate(images):
            named, image = refs[i], built.get(i)
            if named is None or image is None:
                continue
            ref = named
            tags = ([ref.tag] if ref.tag else []) + list(item.get("tags", ()))
            for tag in tags:
                other = self._tags.get((ref.name, tag))
                if other is not None and other != image.digest:
                    problems.append(f"images[{i}].tags: {ref.name}:{tag} already names another described image")
                self._tags[(ref.name, tag)] = image.digest
            self._past.extend((ref.name, tag, image.digest) for tag in item.get("pastTags", ()))
        return problems

    def _find(self, ref: Reference, refs: Sequence[Reference | None], images: Sequence[Mapping[str, Any]], built: Mapping[int, _Built]) -> int | None:
        """The index of the described image ``ref`` names (by digest, else by a current tag)."""
        for i, candidate in enumerate(refs):
            if candidate is None or candidate.name != ref.name:
                continue
            if ref.digest is not None:
                image = built.get(i)
                if images[i].get("digest") == ref.digest or (image is not None and image.digest == ref.digest):
                    return i
                continue
            tags = ([candidate.tag] if candidate.tag else []) + list(images[i].get("tags", ()))
            if ref.effective_tag in tags:
                return i
        return None

    def _build(
        self,
        i: int,
        images: Sequence[Mapping[str, Any]],
        refs: Sequence[Reference | None],
        built: dict[int, _Built],
        stack: tuple[int, ...],
        problems: list[str],
    ) -> _Built | None:
        if i in built:
            return built[i]
        ref, item = refs[i], images[i]
        if ref is None or i in stack:
            if i in stack:
                problems.append(f"images[{i}].from: the from images form a loop")
            return None
        base: _Built | None = None
        base_ref: Reference | None = None
        if "from" in item:
            try:
                base_ref = parse(item["from"])
            except InvalidReference as exc:
                problems.append(f"images[{i}].from: {exc.message}")
                return None
            j = self._find(base_ref, refs, images, built)
            if j is None:
                problems.append(f"images[{i}].from: {item['from']!r} is not a described image")
                return None
            base = self._build(j, images, refs, built, (*stack, i), problems)
            if base is None:
                return None
        platforms = list(item.get("platforms") or (list(base.layers) if base else [DEFAULT_PLATFORM]))
        keys = [str(Platform.parse(p).normalized) for p in platforms]
        annotations = dict(item.get("annotations", {}))
        if item.get("baseAnnotations") and base is not None and base_ref is not None:
            # As written in FROM: the tag when there is one (a digest-only FROM names the digest).
            named = base_ref.without_digest() if base_ref.tag is not None else base_ref
            annotations.setdefault(BASE_NAME, named.normalized)
            annotations.setdefault(BASE_DIGEST, base.digest)
        created = _created(item["created"]) if "created" in item else None
        layers: dict[str, tuple[str, ...]] = {}
        children: list[tuple[str, Platform, str]] = []
        for text, key in zip(platforms, keys, strict=True):
            platform = Platform.parse(text)
            if base is not None and key not in base.layers:
                problems.append(f"images[{i}].platforms: {item['from']} has no {key} image to build on")
                return None
            own = tuple(layer_id(name, key) for name in item.get("layers", ()))
            diff_ids = (base.layers[key] if base else ()) + own
            layers[key] = diff_ids
            config = ImageConfig(
                os=platform.os,
                architecture=platform.architecture,
                variant=platform.variant,
                created=created,
                labels=dict(item.get("labels", {})),
                diff_ids=diff_ids,
            )
            config_digest = _sha256(
                _canonical([ref.name, str(platform), diff_ids, config.labels, item.get("created")])
            )
            self._configs[config_digest] = config
            manifest = ImageManifest(
                OCI_MANIFEST,
                Descriptor(OCI_CONFIG, config_digest, 1),
                tuple(Descriptor(_LAYER, _sha256("blob\0" + d), 1) for d in diff_ids),
                annotations,
            )
            single = len(platforms) == 1 and item.get("digest")
            digest = single or _sha256(_canonical([config_digest, sorted(annotations.items())]))
            self._manifests[(ref.name, digest)] = manifest
            if "scan" in item:
                self._attach_scan(ref.name, digest, item["scan"], key)
            children.append((digest, platform, key))
        if len(children) == 1:
            top = children[0][0]
        else:
            index = ImageIndex(
                OCI_INDEX, tuple(Descriptor(OCI_MANIFEST, d, 1, platform=p) for d, p, _ in children)
            )
            top = item.get("digest") or _sha256(_canonical([d for d, _, _ in children]))
            self._manifests[(ref.name, top)] = index
        image = built[i] = _Built(ref.name, top, layers)
        return image

    def _attach_scan(self, name: str, digest: str, scan: Mapping[str, Any], key: str) -> None:
        """A Trivy JSON report about one platform image, attached as an OCI 1.1 referrer."""
        report = {
            "SchemaVersion": 2,
            "CreatedAt": scan.get("finished", ""),
            "Results": [{"Target": name, "Vulnerabilities": [
                {
                    "VulnerabilityID": v["id"], "PkgName": v["package"],
                    "InstalledVersion": v.get("installed", ""), "FixedVersion": v.get("fixed", ""),
                    "Severity": v["severity"], "Layer": {"DiffID": layer_id(v["layer"], key)},
                }
                for v in scan.get("vulnerabilities", ())
            ]}],
        }  # fmt: skip
        body = _canonical(report).encode()
        blob = "sha256:" + hashlib.sha256(body).hexdigest()
        self._blobs[blob] = body
        artifact = ImageManifest(
            OCI_MANIFEST,
            Descriptor(OCI_CONFIG, _sha256("{}"), 2),
            (Descriptor(TRIVY_REPORT, blob, len(body)),),
        )
        at = _sha256(_canonical(["scan", name, digest, blob]))
        self._manifests[(name, at)] = artifact
        self._referrers[(name, digest)] = ImageIndex(
            OCI_INDEX, (Descriptor(OCI_MANIFEST, at, 1, artifact_type=TRIVY_REPORT),)
        )

    def history(self) -> TagHistory:
        """A tag history that already knows what each ``pastTags`` tag named before.

        The identity index then records what the tags name now, which moves
        these digests into each tag's past: as if baseguard had watched the
        tag move.
        """
        history = TagHistory()
        for name, tag, digest in self._past:
            history.record(name, tag, [digest, *self._children(name, digest)])
        return history

    def catalog(self) -> Catalog:
        """A catalog that has watched each ``pastTags`` tag name its old digest, sharing :meth:`history`.

        Detection by layers matches every digest a catalog tag has had; the
        webhook learns them by refreshing the catalog over time, a test says
        them. What the tags name now is fetched by the walk, as online.
        """
        catalog = Catalog(history=self.history())
        seen = [(name, tag, digest) for name, tag, digest in self._past]
        # A tag the catalog knows is not fetched again: what it names now goes in last.
        seen += [(n, t, self._tags[(n, t)]) for n, t in dict.fromkeys((n, t) for n, t, _ in self._past) if (n, t) in self._tags]
        for name, tag, digest in seen:
            named = parse(f"{name}:{tag}").with_digest(digest)
            for child, config in self._platform_images(name, digest):
                catalog.remember(named, str(config.platform), child, config.diff_ids)
        return catalog

    def _platform_images(self, name: str, digest: str) -> list[tuple[str, ImageConfig]]:
        top = self._manifests[(name, digest)]
        found = [(d.digest, self._manifests[(name, d.digest)]) for d in top.manifests] if isinstance(top, ImageIndex) else [(digest, top)]
        return [(d, self._configs[m.config.digest]) for d, m in found if isinstance(m, ImageManifest)]

    def _children(self, name: str, digest: str) -> list[str]:
        top = self._manifests.get((name, digest))
        return [d.digest for d in top.manifests] if isinstance(top, ImageIndex) else []

    # ------------------------------------------------------------ the registry client's calls

    @staticmethod
    def _missing(what: str) -> LookupFailed:
        return LookupFailed(f"{what}: not described in this test's images")

    async def fetch_manifest(self, ref: Reference, digest: str | None = None) -> Fetched:
        if digest is None and ref.digest is None and (ref.tag or "").endswith(".att"):
            # cosign's attestation tag: a described image has none, as a registry says it
            raise LookupFailed(f"{ref.normalized}: no such tag", context={"status": 404})
        digest = digest or ref.digest or await self.resolve_digest(ref)
        manifest = self._manifests.get((ref.name, digest))
        if manifest is None:
            raise self._missing(f"{ref.name}@{digest}")
        return Fetched(digest, manifest)

    async def resolve_digest(self, ref: Reference) -> str:
        if ref.digest is not None and ref.tag is None:
            return ref.digest
        digest = self._tags.get((ref.name, ref.effective_tag or ""))
        if digest is None:
            tag = ref.effective_tag or ""
            if tag.startswith("sha256-") and tag.endswith((".sig", ".att")):
                # A test describes no signatures: its images are unsigned, as a registry
                # without the .sig tag says (404), so spec.trust finds them ``unsigned``.
                raise LookupFailed(
                    f"{ref.name}:{tag}: no signatures are described in this test's images",
                    context={"status": 404},
                )
            raise self._missing(ref.without_digest().normalized)
        return digest

    async def fetch_config(self, ref: Reference, manifest: ImageManifest) -> ImageConfig:
        config = self._configs.get(manifest.config.digest)
        if config is None:
            raise self._missing(f"the config of {ref.name}")
        return config

    async def fetch_referrers(self, ref: Reference, digest: str) -> ImageIndex:
        return self._referrers.get((ref.name, digest), ImageIndex(OCI_INDEX, ()))

    async def fetch_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes:
        body = self._blobs.get(digest)
        if body is None or len(body) > limit:
            raise self._missing(f"blob {digest} of {ref.name}")
        return body

    async def list_tags(
        self, ref: Reference, *, page_size: int = 1000, max_pages: int = 10
    ) -> tuple[list[str], bool]:
        tags = sorted(tag for name, tag in self._tags if name == ref.name)
        return tags, True
