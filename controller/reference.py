"""Image references: the distribution reference grammar, normalized.

Every glob and every output uses the normalized form, so ``python``,
``docker.io/python`` and ``index.docker.io/library/python:latest`` are one image:
``docker.io/library/python:latest``. The grammar follows
``distribution/reference`` (the one Docker uses), including its rule that the
first path component is a registry host only when it contains ``.`` or ``:``,
is ``localhost``, or has upper case.

Where a policy could be walked around, the normalized form is stricter than a
string compare:

* host names are case-insensitive (DNS), so ``REGISTRY.corp.example`` *is*
  ``registry.corp.example`` and ``INDEX.DOCKER.IO`` is ``docker.io``: the host is
  lower-cased, so rules and credentials written for the lower-case host apply;
  repository paths are case-sensitive and must be lower case;
* a digest must use an algorithm a registry can verify
  (:mod:`controller.digests`), so ``name@invaliddigest:…`` is refused and never
  counts as pinned;
* a one-component name of 64 hex characters looks like an image ID and is
  refused, as Docker and the kubelet refuse it;
* the 255-character limit counts the repository path only, not the host
  (``distribution/reference`` since v0.6.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller import digests
from controller.errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
LEGACY_REGISTRIES = frozenset({"index.docker.io", "registry-1.docker.io"})
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # ASCII only, as Docker: no \w (it takes Unicode)

COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
TAG_RE = re.compile(rf"^{_TAG}$")
_IMAGE_ID_RE = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalized image reference.

    ``tag`` stays ``None`` when the string had none: a digest-only reference is
    pinned and has no tag, and the pinning rules need to tell "no tag" from
    "latest".
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: what repository globs match."""
        return f"{self.registry}/{self.repository}"

    @property
    def effective_tag(self) -> str | None:
        """The tag a pull would use: ``latest`` when neither tag nor digest is given."""
        if self.tag is None and self.digest is None:
            return DEFAULT_TAG
        return self.tag

    @property
    def normalized(self) -> str:
        """The canonical string: ``docker.io/library/python:latest``."""
        out = self.name
        tag = self.effective_tag
        if tag is not None:
            out += f":{tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def without_digest(self) -> Reference:
        return Reference(self.registry, self.repository, self.tag, None)

    def __str__(self) -> str:
        return self.normalized


def _check_digest(digest: str, original: str) -> None:
    problem = digests.problem(digest)
    if problem is not None:
        raise InvalidReference(f"invalid reference {original!r}: {problem}")


def _split_domain(name: str) -> tuple[str | None, str]:
    """(host, path); ``None`` for the default registry (no host written)."""
    first, sep, rest = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        return first, rest
    return None, name


def _host(domain: str) -> str:
    """The host, lower-cased (DNS is case-insensitive), Docker Hub's aliases folded.

    A host that only counted as one for its upper case (``FOO/bar``) keeps its
    spelling: lower-cased it would read back as a Docker Hub namespace.
    """
    lowered = domain.lower()
    if lowered in LEGACY_REGISTRIES:
        return DEFAULT_REGISTRY
    if any(c in lowered for c in ".:") or lowered == "localhost":
        return lowered
    return domain


def parse(image: str) -> Reference:
    """Parse and normalize ``image``; raise :class:`InvalidReference` with the reason."""
    if not isinstance(image, str) or not image:
        raise InvalidReference("invalid reference '': the image is empty")
    if image != image.strip() or any(c.isspace() for c in image):
        raise InvalidReference(f"invalid reference {image!r}: contains white space")

    remainder, digest = image, None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        _check_digest(digest, image)

    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not TAG_RE.match(tag):
            reason = "tag longer than 128 characters" if len(tag) > 128 else f"bad tag {tag!r}"
            raise InvalidReference(f"invalid reference {image!r}: {reason}")

    if not remainder:
        raise InvalidReference(f"invalid reference {image!r}: no repository name")

    domain, path = _split_domain(remainder)
    if domain is not None and not DOMAIN_RE.match(domain):
        raise InvalidReference(f"invalid reference {image!r}: bad registry host {domain!r}")
    if not path:
        raise InvalidReference(f"invalid reference {image!r}: no repository name")
    if domain is None and _IMAGE_ID_RE.match(path):
        raise InvalidReference(
            f"invalid reference {image!r}: a repository name of 64 hex characters is an image ID, "
            "not a name"
        )
    for component in path.split("/"):
        if not COMPONENT_RE.match(component):
            if component.lower() != component and COMPONENT_RE.match(component.lower()):
                raise InvalidReference(
                    f"invalid reference {image!r}: repository name must be lower case"
                )
            raise InvalidReference(f"invalid reference {image!r}: bad path component {component!r}")

    host = DEFAULT_REGISTRY if domain is None else _host(domain)
    if host == DEFAULT_REGISTRY and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    if len(path) > NAME_TOTAL_MAX:
        raise InvalidReference(
            f"invalid reference {image!r}: repository path longer than {NAME_TOTAL_MAX} characters"
        )
    return Reference(registry=host, repository=path, tag=tag, digest=digest)


def normalize(image: str) -> str:
    """Shortcut for ``parse(image).normalized``."""
    return parse(image).normalized
