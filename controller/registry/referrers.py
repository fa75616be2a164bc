"""Reads for provenance: small blobs (in-toto statements) and OCI 1.1 referrers.

Kept apart from the manifest/config operations of :mod:`controller.registry.client`
(whose ``fetch_blob`` and ``fetch_referrers`` call these) because only the
provenance claim source needs them. Both go through the client's one request path (auth, limits, SSRF
guard, mirrors, negative cache, single-flight); nothing here opens a socket.

Referrers: ``GET /v2/<name>/referrers/<digest>`` answers an OCI index of the
manifests whose ``subject`` is that digest. A registry without the API
answers a bare 404 (docker-registry 2.8 does); clients that push referrers to
such a registry keep the same index under the tag ``<alg>-<hex>``, which is
read instead. A host found without the API is remembered for
:data:`NO_REFERRERS_API_TTL`, so it costs one request per image, not two.
One review reads each listing once: see :mod:`controller.lineage.referrersmemo`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller import digests
from controller.errors import LookupFailed
from controller.reference import Reference
from controller.registry import media
from controller.registry.config import RegistryHost
from controller.registry.media import ImageIndex
from controller.registry.transport import KIND_BLOB, error_detail

if TYPE_CHECKING:
    from controller.registry.client import RegistryClient

KIND_REFERRERS = "referrers"
#: How long a host that answered the referrers API with a bare 404 is taken to lack it.
NO_REFERRERS_API_TTL = 600.0
#: Statuses by which a registry says it has no referrers API at all.
NO_API_STATUSES = frozenset({404, 405, 501})

NO_REFERRERS = ImageIndex(media.OCI_INDEX, ())
#: How long a referrers answer lives in the shared cache tier: like a tag's, as a
#: signature or attestation may be attached at any time.
SHARED_REFERRERS_TTL = 30.0
#: In the shared tier: the host has no referrers API (the flight's ``None``).
_NO_API = b"no-api"
_NO_API_INDEX = ImageIndex("", ())  # the shared lookup's "no API" (its ``None`` means "not there")


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:abc…`` → ``sha256-abc…`` (a tag is at most 128 characters)."""
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}-{hexa}"[:128]


async def fetch_blob(client: RegistryClient, ref: Reference, digest: str, *, limit: int) -> bytes:
    """A small blob by digest: at most ``limit`` bytes, verified against the digest, cached.

    Image layers never come through here: lineage reads configs and
    statements, never filesystems.
    """
    if not digests.is_digest(digest):
        raise LookupFailed(f"blob of {ref.name} has a malformed digest {digest!r}")
    cached = client.cache.get_content("blob", digest)
    if isinstance(cached, bytes):
        client.count_cache_hit()
        return cached
    async def shared() -> bytes | None:
        found = await client.cache.shared_body("blob", digest)  # hashed against the digest
        if found is None or len(found[0]) > limit:
            return None
        client.cache.put_content("blob", digest, found[0], len(found[0]))
        return found[0]

    return await client.flight(
        ("blob", ref.registry, ref.repository, digest, client.fingerprint(ref)),
        lambda: client.mirrored(ref, lambda entry: _get_blob(client, entry, ref, digest, limit)),
        shared=shared,
    )


