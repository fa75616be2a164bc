"""A hostile registry for ``bench/hostile.py``: every tag is a distinct index of ~4 MB.

    python bench/flood_registry.py PORT [--bytes 4190000]

Serves the distribution API's manifest endpoint on 127.0.0.1:PORT (``/v2/`` and
``HEAD``/``GET /v2/<name>/manifests/<reference>``). Each tag answers an OCI image
index of as many entries as fit in ``--bytes`` (18,900 at the default, just under the
4 MiB a registry accepts for a manifest), all of one child, each entry with a platform
variant of its own and the tag written into the first entry's annotations, so no two
tags share a body and nothing a content cache holds helps the next one. A digest
reference answers the index it names, when this process served it.

It is a registry an attacker runs (any tenant may name an image on any host the
registry configuration allows); it runs in a process of its own so that generating
and hashing the bodies costs the bench's process nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from aiohttp import web

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHILD = "sha256:" + "cd" * 32


def entry(i: int) -> bytes:
    return json.dumps(
        {
            "mediaType": MANIFEST,
            "digest": CHILD,
            "size": 1234,
            "platform": {"os": "linux", "architecture": "amd64", "variant": f"v{i}"},
        },
        separators=(",", ":"),
    ).encode()


def body_for(tag: str, limit: int, _entries: dict[int, bytes] = {}) -> bytes:  # noqa: B006 - a memo
    """The index for ``tag``: its head names the tag, its entries are built once per ``limit``.

    Building 18,900 entries takes ~50 ms; rebuilding them for every tag made this
    process (the attacker's, on the same 2 cores in the bench) the machine's load.
    """
    head = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "annotations": {"bench.tag": tag}}, separators=(",", ":")
    ).encode()[:-1] + b',"manifests":['
    entries = _entries.get(limit)
    if entries is None:
        parts: list[bytes] = []
        size = len(head) + 2 + 256  # room for a long tag in the head
        i = 0
        while True:
            item = entry(i)
            if size + len(item) + 1 > limit:
                break
            parts.append(item)
            size += len(item) + (0 if i == 0 else 1)
            i += 1
        entries = _entries[limit] = b",".join(parts)
    return head + entries + b"]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--bytes", type=int, default=4_190_000)
    args = parser.parse_args(argv)
    served: dict[str, bytes] = {}

    async def root(_: web.Request) -> web.Response:
        return web.json_response({})

    async def manifest(request: web.Request) -> web.Response:
        reference = request.match_info["reference"]
        if reference.startswith("sha256:"):
            body = served.get(reference)
            if body is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        else:
            body = body_for(request.match_info["name"] + ":" + reference, args.bytes)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if len(served) < 4096:
                served[digest] = body
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = {"Docker-Content-Digest": digest, "Content-Type": INDEX}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(headers=headers)
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/", root)
    app.router.add_route("*", r"/v2/{name:.+}/manifests/{reference}", manifest)
    print(f"flood registry on 127.0.0.1:{args.port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
