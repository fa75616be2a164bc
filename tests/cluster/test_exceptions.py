"""``BaseImagePolicyException`` through the real apiserver: the CRD the chart ships, the
operator's status, and the webhook's answer to pods of two namespaces.

Namespaced policies only (the suite shares one cluster): a ``BaseImagePolicy`` of the
same name in two namespaces, an exception in one of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cluster.cluster_support import Baseguard, apply_ready, denial, pod, policy
from support.controlplane import ControlPlane, wait_for
from support.registry import RegistryProcess

PINS = {"mode": "Enforce", "pinning": {"require": "Version", "disallowedTags": []}}
DENIED_BY = 'admission webhook "workloads.validate.baseguard.io" denied the request'


def exception(name: str, namespace: str, until: dt.date, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicyException",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "policy": {"kind": "BaseImagePolicy", "name": "pins"},
            "images": ["*/cluster/app"],
            "until": until.isoformat(),
            "reason": "APP-1",
            **spec,
        },
    }


def ready(plane: ControlPlane, name: str, namespace: str) -> dict[str, Any] | None:
    live = plane.get_json("baseimagepolicyexception", name, "-n", namespace)
    conditions = (live.get("status") or {}).get("conditions") or []
    found = [c for c in conditions if c.get("type") == "Ready"]
    return found[0] if found else None


def test_an_exception_object_waives_in_its_namespace_only_through_the_apiserver(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    other = control_plane.namespace(f"{ns}-b")
    try:
        apply_ready(control_plane, policy("pins", PINS, namespace=ns), policy("pins", PINS, namespace=other))
        today = dt.datetime.now(dt.UTC).date()
        control_plane.apply([exception("app-migration", ns, today + dt.timedelta(days=30))])
        condition = wait_for(
            "the exception's Ready condition",
            lambda: ready(control_plane, "app-migration", ns),
            timeout=30,
        )
        assert (condition["status"], condition["reason"]) == ("True", "Compiled"), condition
        assert f"BaseImagePolicy {ns}/pins" in condition["message"]

        image = f"{registry.host}/cluster/app:1.2"
        admitted = control_plane.apply([pod("web", image, namespace=ns)], "--dry-run=server")
        assert "(server dry run)" in admitted.stdout
        assert f"by BaseImagePolicyException {ns}/app-migration" in admitted.stderr, admitted.stderr
        refused = denial(control_plane.apply([pod("web", image, namespace=other)], "--dry-run=server", check=False))
        assert DENIED_BY in refused and "unpinned" in refused, refused
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_expired_and_invalid_exceptions_say_so_and_waive_nothing(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("pins", PINS, namespace=ns))
    today = dt.datetime.now(dt.UTC).date()
    control_plane.apply([exception("old", ns, today - dt.timedelta(days=1))])
    old = wait_for("old's status", lambda: ready(control_plane, "old", ns), timeout=30)
    assert (old["status"], old["reason"]) == ("False", "Expired"), old
    image = f"{registry.host}/cluster/app:1.2"
    refused = denial(control_plane.apply([pod("web", image, namespace=ns)], "--dry-run=server", check=False))
    assert DENIED_BY in refused and "waived" not in refused, refused
    # What the structural schema can say, the apiserver refuses with the field.
    missing = exception("no-images", ns, today)
    del missing["spec"]["images"]
    result = control_plane.apply([missing], check=False)
    assert result.returncode != 0, result.stdout
    assert 'BaseImagePolicyException.spec): missing required field "images"' in result.stderr, result.stderr


def test_an_exception_the_compiler_refuses_is_refused_by_the_policy_webhook(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str
) -> None:
    """What only baseguard can say (90 days at most, a glob that never matches) is said
    when the exception is filed: kubectl apply fails with the field paths, nothing is stored."""
    today = dt.datetime.now(dt.UTC).date()
    too_long = exception("too-long", ns, today + dt.timedelta(days=400), images=["cluster/app:1.2/x"])
    result = control_plane.apply([too_long], check=False)
    assert result.returncode != 0, result.stdout
    printed = " ".join(result.stderr.split())  # kubectl may fold the message's lines
    assert 'admission webhook "policies.validate.baseguard.io" denied the request' in printed, printed
    assert "BaseImagePolicyException too-long is invalid (2 errors)" in printed, printed
    assert "spec.images[0]: 'cluster/app:1.2/x' never matches" in printed, printed
    latest = (today + dt.timedelta(days=90)).isoformat()
    assert f"is more than 90 days away (the latest is {latest})" in printed, printed
    stored = control_plane.kubectl(
        "get", "baseimagepolicyexception", "too-long", "-n", ns, "--ignore-not-found", "-o", "name"
    )
    assert stored.stdout.strip() == "", stored.stdout
    # the same exception within 90 days and with a glob that matches goes in
    fixed = exception("too-long", ns, today + dt.timedelta(days=90))
    assert control_plane.apply([fixed], "--dry-run=server").returncode == 0
