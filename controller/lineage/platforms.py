"""Which entries of an index are images, and which of them a lookup wants.

PURE. An index lists platform manifests, nested indexes and attestation
entries; the resolver judges every platform (the node is not known at
admission), skips attestations, and narrows a claimed base that is an index to
the child matching the image's platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controller.lineage.catalog import platform_key
from controller.lineage.claims import display
from controller.reference import Reference
from controller.registry import media
from controller.registry.media import Descriptor, ImageIndex, Platform

#: On an attestation entry: the digest of the platform manifest it describes.
ATTESTATION_SUBJECT = "vnd.docker.reference.digest"


def platform_entries(index: ImageIndex) -> tuple[list[Descriptor], list[Descriptor]]:
    """Split an index into (platform manifests, nested indexes).

    Attestation entries (``unknown/unknown``, or annotated with
    ``vnd.docker.reference.type``) and unknown media types are skipped, as the
    image spec requires. An entry without a media type is taken as a manifest.
    """
    manifests: list[Descriptor] = []
    nested: list[Descriptor] = []
    for desc in index.manifests:
        if desc.is_attestation:
            continue
        if desc.media_type in media.INDEX_TYPES:
            nested.append(desc)
        elif desc.media_type in media.MANIFEST_TYPES or not desc.media_type:
            manifests.append(desc)
    return manifests, nested


def platform_wanted(platform: Platform | str | None, wanted: Sequence[str] | None) -> bool:
    """``None`` (no filter) wants everything; otherwise compare normalized (arm64 ≡ arm64/v8)."""
    if wanted is None:
        return True
    if platform is None:
        return False
    keys = {platform_key(w) for w in wanted}
    return platform_key(str(platform)) in keys


def select_child(entries: Iterable[Descriptor], platform: Platform) -> Descriptor | None:
    """The entry for ``platform``: exact after normalizing variants, else the same os/arch."""
    wanted = platform.normalized
    candidates = [d for d in entries if d.platform is not None and not d.is_attestation]
    for desc in candidates:
        if desc.platform is not None and desc.platform.normalized == wanted:
            return desc
    for desc in candidates:
        p = desc.platform
        if p is not None and (p.os, p.architecture) == (wanted.os, wanted.architecture):
            return desc
    return None


def attestations_for(index: ImageIndex, digest: str) -> tuple[Descriptor, ...]:
    """The attestation entries of ``index`` that describe the platform manifest ``digest``."""
    return tuple(
        d
        for d in index.manifests
        if d.is_attestation and d.annotations.get(ATTESTATION_SUBJECT) == digest
    )


def no_platform_message(
    ref: Reference, offered: Sequence[str], wanted: Sequence[str] | None
) -> str:
    have = ", ".join(offered) or "none"
    want = ", ".join(wanted or ())
    return f"{display(ref)} has no image for {want} (it has {have})"
