"""Platforms (``os/architecture[/variant]``): one parser, one notion of "the same platform".

PURE. An index names its images by platform, a policy narrows by platform
(``lineage.platforms``), the catalog files layers by platform, and the lineage
output labels each chain by platform: all of them must agree on when two
platforms are the same, or a policy written ``linux/arm64`` would silently
miss an index entry ``linux/arm64/v8``. So they all go through :func:`key`.

Comparison is case-insensitive (``GOOS``/``GOARCH`` values are lower case, but
an index written by hand may say ``Linux``), and variants are normalised as the
image spec suggests: ``arm64`` ≡ ``arm64/v8``, ``arm`` means ``arm/v7``,
``amd64/v1`` is plain ``amd64``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    @property
    def normalized(self) -> Platform:
        """Lower case, with the default variants folded: ``linux/arm64/v8`` → ``linux/arm64``."""
        os_, arch = self.os.lower(), self.architecture.lower()
        variant = self.variant.lower() if self.variant else None
        if (arch == "arm64" and variant == "v8") or (arch == "amd64" and variant == "v1"):
            variant = None
        elif arch == "arm" and variant is None:
            variant = "v7"
        return Platform(os_, arch, variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch`` or ``os/arch/variant``; surrounding white space is ignored."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"bad platform {text!r}: expected os/arch or os/arch/variant")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @property
    def is_unknown(self) -> bool:
        """BuildKit files attestation manifests under ``unknown/unknown``."""
        return self.os == "unknown" or self.architecture == "unknown"


def key(platform: str | Platform) -> str:
    """The comparable form of a platform: ``Linux/ARM64/v8`` → ``linux/arm64``.

    Text that is not a platform is kept as it is (lower-cased), so an odd label
    in an index still compares equal to itself and never raises.
    """
    if isinstance(platform, Platform):
        return str(platform.normalized)
    try:
        return str(Platform.parse(platform).normalized)
    except ValueError:
        return platform.strip().lower()
