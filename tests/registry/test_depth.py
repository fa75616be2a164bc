"""A chain deeper than ``lineage.maxDepth`` is never silence: ``baseguard check`` on a real registry.

``python:3.8-slim`` (deprecated by the policy) sits under N one-layer intermediate images,
each annotated with its base and verified by its layers. With 3 the walk reaches python
within the default ``maxDepth: 4``; with 4 it stops one level short. Then the cut is a
``lookup-failed`` finding under ``onLookupFailure`` that names ``lineage.maxDepth``, and
when the catalog knows the deprecated base, the depth-free layer check still finds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli_check import check_pod
from support.images import Pushed, layer
from support.registry import RegistryProcess

from controller.errors import ExitCode

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def _chain(registry: RegistryProcess, repo: str, intermediates: int) -> tuple[Pushed, Pushed]:
    """(python:3.8-slim, the image on top of ``intermediates`` one-layer images over it)."""
    layers = [
        layer({"etc/os-release": f"debian {repo}"}),
        layer({"usr/bin/python3.8": f"3.8 {repo}"}),
    ]
    python = registry.push_image(f"{repo}/python", "3.8-slim", list(layers))
    below = python
    for i in range(1, intermediates + 2):  # the intermediates, then the image itself
        layers.append(layer({f"step{i}": f"{i} {repo}"}))
        name = f"{repo}/step{i}" if i <= intermediates else f"{repo}/app"
        below = registry.push_image(
            name,
            "1",
            list(layers),
            annotations={BASE_NAME: below.tagged, BASE_DIGEST: below.digest},
        )
    return python, below


def _policy(tmp_path: Path, python: str, *, catalog: bool) -> Path:
    spec: dict[str, Any] = {
        "mode": "Enforce",
        "bases": {
            "deprecated": [
                {
                    "image": python,
                    "tags": ["3.8*"],
                    "reason": "Python 3.8 is end of life",
                    "replacement": f"{python}:3.12-slim",
                }
            ]
        },
    }
    if catalog:
        spec["lineage"] = {"catalog": [f"{python}:3.8-slim"]}
    doc = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": spec,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(doc))
    return path


def _messages(result: dict[str, Any], rule: str) -> list[str]:
    return [v["message"] for v in result["violations"] if v["rule"] == rule]


def test_a_deprecated_base_within_max_depth_is_denied(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    python, image = _chain(registry, unique_repo, 3)
    policy = _policy(tmp_path, f"{registry.host}/{unique_repo}/python", catalog=False)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, image.tagged)
    assert code == 1 and result["verdict"] == "deny"
    (message,) = _messages(result, "deprecated-base")
    assert f"is built on {python.tagged} (deprecated: Python 3.8 is end of life)" in message
    assert _messages(result, "lookup-failed") == []


def test_a_chain_cut_at_max_depth_is_reported_not_allowed(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One intermediate more: the walk stops at step1, which still names python:3.8-slim."""
    _, image = _chain(registry, unique_repo, 4)
    policy = _policy(tmp_path, f"{registry.host}/{unique_repo}/python", catalog=False)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, image.tagged)
    # denied, and not by a rule that was judged: "could not judge" (a rule's denial would be 1)
    assert code == ExitCode.UNJUDGED and result["verdict"] == "deny"
    (message,) = _messages(result, "lookup-failed")
    step1 = f"{registry.host}/{unique_repo}/step1:1"
    assert f"was not evaluated past {step1} (linux/amd64)" in message
    assert "lineage.maxDepth 4 was reached" in message
    assert "lineage.onLookupFailure: Deny" in message
    assert message.endswith("raise spec.lineage.maxDepth (at most 10) to follow the whole chain")


def test_a_deprecated_base_past_max_depth_is_found_by_its_layers(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the deprecated base in the catalog, the image's own layers show it, whatever the depth."""
    python, image = _chain(registry, unique_repo, 4)
    policy = _policy(tmp_path, f"{registry.host}/{unique_repo}/python", catalog=True)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, image.tagged)
    assert code == 1 and result["verdict"] == "deny"
    (message,) = _messages(result, "deprecated-base")
    assert f"is built on {python.tagged} (deprecated: Python 3.8 is end of life)" in message
    assert len(_messages(result, "lookup-failed")) == 1


def test_a_max_depth_that_reaches_the_base_says_nothing_more(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raising maxDepth, as the message says, evaluates the whole chain: no cut-off finding."""
    python, image = _chain(registry, unique_repo, 4)
    path = _policy(tmp_path, f"{registry.host}/{unique_repo}/python", catalog=False)
    doc = json.loads(path.read_text())
    doc["spec"]["lineage"] = {"maxDepth": 5}
    path.write_text(json.dumps(doc))
    code, result = check_pod(tmp_path, capsys, registry.host, path, image.tagged)
    assert code == 1
    assert _messages(result, "lookup-failed") == []
    (message,) = _messages(result, "deprecated-base")
    assert python.tagged in message
