"""Push real images to a registry: reproducible layers, OCI and Docker v2 media types.

Synchronous (stdlib ``urllib``) on purpose: fixtures and sync tests call it
directly; async tests call it before their first ``await`` or through
``asyncio.to_thread``. Layers have mtime 0 and sorted entries, so the same
files always give the same diff_id and blob digest, on any registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"

CREATED = "2024-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer(NamedTuple):
    gz: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256(self.gz)


def layer(files: Mapping[str, bytes | str]) -> Layer:
    """A gzip tar layer from ``{path: content}``: (compressed bytes, diff_id). Reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in sorted(files.items()):
            content = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(content))
    tar = raw.getvalue()
    return Layer(gzip.compress(tar, mtime=0), sha256(tar))


def recompress(original: Layer, *, level: int = 1) -> Layer:
    """The same tar with another gzip level: a new blob digest, the same diff_id."""
    tar = gzip.decompress(original.gz)
    return Layer(gzip.compress(tar, compresslevel=level, mtime=0), original.diff_id)


@dataclass(frozen=True)
class Pushed:
    """What a push produced; ``reference`` is ``host/repo@digest``."""

    host: str
    repository: str
    tag: str | None
    digest: str
    media_type: str
    size: int
    body: bytes = field(repr=False)
    config_digest: str | None = None
    diff_ids: tuple[str, ...] = ()
    platform: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"

    @property
    def tagged(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def platform_dict(platform: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(platform, Mapping):
        return dict(platform)
    parts = platform.split("/")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


class PushError(RuntimeError):
    pass


class Pusher:
    """Pushes blobs, manifests and indexes with the monolithic POST + PUT upload."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        authorization: Callable[[str], str | None] | None = None,
        mount: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = self.base_url.split("//", 1)[1]
        self._ssl = ssl_context
        self._authorization = authorization
        self._blobs: dict[str, set[str]] = {}  # digest -> repositories that have it
        self._mount = mount  # a per-repository token cannot read the source repository

    def _call(
        self,
        method: str,
        url: str,
        repository: str,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        hdrs = dict(headers or {})
        if self._authorization is not None:
            value = self._authorization(repository)
            if value:
                hdrs["Authorization"] = value
        full = url if url.startswith("http") else self.base_url + url
        req = urllib.request.Request(full, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise PushError(f"{method} {full} -> {exc.code}: {body}") from None

    def push_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        """Upload (or cross-repository mount, when this pusher uploaded it before) a blob."""
        digest = sha256(data)
        known = self._blobs.get(digest, set())
        if repository in known:
            return {"digest": digest, "size": len(data)}
        url = f"/v2/{repository}/blobs/uploads/"
        if known and self._mount:
            source = urllib.parse.quote(next(iter(known)))
            url += f"?mount={urllib.parse.quote(digest)}&from={source}"
        status, headers, _ = self._call("POST", url, repository)
        if status == 201:  # mounted
            known.add(repository)
            return {"digest": digest, "size": len(data)}
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        self._call(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            repository,
            data,
            {"Content-Type": "application/octet-stream"},
        )
        self._blobs.setdefault(digest, set()).add(repository)
        return {"digest": digest, "size": len(data)}

    def push_manifest(self, repository: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT exact bytes; returns the digest the registry answered (== sha256(body))."""
        _, headers, _ = self._call(
            "PUT", f"/v2/{repository}/manifests/{ref}", repository, body, {"Content-Type": media_type}
        )
        digest = str(headers["Docker-Content-Digest"])
        if digest != sha256(body):
            raise PushError(f"registry answered {digest} for a body hashing to {sha256(body)}")
        return digest

    def delete(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry runs with ``delete: enabled``)."""
        self._call("DELETE", f"/v2/{repository}/manifests/{digest}", repository)

    def push_image(
        self,
        repository: str,
        tag: str | None,
        layers: Sequence[Layer | tuple[bytes, str]],
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        arch: str = "amd64",
        os: str = "linux",
        variant: str | None = None,
        created: str | None = CREATED,
        env: Sequence[str] = (),
        media_type: str = OCI,
        config_extra: Mapping[str, Any] | None = None,
    ) -> Pushed:
        """Push layers + config + manifest; tag it when ``tag`` is given (else by digest only)."""
        docker = media_type == DOCKER
        config: dict[str, Any] = {
            "architecture": arch,
            "os": os,
            "config": {"Labels": dict(labels or {}), "Env": list(env)},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        }
        if variant:
            config["variant"] = variant
        if created is not None:
            config["created"] = created
        config.update(config_extra or {})
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_desc = {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            **self.push_blob(repository, config_bytes),
        }
        layer_descs = [
            {"mediaType": DOCKER_LAYER if docker else OCI_LAYER, **self.push_blob(repository, gz)}
            for gz, _ in layers
        ]
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config_desc,
            "layers": layer_descs,
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        body = json.dumps(manifest, indent=2).encode()
        digest = self.push_manifest(repository, tag or sha256(body), body, media_type)
        plat = f"{os}/{arch}" + (f"/{variant}" if variant else "")
        return Pushed(
            host=self.host,
            repository=repository,
            tag=tag,
            digest=digest,
            media_type=media_type,
            size=len(body),
            body=body,
            config_digest=config_desc["digest"],
            diff_ids=tuple(diff for _, diff in layers),
            platform=plat,
        )

    def push_attestation(
        self,
        repository: str,
        subject: Pushed,
        layers: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A BuildKit-style attestation manifest for ``subject``: its index descriptor.

        ``layers``: the in-toto statement layers (already pushed); by default one
        empty statement, for tests that only need an attestation entry to exist.
        """
        if layers is None:
            statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1"}).encode()
            layers = [{"mediaType": IN_TOTO, **self.push_blob(repository, statement)}]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {"mediaType": OCI_CONFIG, **self.push_blob(repository, b"{}")},
            "layers": list(layers),
        }
        body = json.dumps(manifest).encode()
        digest = self.push_manifest(repository, sha256(body), body, OCI)
        return {
            "mediaType": OCI,
            "digest": digest,
            "size": len(body),
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": subject.digest,
            },
        }

    def push_index(
        self,
        repository: str,
        tag: str | None,
        entries: Sequence[tuple[Pushed, str | Mapping[str, str]]],
        *,
        annotations: Mapping[str, str] | None = None,
        descriptor_annotations: Mapping[str, Mapping[str, str]] | None = None,
        media_type: str = OCI_INDEX,
        attestations: bool = False,
        extra_descriptors: Sequence[Mapping[str, Any]] = (),
    ) -> Pushed:
        """Push an index (or Docker manifest list) over already pushed images.

        ``entries`` pairs each image with its platform (``"linux/arm64/v8"`` or a
        dict); ``descriptor_annotations`` maps a platform string to the
        annotations of that index entry; ``attestations`` adds an
        ``unknown/unknown`` attestation manifest per entry, as BuildKit does.
        """
        manifests: list[dict[str, Any]] = []
        for pushed, platform in entries:
            desc = pushed.descriptor(platform=platform_dict(platform))
            key = platform if isinstance(platform, str) else pushed.platform or ""
            if descriptor_annotations and key in descriptor_annotations:
                desc["annotations"] = dict(descriptor_annotations[key])
            manifests.append(desc)
        if attestations:
            manifests += [self.push_attestation(repository, pushed) for pushed, _ in entries]
        manifests += [dict(d) for d in extra_descriptors]
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
        if annotations:
            index["annotations"] = dict(annotations)
        body = json.dumps(index, indent=2).encode()
        digest = self.push_manifest(repository, tag or sha256(body), body, media_type)
        return Pushed(
            host=self.host,
            repository=repository,
            tag=tag,
            digest=digest,
            media_type=media_type,
            size=len(body),
            body=body,
        )
