"""Helpers for the webhook tests: fixtures from ``tests/data/admission`` and policy stores."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from controller.policy.compile import compile_policy
from controller.policy.store import PolicyStore, policy_key

DATA = Path(__file__).resolve().parent.parent / "data" / "admission"
POLICIES = DATA / "policies"


def fixture(name: str) -> dict[str, Any]:
    """A review from ``tests/data/admission`` (a fresh copy each time)."""
    return json.loads((DATA / name).read_text())


def policy_doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((POLICIES / name).read_text())


def fill_store(store: PolicyStore, docs: list[Mapping[str, Any]]) -> None:
    policies = {}
    for doc in docs:
        p = compile_policy(doc)
        policies[policy_key(p.kind, p.namespace, p.name)] = p
    store.replace(policies)


def default_docs() -> list[dict[str, Any]]:
    return [policy_doc(p.name) for p in sorted(POLICIES.glob("*.yaml"))]


def set_images(review: dict[str, Any], images: Mapping[str, str]) -> dict[str, Any]:
    """Replace images by container name everywhere in ``request.object`` (a copy)."""
    out = copy.deepcopy(review)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and node["name"] in images and "image" in node:
                if isinstance(node["image"], dict):
                    node["image"]["reference"] = images[node["name"]]
                else:
                    node["image"] = images[node["name"]]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out["request"]["object"])
    return out
