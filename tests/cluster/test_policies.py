"""Item 2: policies through the apiserver: the CRD schema, its CEL rules and the policy webhook.

What ``kubectl apply`` prints is what a user sees: a refusal must name the field.
Valid policies go in by server-side dry run (they pass the schema, CEL and the
policy webhook, and change nothing the other tests see).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cluster.cluster_support import Baseguard, apply_ready, policy
from support.controlplane import ControlPlane, wait_for

POLICIES = Path(__file__).resolve().parents[1] / "data" / "policies"
#: wrong-identity.yaml names a kind the apiserver does not serve at all: kubectl stops
#: at "no matches for kind", before any field is looked at (the CLI validator covers it).
INVALID = sorted(
    p for p in (POLICIES / "invalid").glob("*.yaml") if p.name != "wrong-identity.yaml"
)


def expected_paths(path: Path) -> list[str]:
    """The field paths of a fixture's ``# expect: PATH: message`` lines."""
    return [m.group(1) for m in re.finditer(r"^# expect: ([^:\s]+):", path.read_text(), re.M)]


@pytest.mark.parametrize("path", sorted((POLICIES / "valid").glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_policies_are_accepted(
    control_plane: ControlPlane, baseguard: Baseguard, path: Path
) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document["metadata"].get("namespace"):
            control_plane.namespace(document["metadata"]["namespace"])
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_policies_are_refused_with_field_paths(
    control_plane: ControlPlane, baseguard: Baseguard, path: Path
) -> None:
    result = control_plane.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    printed = result.stderr
    named = [p for p in expected_paths(path) if p in printed]
    assert named, f"no field path of {expected_paths(path)} in what kubectl printed:\n{printed}"


def test_a_policy_the_schema_accepts_but_the_compiler_refuses_is_refused_by_the_webhook(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str
) -> None:
    bad = policy(
        "bad-glob",
        {"bases": {"deprecated": [{"image": "python:3.8", "reason": "end of life"}]}},
        namespace=ns,
    )
    result = control_plane.apply([bad], check=False)
    assert result.returncode != 0
    assert (
        'admission webhook "policies.validate.baseguard.io" denied the request' in result.stderr
    ), result.stderr
    assert "spec.bases.deprecated[0].image" in result.stderr, result.stderr


def test_status_says_ready_and_follows_the_generation(
    control_plane: ControlPlane, baseguard: Baseguard, ns: str
) -> None:
    apply_ready(
        control_plane,
        policy("pins", {"mode": "Warn", "pinning": {"require": "Version"}}, namespace=ns),
    )
    live = control_plane.get_json("baseimagepolicy", "pins", "-n", ns)
    [ready] = [c for c in live["status"]["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Compiled")
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"] == 1

    control_plane.apply(
        [policy("pins", {"mode": "Enforce", "pinning": {"require": "Version"}}, namespace=ns)]
    )

    def observed() -> bool:
        now = control_plane.get_json("baseimagepolicy", "pins", "-n", ns)
        return bool(
            now["metadata"]["generation"] == 2 and now["status"].get("observedGeneration") == 2
        )

    wait_for("observedGeneration 2", observed, timeout=30)
    live = control_plane.get_json("baseimagepolicy", "pins", "-n", ns)
    assert (
        "Enforce"
        in next(c for c in live["status"]["conditions"] if c["type"] == "Ready")["message"]
    )
