"""Namespace labels, kept from the operator's watch, read by every admission review.

``namespaceSelector`` is answered from here at admission time: no API call
per request while the watch knows the namespace. A namespace the watch has
not delivered yet (created a moment ago, its first pod already on the way)
is looked up once through the API: treating it as carrying only its name
label made ``namespaceSelector`` with ``In``/``matchLabels`` fail open for
brand-new namespaces. The lookup is bounded in time (``timeout``; past it the
review falls back to the name label and the log says so), shared by
concurrent reviews, remembered for ``ttl`` seconds (a missing namespace for
``missing_ttl``) in a bounded map, and runs in the client's worker thread,
off the event loop. The watch stays the authority: its labels win as soon as
they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from controller.caching import Loader
from controller.operator.kube import KubeLike, is_dns1123_label, object_path
from controller.workloads import string_map

log = logging.getLogger("baseguard.operator.namespaces")

NAME_LABEL = "kubernetes.io/metadata.name"
FAILURE_TTL = 2.0

Labels = Mapping[str, str]


class Namespaces:
    """Name → labels; replaced per namespace, read without locks (one event loop)."""

    def __init__(
        self,
        kube: KubeLike | None = None,
        *,
        timeout: float = 1.0,
        ttl: float = 30.0,
        missing_ttl: float = 5.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._labels: dict[str, Labels] = {}
        self._kube = kube
        self.timeout = timeout
        self.ttl = ttl
        self.missing_ttl = missing_ttl
        # A 1-tuple, so that "no such namespace" is remembered too (the map's miss is None).
        self._fetched: Loader[str, tuple[Labels | None]] = Loader(
            ttl=ttl, max_entries=max_entries, clock=clock
        )

    def put(self, name: str, labels: object) -> None:
        self._labels[name] = MappingProxyType(string_map(labels))

    def remove(self, name: str) -> None:
        self._labels.pop(name, None)

    def get(self, name: str) -> Labels | None:
        return self._labels.get(name)

    async def lookup(self, name: str) -> Labels | None:
        """The webhook's :data:`~controller.webhook.handlers.NamespaceLabels` callback.

        The watch's labels; else, with a client, the namespace read through
        the API (``None`` when it does not exist, cannot be read in time, or
        its name is not a namespace name).
        """
        known = self._labels.get(name)
        if known is not None or self._kube is None or not is_dns1123_label(name):
            return known
        try:
            (labels,) = await asyncio.wait_for(
                self._fetched.get(name, lambda: self._fetch(name)), timeout=self.timeout
            )
            return labels
        except TimeoutError:
            log.warning(
                "namespace not known yet and not read in time; only its name label applies",
                extra={"fields": {"namespace": name, "timeout": self.timeout}},
            )
            return None

    async def _fetch(self, name: str) -> tuple[tuple[Labels | None], float]:
        assert self._kube is not None
        try:
            found = await self._kube.get(object_path("namespaces", name))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 404:
                return (None,), self.missing_ttl
            log.warning(
                "cannot read a namespace the watch has not delivered yet",
                extra={"fields": {"namespace": name, "status": status, "error": str(exc)[:200]}},
            )
            return (None,), FAILURE_TTL
        metadata = found.get("metadata")
        labels = string_map(metadata.get("labels") if isinstance(metadata, Mapping) else None)
        labels.setdefault(NAME_LABEL, name)  # the apiserver sets it; an old one may not have
        return (MappingProxyType(labels),), self.ttl

    def snapshot(self) -> dict[str, Labels]:
        return dict(self._labels)

    def __len__(self) -> int:
        return len(self._labels)
