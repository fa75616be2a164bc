"""Namespace labels, kept from the operator's watch, read by every admission review.

``namespaceSelector`` is answered from here at admission time: no API call
per request. An unknown namespace (created a moment ago, its event not in
yet) answers ``None``, and the webhook falls back to the label every
namespace carries (``kubernetes.io/metadata.name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from controller.workloads import string_map


class Namespaces:
    """Name → labels; replaced per namespace, read without locks (one event loop)."""

    def __init__(self) -> None:
        self._labels: dict[str, Mapping[str, str]] = {}

    def put(self, name: str, labels: object) -> None:
        self._labels[name] = MappingProxyType(string_map(labels))

    def remove(self, name: str) -> None:
        self._labels.pop(name, None)

    def get(self, name: str) -> Mapping[str, str] | None:
        return self._labels.get(name)

    async def lookup(self, name: str) -> Mapping[str, str] | None:
        """The webhook's :data:`~controller.webhook.handlers.NamespaceLabels` callback."""
        return self._labels.get(name)

    def snapshot(self) -> dict[str, Mapping[str, str]]:
        return dict(self._labels)

    def __len__(self) -> int:
        return len(self._labels)
