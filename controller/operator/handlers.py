"""kopf handlers, on an explicit :class:`kopf.OperatorRegistry`; thin by design.

Every handler hands its object to the :class:`~controller.operator.replica.Operator`
(kopf's ``memo``) and returns. Only two kinds of handler are used, because
they persist nothing on the watched objects:

* ``@kopf.index`` — fills the policy store and the namespace labels. kopf
  runs indexing handlers for every event but deletions, and holds back every
  other handler until all indices are populated, which is how the operator
  knows its initial listing is complete;
* ``@kopf.on.event`` — deletions, readiness, and (on the leader) status.

Not used: ``on.create``/``on.update`` (they write a
``kopf.zalando.org/last-handled-configuration`` annotation and put return
values into ``status``), kopf's peering (equal peers freeze; the Lease in
:mod:`.leader` elects), kopf's admission server (the webhook is
:mod:`controller.webhook`), and kopf's Event posting (the audit posts its own).
Nothing registers at import: :func:`build_registry` makes a fresh registry.
"""

from __future__ import annotations

from typing import Any

import kopf

from controller.operator.policies import KINDS
from controller.operator.replica import Operator
from controller.policy.model import GROUP, VERSION


def login(memo: Operator, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the same server, as the same user, as the kubernetes client."""
    return memo.kube.connection_info()


def index_policy(
    body: kopf.Body, resource: kopf.Resource, memo: Operator, **_: Any
) -> dict[str, int]:
    return memo.policy_indexed(dict(body), kind=resource.kind or "")


async def policy_event(
    type: str | None, body: kopf.Body, resource: kopf.Resource, memo: Operator, **_: Any
) -> None:
    await memo.policy_event(type, dict(body), kind=resource.kind or "")


def index_namespace(name: str, labels: kopf.Labels, memo: Operator, **_: Any) -> None:
    memo.namespace_indexed(name, dict(labels))


def namespace_event(type: str | None, name: str, memo: Operator, **_: Any) -> None:
    memo.namespace_event(type, name)


async def cleanup(memo: Operator, **_: Any) -> None:
    """kopf is stopping (SIGTERM, SIGINT or the stop flag): stop the rest in order."""
    await memo.shutdown()


def build_registry() -> kopf.OperatorRegistry:
    """A registry with baseguard's handlers and nothing else."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="baseguard-login")(login)
    kopf.on.cleanup(registry=registry, id="baseguard-cleanup")(cleanup)
    for kind in KINDS.values():
        kopf.index(GROUP, VERSION, kind.plural, registry=registry, id=f"{kind.plural}_idx")(
            index_policy
        )
        kopf.on.event(GROUP, VERSION, kind.plural, registry=registry, id=f"{kind.plural}_event")(
            policy_event
        )
    kopf.index("", "v1", "namespaces", registry=registry, id="namespaces_idx")(index_namespace)
    kopf.on.event("", "v1", "namespaces", registry=registry, id="namespaces_event")(namespace_event)
    return registry


def settings() -> kopf.OperatorSettings:
    """kopf's settings for baseguard: no CRD scanning, no Event posting of handler logs."""
    out = kopf.OperatorSettings()
    out.scanning.disabled = True  # the watched kinds are fixed; no RBAC to watch every CRD
    out.posting.enabled = False
    out.watching.server_timeout = 300  # reconnect watches every 5 minutes, as client-go does
    out.watching.client_timeout = 330
    return out
