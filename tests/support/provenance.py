"""BuildKit-shaped provenance, built and pushed for real: statements, attestation manifests, referrers.

The shapes follow what ``docker buildx build --provenance`` writes (BuildKit
``exporter/containerimage/attestations`` and ``util/purl``):

- an in-toto statement per platform image, ``subject`` = that platform
  manifest, as a layer of media type ``application/vnd.in-toto+json``
  annotated ``in-toto.io/predicate-type``;
- an attestation manifest holding it, listed in the index with
  ``platform: unknown/unknown`` and the annotations
  ``vnd.docker.reference.type: attestation-manifest`` /
  ``vnd.docker.reference.digest: <platform manifest>``;
- materials as ``pkg:docker/<name>@<tag>?platform=<os>%2F<arch>`` purls with
  a sha256: Docker Hub library images without ``library/``, other
  registries' images with their host.

Or, OCI 1.1 style, the same statement in a manifest whose ``subject`` is the
image (found through the referrers API or the ``sha256-<hex>`` tag).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from support.images import IN_TOTO, OCI, OCI_INDEX, Layer, Pushed, Pusher, layer, sha256

if TYPE_CHECKING:
    from support.registry import RegistryProcess

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
EMPTY_CONFIG = b"{}"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_ATTESTATION = "application/vnd.docker.attestation.manifest.v1+json"
ARCHES = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}


def purl(name: str, version: str, platform: str | None = "linux/amd64", **qualifiers: str) -> str:
    """``pkg:docker/<name>@<version>?platform=…`` as BuildKit writes it (``/`` in the platform escaped)."""
    q = dict(qualifiers)
    if platform is not None:
        q["platform"] = platform
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in sorted(q.items()))
    return f"pkg:docker/{name}@{version}" + (f"?{query}" if query else "")


def material(
    name: str, version: str, digest: str, platform: str | None = "linux/amd64"
) -> dict[str, Any]:
    """A SLSA material / resolved dependency for an image pulled at ``digest``."""
    return {
        "uri": purl(name, version, platform),
        "digest": {"sha256": digest.removeprefix("sha256:")},
    }


def statement(
    subject: Pushed | str,
    materials: Sequence[Mapping[str, Any]],
    *,
    version: str = SLSA_V02,
    name: str = "pkg:docker/app@latest?platform=linux%2Famd64",
) -> dict[str, Any]:
    """A SLSA v0.2 or v1 provenance statement about ``subject`` (a platform image or a digest)."""
    digest = subject if isinstance(subject, str) else subject.digest
    subjects = [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}]
    git = {"uri": "https://github.com/example/app.git#ref", "digest": {"sha1": "0" * 40}}
    if version == SLSA_V1:
        return {
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": SLSA_V1,
            "subject": subjects,
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                    "externalParameters": {"request": {"frontend": "dockerfile.v0"}},
                    "resolvedDependencies": [*materials, git],
                },
                "runDetails": {"builder": {"id": ""}, "metadata": {"invocationID": "test"}},
            },
        }
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": SLSA_V02,
        "subject": subjects,
        "predicate": {
            "builder": {"id": ""},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "materials": [*materials, git],
            "invocation": {
                "configSource": {"entryPoint": "Dockerfile"},
                "parameters": {"frontend": "dockerfile.v0"},
            },
            "metadata": {"buildInvocationID": "test", "completeness": {"materials": False}},
        },
    }


def sbom(subject: Pushed) -> dict[str, Any]:
    """An SPDX statement, as BuildKit's ``--sbom`` adds next to provenance: never read for lineage."""
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": SPDX,
        "subject": [{"name": "x", "digest": {"sha256": subject.digest.removeprefix("sha256:")}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "packages": []},
    }


def _statement_layers(
    pusher: Pusher, repository: str, statements: Sequence[Mapping[str, Any] | bytes]
) -> list[dict[str, Any]]:
    layers = []
    for st in statements:
        body = st if isinstance(st, bytes) else json.dumps(st).encode()
        predicate = SLSA_V02 if isinstance(st, bytes) else str(st.get("predicateType", ""))
        layers.append(
            {
                "mediaType": IN_TOTO,
                **pusher.push_blob(repository, body),
                "annotations": {"in-toto.io/predicate-type": predicate},
            }
        )
    return layers


def push_attestation(
    pusher: Pusher,
    repository: str,
    subject: Pushed,
    statements: Sequence[Mapping[str, Any] | bytes],
) -> dict[str, Any]:
    """Push a BuildKit attestation manifest; return its index descriptor (``unknown/unknown``)."""
    return pusher.push_attestation(
        repository, subject, _statement_layers(pusher, repository, statements)
    )


