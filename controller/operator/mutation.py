"""The mutating webhook, registered only while a policy needs it (chart value ``webhook.mutating.register: WhenNeeded``).

Why: every webhook in a configuration is one more HTTPS call the apiserver
makes, in series, for every pod it admits. ``/mutate`` changes an object only
for policies with ``pinning.mutateToDigest``; without one, the second call
costs every pod create its latency (and a third of the apiserver's
throughput) for an annotation. So the chart renders the
MutatingWebhookConfiguration with ``webhooks: []`` and the full entry in the
annotation :data:`TEMPLATE_ANNOTATION` (JSON), and the leader keeps the list
in step with the policy store (:class:`MutationKeeper`):

* no policy sets ``mutateToDigest``: ``webhooks: []``;
* only namespaced policies do: the entry, its ``namespaceSelector`` narrowed to
  those policies' namespaces (``kubernetes.io/metadata.name In [...]``), so a
  ``BaseImagePolicy`` only ever adds the call (and the checked-digests
  annotation) to pods of its own namespace -- no tenant changes what another
  tenant's pods cost or carry;
* a ``ClusterBaseImagePolicy`` does, or more than :data:`MAX_NAMESPACES`
  namespaces have one: the entry as the chart rendered it (every namespace
  the validating webhook judges).

The entry's ``caBundle`` is the one the ValidatingWebhookConfiguration of the
same name carries right now, whoever put it there (this operator in ``self``
mode, cert-manager's cainjector, the chart in ``secret`` mode): the two
webhooks are the same server, and a copied bundle is right in every mode.

A Helm upgrade does not fight this: the chart's ``webhooks: []`` is the same in
every release, so Helm's three-way merge never touches the list; an upgrade
that changes the template (say ``timeoutSeconds``) changes the annotation, and
the next check rewrites the entry from it. A configuration without the
annotation (``register: Always``, or an older chart) is left alone.

Everything above the :class:`MutationKeeper` is pure.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.operator.kube import KubeLike
from controller.policy.model import CompiledPolicy

log = logging.getLogger("baseguard.operator.mutation")

#: The annotation holding the mutating webhook entry the leader installs (JSON).
TEMPLATE_ANNOTATION = "baseguard.io/webhook-template"

#: Namespaces listed one by one in the entry's selector at most; past it, the entry
#: covers every namespace (a long list would grow the object the apiserver matches
#: every request against, and the object's size is bounded).
MAX_NAMESPACES = 100

NAMESPACE_LABEL = "kubernetes.io/metadata.name"
API = "/apis/admissionregistration.k8s.io/v1"


@dataclass(frozen=True)
class Need:
    """Where pods need ``/mutate``: nowhere, in some namespaces, or everywhere."""

    everywhere: bool = False
    namespaces: frozenset[str] = field(default_factory=frozenset)

    @property
    def anywhere(self) -> bool:
        return self.everywhere or bool(self.namespaces)

    def describe(self) -> str:
        if self.everywhere:
            return "every namespace"
        if self.namespaces:
            return ", ".join(sorted(self.namespaces))
        return "none"


def need_of(policies: Iterable[CompiledPolicy], *, max_namespaces: int = MAX_NAMESPACES) -> Need:
    """Which namespaces some policy pins images in (``pinning.mutateToDigest``)."""
    namespaces: set[str] = set()
    for policy in policies:
        if not policy.pinning.mutate_to_digest:
            continue
        if policy.namespace is None:
            return Need(everywhere=True)
        namespaces.add(policy.namespace)
    if len(namespaces) > max_namespaces:
        return Need(everywhere=True)
    return Need(namespaces=frozenset(namespaces))


class TemplateError(ValueError):
    """The configuration's template annotation is not a webhook entry."""


