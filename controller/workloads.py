"""Every image of every workload kind, with its container name and JSON path.

PURE. The webhook's mutation needs the JSON Pointer of each ``image`` field;
the CLI and the audit need kind/namespace/name/container to report on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.policy.facts import ImageRole


@dataclass(frozen=True)
class ContainerImage:
    container: str | None  # container name; the volume name for an image volume
    image: str
    path: str  # JSON Pointer to the image string, e.g. /spec/template/spec/containers/0/image
    section: str = "containers"  # containers | initContainers | ephemeralContainers | volumes
    role: ImageRole = ImageRole.CONTAINER  # Dockerfile FROMs are BASE (final ancestry) or BUILD


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str | None
    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    images: tuple[ContainerImage, ...] = ()
    source: str = ""  # file path (CLI) or "admission" (webhook)
    document: int | None = None  # index of the YAML document in its file, for messages
