"""Item 4: ``failurePolicy`` and ``timeoutSeconds`` as the chart sets them, with baseguard down or slow.

Chart defaults: the workload webhooks ``Ignore`` (a rollout must not stop every deploy),
the policy webhook ``Fail`` (a policy nobody checked is never stored), 10 seconds.
The apiserver records a failed-open call in its audit log, so "admitted because the
webhook was down" is told apart from "admitted by baseguard".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster.cluster_support import Baseguard, Installation, apply_ready, pod, policy
from support.controlplane import ControlPlane
from support.registry import RegistryProcess

NO_LATEST = {"mode": "Enforce", "pinning": {"disallowedTags": ["latest"]}}
FAILED_OPEN = "failed-open.validating.webhook.admission.k8s.io/"


def failed_open(plane: ControlPlane, namespace: str, name: str) -> list[str]:
    """The webhooks the apiserver failed open on for the create of ``namespace/name``."""
    found = []
    for event in plane.audit_events():
        ref = event.get("objectRef") or {}
        if (ref.get("namespace"), ref.get("name"), event.get("verb")) != (
            namespace,
            name,
            "create",
        ):
            continue
        for key, value in (event.get("annotations") or {}).items():
            if key.startswith(FAILED_OPEN):
                found.append(value)
    return found


def installed_or_templated(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhooks of a configuration, the mutating entry the leader installs while a policy
    pins (``webhook.mutating.register: WhenNeeded``) included."""
    template = (config["metadata"].get("annotations") or {}).get("baseguard.io/webhook-template")
    return [*config.get("webhooks", []), *([json.loads(template)] if template else [])]


@pytest.fixture
def interrupted(installation: Installation, baseguard: Baseguard) -> Iterator[Baseguard]:
    """``baseguard``, restored (running and served) after the test stopped or paused it."""
    yield baseguard
    if baseguard.running:
        baseguard.resume()
    else:
        baseguard.start()
    installation.wait_until_served(baseguard)


def test_timeout_and_failure_policy_come_from_the_chart(
    control_plane: ControlPlane, baseguard: Baseguard
) -> None:
    hooks = {
        w["name"]: w
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")
        for w in installed_or_templated(control_plane.get_json(kind, "baseguard"))
    }
    assert {n: (w["failurePolicy"], w["timeoutSeconds"]) for n, w in hooks.items()} == {
        "workloads.validate.baseguard.io": ("Ignore", 10),
        "policies.validate.baseguard.io": ("Fail", 10),
        "workloads.mutate.baseguard.io": ("Ignore", 10),
    }


def test_baseguard_stopped(
    control_plane: ControlPlane, interrupted: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    interrupted.stop()

    control_plane.apply([pod("unchecked", f"{registry.host}/cluster/app:latest", namespace=ns)])
    assert failed_open(control_plane, ns, "unchecked") == ["workloads.validate.baseguard.io"]

    refused = control_plane.apply([policy("later", NO_LATEST, namespace=ns)], check=False)
    assert refused.returncode != 0
    assert 'failed calling webhook "policies.validate.baseguard.io"' in refused.stderr, (
        refused.stderr
    )
    # Nothing behind the URL answers (the Service would have no ready endpoints).
    assert any(
        why in refused.stderr for why in ("EOF", "connection reset", "connection refused")
    ), refused.stderr


def test_baseguard_slow(
    control_plane: ControlPlane, interrupted: Baseguard, ns: str, registry: RegistryProcess
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    interrupted.pause()  # the port stays open; nothing answers

    started = time.monotonic()
    control_plane.apply([pod("waited", f"{registry.host}/cluster/app:latest", namespace=ns)])
    waited = time.monotonic() - started
    # The apiserver waited for the chart's timeoutSeconds, then failed open.
    assert waited >= 9, waited
    assert failed_open(control_plane, ns, "waited") == ["workloads.validate.baseguard.io"]

    refused = control_plane.apply([policy("later", NO_LATEST, namespace=ns)], check=False)
    assert refused.returncode != 0
    assert 'failed calling webhook "policies.validate.baseguard.io"' in refused.stderr, (
        refused.stderr
    )
    assert "context deadline exceeded" in refused.stderr or "timeout" in refused.stderr.lower(), (
        refused.stderr
    )