def template_of(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry in :data:`TEMPLATE_ANNOTATION`; ``None`` when the configuration has none (left alone)."""
    meta = config.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    raw = annotations.get(TEMPLATE_ANNOTATION) if isinstance(annotations, Mapping) else None
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"{TEMPLATE_ANNOTATION} is not JSON: {exc}") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise TemplateError(f"{TEMPLATE_ANNOTATION} is not a webhook entry (no name)")
    if not isinstance(entry.get("clientConfig"), dict):
        raise TemplateError(f"{TEMPLATE_ANNOTATION} has no clientConfig")
    return entry


def ca_bundle_of(validating: Mapping[str, Any] | None) -> str | None:
    """The ``caBundle`` (base64) of the validating configuration's first webhook that has one."""
    if validating is None:
        return None
    hooks = validating.get("webhooks")
    for hook in hooks if isinstance(hooks, list) else ():
        client = hook.get("clientConfig") if isinstance(hook, Mapping) else None
        value = client.get("caBundle") if isinstance(client, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def wanted_webhooks(
    template: Mapping[str, Any], need: Need, ca_bundle: str | None
) -> list[dict[str, Any]]:
    """The ``webhooks`` list the configuration should hold for ``need``."""
    if not need.anywhere:
        return []
    entry = json.loads(json.dumps(template))  # a deep copy the caller cannot share
    if ca_bundle is not None:
        entry["clientConfig"]["caBundle"] = ca_bundle
    if not need.everywhere:
        selector = entry.get("namespaceSelector")
        selector = dict(selector) if isinstance(selector, Mapping) else {}
        expressions = list(selector.get("matchExpressions") or [])
        expressions.append(
            {"key": NAMESPACE_LABEL, "operator": "In", "values": sorted(need.namespaces)}
        )
        selector["matchExpressions"] = expressions
        entry["namespaceSelector"] = selector
    return [entry]


def contains(live: Any, wanted: Any) -> bool:
    """``wanted`` is ``live`` minus what the apiserver defaults (fields ``wanted`` does not set).

    The apiserver fills in defaults (``objectSelector: {}``, a Service's port,
    ``matchPolicy``...), so equality would never hold and the keeper would
    patch on every check; every field the template sets must match.
    """
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(contains(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def in_step(config: Mapping[str, Any], wanted: Sequence[Mapping[str, Any]]) -> bool:
    """The configuration's ``webhooks`` already are ``wanted`` (an absent list is an empty one)."""
    live = config.get("webhooks") or []
    if not wanted:
        return not live
    return contains(live, list(wanted))


def webhooks_patch(config: Mapping[str, Any], wanted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A JSON Patch setting ``webhooks``, refused by the apiserver if the object changed since it was read.

    ``add`` sets the member whether or not it is there (the apiserver omits an
    empty list); the ``test`` of ``resourceVersion`` makes a concurrent write
    (the certificate keeper patching a caBundle, a Helm upgrade) fail this
    patch instead of being overwritten; the next check reads again.
    """
    meta = config.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    ops: list[dict[str, Any]] = []
    if isinstance(version, str):
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": version})
    ops.append({"op": "add", "path": "/webhooks", "value": [dict(w) for w in wanted]})
    return ops


# --------------------------------------------------------------------------- the leader's loop


@dataclass
class MutationKeeper:
    """The leader's job: the mutating configuration ``name`` holds the webhook exactly while it is needed."""

    kube: KubeLike
    name: str
    interval: float = 60.0
    """Seconds between checks when nothing changed (a policy change wakes it at once)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by :meth:`poke`; the leader's loop checks again when it sees it."""
    last: Need | None = None
    _broken: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def mutating_path(self) -> str:
        return f"{API}/mutatingwebhookconfigurations/{self.name}"

    @property
    def validating_path(self) -> str:
        return f"{API}/validatingwebhookconfigurations/{self.name}"

    def poke(self) -> None:
        """A policy changed: check again now."""
        self.wake.set()

    async def reconcile(self, policies: Iterable[CompiledPolicy], *, if_changed: bool = False) -> bool:
        """One check against ``policies``; True when the configuration was written.

        One check at a time (the policy event handler and the loop both call it).
        ``if_changed`` (a policy event): skip the API when the need is the one last
        put in place -- at a leader's start every policy sends an event, and most
        change nothing here; the timer still repairs what someone else rewrote.
        """
        need = need_of(policies)
        async with self._lock:
            if if_changed and need == self.last:
                return False
            self.wake.clear()
            return await self._reconcile(need)

    async def _reconcile(self, need: Need) -> bool:
        try:
            config = await self.kube.get(self.mutating_path)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False  # webhook.mutating.enabled: false, or not installed yet
            raise
        try:
            template = template_of(config)
        except TemplateError as exc:
            if self._broken != str(exc):
                self._broken = str(exc)
                log.warning(
                    "mutating webhook template unusable; configuration left alone",
                    extra={"fields": {"configuration": self.name, "error": str(exc)}},
                )
            return False
        self._broken = None
        if template is None:
            return False  # register: Always (or an older chart): the chart owns the list
        ca_bundle: str | None = None
        if need.anywhere:
            try:
                validating = await self.kube.get(self.validating_path)
            except Exception as exc:
                if getattr(exc, "status", None) != 404:
                    raise
                validating = None
            ca_bundle = ca_bundle_of(validating)
            if ca_bundle is None:
                ca_bundle = template["clientConfig"].get("caBundle")
        wanted = wanted_webhooks(template, need, ca_bundle)
        if in_step(config, wanted):
            self.last = need
            return False
        await self.kube.patch(
            self.mutating_path,
            webhooks_patch(config, wanted),
            content_type="application/json-patch+json",
        )
        self.last = need
        log.info(
            "mutating webhook registered" if wanted else "mutating webhook removed",
            extra={"fields": {"configuration": self.name, "namespaces": need.describe()}},
        )
        return True
