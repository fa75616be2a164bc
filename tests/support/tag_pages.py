"""Tag-list pagination, spoken in front of a real docker-registry that ignores it.

docker-registry 2.8 answers ``GET /v2/<name>/tags/list`` with every tag in one
page, whatever ``n`` says; distribution 3 and the big registries paginate: at
most ``n`` tags, sorted, after ``last``, and a ``Link: <…?last=…&n=…>;
rel="next"`` header while more remain (distribution-spec "Listing Tags"). This
front forwards everything to the real registry and pages its tag lists so.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from aiohttp import web

from support.faulty_proxy import FaultyProxy

_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")


class PagingFront(FaultyProxy):
    """A registry front whose tag lists come in pages; ``next_link`` may override the link."""

    next_link: str | None = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found = _TAGS.match(request.path)
        if request.method != "GET" or not found:
            return await super()._dispatch(request)
        status, headers, body = await self._upstream(request)
        if status != 200:
            return web.Response(status=status, body=body, headers=headers)
        tags = sorted(json.loads(body).get("tags") or [])
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        size = int(request.query.get("n", "100"))
        page, more = tags[:size], len(tags) > size
        out = {"Content-Type": "application/json"}
        if more:
            out["Link"] = self.next_link or (
                f'</v2/{found["name"]}/tags/list?last={quote(page[-1])}&n={size}>; rel="next"'
            )
        answer = json.dumps({"name": found["name"], "tags": page}).encode()
        return web.Response(status=200, body=answer, headers=out)
