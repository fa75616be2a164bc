"""The OCI 1.1 referrers API, spoken in front of a real docker-registry that lacks it.

docker-registry 2.8 stores manifests with a ``subject`` but has no
``GET /v2/<name>/referrers/<digest>`` (it answers a bare 404). This front
forwards everything to the real registry and adds what distribution-spec 1.1
asks of a registry that supports the API:

- a manifest PUT whose body has a ``subject`` is answered with the
  ``OCI-Subject`` header, and its descriptor (``mediaType``, ``digest``,
  ``size``, ``artifactType``, ``annotations``) is listed under that subject;
- ``GET /v2/<name>/referrers/<digest>`` answers an OCI index of those
  descriptors (an empty index for an unknown subject), filtered by
  ``?artifactType=`` with the ``OCI-Filters-Applied`` header.

Push through :attr:`url` (so the front sees the PUTs) and read through it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

from support.faulty_proxy import FaultyProxy, _response

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MANIFEST_PUT = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")


class ReferrersFront(FaultyProxy):
    """A registry front with the referrers API; faults and request counts as in :class:`FaultyProxy`."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = _REFERRERS.match(request.path)
        if request.method == "GET" and found and not self._take_fault_peek(request.path_qs):
            self._record(request)
            return self._referrers(request, found["name"], found["digest"])
        put = _MANIFEST_PUT.match(request.path)
        if request.method == "PUT" and put:
            body = await request.read()
            status, headers, answer = await self._upstream(request)
            subject = _subject(body)
            if status == 201 and subject is not None:
                self._remember(put["name"], subject, body, request.headers.get("Content-Type", ""))
                headers["OCI-Subject"] = subject
            return _response(request, status, headers, answer)
        return await super()._dispatch(request)

    def _take_fault_peek(self, path: str) -> bool:
        """Whether a fault is set for this path (then the fault answers instead of the API)."""
        with self._lock:
            return any(f.matches("GET", path) for f in self._faults)

    def _record(self, request: web.Request) -> None:
        from support.faulty_proxy import Seen

        with self._lock:
            self._seen.append(
                Seen(request.method, request.path_qs, request.host, dict(request.headers))
            )

    def _remember(self, name: str, subject: str, body: bytes, content_type: str) -> None:
        manifest = json.loads(body)
        desc: dict[str, Any] = {
            "mediaType": manifest.get("mediaType") or content_type,
            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        artifact = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        if artifact:
            desc["artifactType"] = artifact
        if manifest.get("annotations"):
            desc["annotations"] = manifest["annotations"]
        with self._lock:
            entries = self.referrers.setdefault((name, subject), [])
            if all(e["digest"] != desc["digest"] for e in entries):
                entries.append(desc)

    def _referrers(self, request: web.Request, name: str, digest: str) -> web.Response:
        with self._lock:
            entries = list(self.referrers.get((name, digest), []))
        headers = {"Content-Type": OCI_INDEX}
        wanted = request.query.get("artifactType")
        if wanted:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        return web.Response(status=200, body=body.encode(), headers=headers)


def _subject(body: bytes) -> str | None:
    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    subject = manifest.get("subject") if isinstance(manifest, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None