def push_buildx_index(
    pusher: Pusher,
    repository: str,
    tag: str,
    images: Sequence[tuple[Pushed, str, Sequence[Mapping[str, Any] | bytes]]],
) -> Pushed:
    """An index as ``docker buildx build --push --provenance`` leaves it.

    ``images`` pairs each platform image with its platform and the statements
    of its attestation manifest; platform entries come first, then one
    attestation manifest per platform image.
    """
    attestations = [push_attestation(pusher, repository, img, sts) for img, _, sts in images]
    return pusher.push_index(
        repository,
        tag,
        [(img, platform) for img, platform, _ in images],
        extra_descriptors=attestations,
    )


def push_referrer(
    pusher: Pusher,
    repository: str,
    subject: Pushed,
    statements: Sequence[Mapping[str, Any] | bytes],
    *,
    artifact_type: str = DOCKER_ATTESTATION,
    fallback_tag: bool = True,
) -> dict[str, Any]:
    """Attach the statements to ``subject`` OCI 1.1 style; return the referrer's descriptor.

    With ``fallback_tag`` the referrers index is also written to the
    ``sha256-<hex>`` tag, as clients do for a registry without the referrers
    API (docker-registry 2.8 has none).
    """
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, **pusher.push_blob(repository, EMPTY_CONFIG)},
        "layers": _statement_layers(pusher, repository, statements),
        "subject": subject.descriptor(),
    }
    body = json.dumps(manifest).encode()
    digest = pusher.push_manifest(repository, sha256(body), body, OCI)
    descriptor = {
        "mediaType": OCI,
        "digest": digest,
        "size": len(body),
        "artifactType": artifact_type,
    }
    if fallback_tag:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
        tag = "sha256-" + subject.digest.removeprefix("sha256:")
        index_body = json.dumps(index).encode()
        pusher.push_manifest(repository, tag, index_body, OCI_INDEX)
    return descriptor


@dataclass
class Build:
    """A multi-stage ``docker buildx`` build's inputs and per-platform outputs, pushed for real.

    ``debian`` is the runtime stage's base (its layer is each app image's
    first), ``golang`` the builder stage's and ``dockerfile`` the frontend:
    both pulled by the build, neither a layer prefix of the app.
    """

    root: str
    debian: dict[str, Pushed]
    debian_index: Pushed
    golang_index: Pushed
    frontend: Pushed
    app: dict[str, Pushed]
    layers: dict[str, Layer]

    def materials(self, arch: str, *, pin: str = "index") -> list[dict[str, Any]]:
        """What BuildKit records: the frontend, the builder stage (build platform), the runtime base."""
        debian = self.debian_index.digest if pin == "index" else self.debian[arch].digest
        return [
            material(f"{self.root}/dockerfile", "1", self.frontend.digest),
            material(f"{self.root}/golang", "1.22", self.golang_index.digest),
            material(f"{self.root}/debian", "12-slim", debian, ARCHES[arch]),
        ]


def push_build(registry: RegistryProcess, repo: str, *, host: str | None = None) -> Build:
    """The bases and the app's platform images (the app index is each test's business).

    ``host`` names the images (purls included) when they are read through another
    host than the registry's own (a counting proxy).
    """
    debian: dict[str, Pushed] = {}
    golang: dict[str, Pushed] = {}
    app: dict[str, Pushed] = {}
    layers: dict[str, Layer] = {}
    for arch, platform in ARCHES.items():
        variant = platform.split("/")[2] if platform.count("/") == 2 else None
        os_layer = layer({"etc/os-release": f"debian {arch} {repo}"})
        layers[arch] = os_layer
        debian[arch] = registry.push_image(
            f"{repo}/debian", None, [os_layer], arch=arch, variant=variant
        )
        golang[arch] = registry.push_image(
            f"{repo}/golang",
            None,
            [layer({"usr/local/go": f"{arch} {repo}"})],
            arch=arch,
            variant=variant,
        )
        app[arch] = registry.push_image(
            f"{repo}/app",
            None,
            [os_layer, layer({"app": f"{arch} {repo}"})],
            arch=arch,
            variant=variant,
        )
    debian_index = registry.push_index(
        f"{repo}/debian", "12-slim", [(debian[a], p) for a, p in ARCHES.items()]
    )
    golang_index = registry.push_index(
        f"{repo}/golang", "1.22", [(golang[a], p) for a, p in ARCHES.items()]
    )
    frontend = registry.push_image(f"{repo}/dockerfile", "1", [layer({"bin/frontend": repo})])
    return Build(
        f"{host or registry.host}/{repo}", debian, debian_index, golang_index, frontend, app, layers
    )