async def fetch_referrers(client: RegistryClient, ref: Reference, digest: str) -> ImageIndex:
    """The manifests whose ``subject`` is ``digest``, as an index; empty when there are none.

    The referrers API first, then the fallback tag. A missing fallback tag
    means "no referrers", not a failure; any other registry trouble raises
    :class:`LookupFailed`.
    """
    if not digests.is_digest(digest):
        raise LookupFailed(f"{ref.name}@{digest}: unsupported or malformed digest")
    no_api = client.no_referrers_api
    if no_api.get(ref.registry) is None:
        key = ("referrers", ref.registry, ref.repository, digest, client.fingerprint(ref))

        async def fetch(entry: RegistryHost) -> ImageIndex | None:
            found, body = await _get_referrers(client, entry, ref, digest)
            client.cache.put_answer(key, _NO_API if found is None else body, SHARED_REFERRERS_TTL)
            return found

        found = await client.flight(
            key, lambda: client.mirrored(ref, fetch), shared=lambda: _shared_referrers(client, key)
        )
        if found is not None and found is not _NO_API_INDEX:
            return found
        no_api.put(ref.registry, True)
    tagged = Reference(ref.registry, ref.repository, fallback_tag(digest), None)
    try:
        fetched = await client.fetch_manifest(tagged)
    except LookupFailed as exc:
        if exc.context.get("status") == 404 or exc.context.get("code") == "MANIFEST_UNKNOWN":
            return NO_REFERRERS
        raise
    if not isinstance(fetched.manifest, ImageIndex):
        raise LookupFailed(
            f"{tagged.normalized}: the referrers fallback tag names a manifest, not an index",
            context={"registry": ref.registry, "code": "INVALID"},
        )
    return fetched.manifest


async def _get_blob(
    client: RegistryClient, entry: RegistryHost, ref: Reference, digest: str, limit: int
) -> bytes:
    path = f"/v2/{ref.repository}/blobs/{digest}"
    what = f"blob {digest} of {ref.name}"
    reply = await client.call(entry, "GET", path, KIND_BLOB, ref.repository, what, accept=None)
    if reply.status != 200:
        raise client.http_error(reply, "GET", path, what)
    if len(reply.body) > limit:
        raise LookupFailed(
            f"{what} is over {limit} bytes: refused",
            context={"registry": reply.host, "code": "TOO_LARGE"},
        )
    actual = await client.digest_of(reply, digest.partition(":")[0])
    if actual != digest:
        raise LookupFailed(
            f"{what} does not match its digest (got {actual})",
            context={"registry": reply.host, "code": "DIGEST_MISMATCH"},
        )
    client.cache.put_content("blob", digest, reply.body, len(reply.body), body=reply.body)
    return reply.body


async def _shared_referrers(client: RegistryClient, key: tuple[str, ...]) -> ImageIndex | None:
    """A referrers answer another process shared (authenticated by the tier, 30 s)."""
    body = await client.cache.shared_answer(key)
    if body is None:
        return None
    if body == _NO_API:
        return _NO_API_INDEX
    try:
        index = media.parse_manifest(body, media.OCI_INDEX) if body else NO_REFERRERS
    except LookupFailed as exc:
        if exc.context.get("per_review") is not None:
            raise
        index = None
    if not isinstance(index, ImageIndex):
        await client.cache.reject_shared(key, "malformed")
        return None
    return index


async def _get_referrers(
    client: RegistryClient, entry: RegistryHost, ref: Reference, digest: str
) -> tuple[ImageIndex | None, bytes]:
    """``None`` when the host has no referrers API (a 404 without a registry error code);
    with the body the index was read from (empty for "none")."""
    path = f"/v2/{ref.repository}/referrers/{digest}"
    what = f"referrers of {ref.name}@{digest}"
    reply = await client.call(
        entry, "GET", path, KIND_REFERRERS, ref.repository, what, accept=media.OCI_INDEX
    )
    if reply.status in NO_API_STATUSES:
        code, _ = error_detail(reply.body)
        if reply.status == 404 and code is not None:
            return NO_REFERRERS, b""  # the API exists; the repository or the subject does not
        return None, b""
    if reply.status != 200:
        raise client.http_error(reply, "GET", path, what)
    try:
        index = media.parse_manifest(reply.body, media.OCI_INDEX)
    except LookupFailed as exc:
        raise LookupFailed(
            f"{what}: {exc.message}", context={"code": "INVALID", **exc.context, "registry": reply.host}
        ) from None
    if not isinstance(index, ImageIndex):
        raise LookupFailed(f"{what}: not an image index", context={"registry": reply.host, "code": "INVALID"})
    return index, reply.body
