"""OCI and Docker v2 media types, and manifests/indexes/configs parsed into frozen data.

PURE: bytes in, dataclasses out. The client hashes and size-checks bodies
before they reach here; this module only decides what they say. Every body is
read through :func:`controller.registry.jsonread.read` (bounded in values and
depth), a manifest or index more tightly (:data:`MAX_MANIFEST_VALUES`) than a
config, since an index is judged by counting its entries and the count must not
cost a full parse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import LookupFailed
from controller.platforms import Platform
from controller.registry import jsonread

__all__ = ["Platform"]  # one home (controller.platforms); re-exported for the parsers here

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: Always sent in full: a registry asked without it may 404 or convert the manifest.
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
CREATED = "org.opencontainers.image.created"
BUILDPACKS_METADATA = "io.buildpacks.lifecycle.metadata"
BUILDINFO = "moby.buildkit.buildinfo.v1"
ATTESTATION_TYPE = "vnd.docker.reference.type"

MAX_BODY = 4 * 1024 * 1024
#: Values one manifest or index may hold, counted before it is parsed. An index of
#: the 64 platforms baseguard judges, each with an attestation and annotations, is
#: about 1,500; an image manifest of 127 layers (Docker's most) about 700. Room for an
#: index of a thousand entries, while a 4 MiB index of 35,000 (250,000 values, 0.15 s
#: of parsing on the event loop and 11 MB of objects) is refused after a 5 ms scan.
MAX_MANIFEST_VALUES = 16_384
#: Values one image config may hold (a long history, a large Buildpacks label).
MAX_CONFIG_VALUES = jsonread.MAX_VALUES


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""  # OCI 1.1: what a referrer is (in-toto statement, signature, SBOM)

    @property
    def is_attestation(self) -> bool:
        return ATTESTATION_TYPE in self.annotations or (
            self.platform is not None and self.platform.is_unknown
        )


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageConfig:
    os: str
    architecture: str
    variant: str | None
    created: dt.datetime | None
    labels: Mapping[str, str]
    diff_ids: tuple[str, ...]
    env: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def _descriptor(obj: Any) -> Descriptor:
    if not isinstance(obj, dict) or not isinstance(obj.get("digest"), str):
        raise LookupFailed("malformed descriptor in manifest")
    platform = None
    p = obj.get("platform")
    if isinstance(p, dict) and isinstance(p.get("os"), str) and isinstance(p.get("architecture"), str):
        variant = p.get("variant")
        platform = Platform(p["os"], p["architecture"], variant if isinstance(variant, str) else None)
    size = obj.get("size", 0)
    return Descriptor(
        media_type=str(obj.get("mediaType", "")),
        digest=obj["digest"],
        size=size if isinstance(size, int) else 0,
        platform=platform,
        annotations=_str_map(obj.get("annotations")),
        artifact_type=str(obj.get("artifactType") or ""),
    )


def parse_manifest(body: bytes, content_type: str | None) -> ImageIndex | ImageManifest:
    """Parse a manifest or index body; the media type comes from the body, else the header.

    A body of more than :data:`MAX_MANIFEST_VALUES` values, or nested too deep, is
    refused before anything is built from it (:mod:`controller.registry.jsonread`).
    """
    obj = jsonread.read(body, "manifest", max_bytes=MAX_BODY, max_values=MAX_MANIFEST_VALUES)
    if not isinstance(obj, dict):
        raise LookupFailed("manifest is not a JSON object")
    declared = obj.get("mediaType")
    header = (content_type or "").split(";")[0].strip()
    if isinstance(declared, str) and header and header in INDEX_TYPES | MANIFEST_TYPES and declared != header:
        raise LookupFailed(f"manifest mediaType {declared!r} does not match Content-Type {header!r}")
    media_type = declared if isinstance(declared, str) else header
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        if "manifests" in obj:
            media_type = OCI_INDEX
        elif "config" in obj:
            media_type = OCI_MANIFEST
        else:
            raise LookupFailed(f"unsupported manifest media type {media_type!r}")
    annotations = _str_map(obj.get("annotations"))
    if media_type in INDEX_TYPES:
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise LookupFailed("index has no manifests list")
        return ImageIndex(media_type, tuple(_descriptor(m) for m in entries), annotations)
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise LookupFailed("manifest has no layers list")
    return ImageManifest(
        media_type, _descriptor(obj.get("config")), tuple(_descriptor(x) for x in layers), annotations
    )


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_config(body: bytes) -> ImageConfig:
    """Parse an image config, read through :mod:`controller.registry.jsonread`'s bounds."""
    obj = jsonread.read(body, "image config", max_bytes=MAX_BODY, max_values=MAX_CONFIG_VALUES)
    if not isinstance(obj, dict):
        raise LookupFailed("image config is not a JSON object")
    inner = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    rootfs = obj.get("rootfs") if isinstance(obj.get("rootfs"), dict) else {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    env = inner.get("Env") if isinstance(inner, dict) else None
    variant = obj.get("variant")
    return ImageConfig(
        os=str(obj.get("os", "")),
        architecture=str(obj.get("architecture", "")),
        variant=variant if isinstance(variant, str) and variant else None,
        created=_parse_time(obj.get("created")),
        labels=_str_map(inner.get("Labels") if isinstance(inner, dict) else None),
        diff_ids=tuple(d for d in diff_ids if isinstance(d, str)) if isinstance(diff_ids, list) else (),
        env=tuple(e for e in env if isinstance(e, str)) if isinstance(env, list) else (),
        raw=obj,
    )
