"""Helpers for the webhook tests: review fixtures, policy stores, a client for the real server."""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from controller.policy.compile import compile_policy
from controller.policy.store import PolicyStore, policy_key
from controller.tls.serving import CertReloader, Pair
from controller.webhook.metrics import Metrics

DATA = Path(__file__).resolve().parent.parent / "data" / "admission"
POLICIES = DATA / "policies"


def fixture(name: str) -> dict[str, Any]:
    """A review from ``tests/data/admission`` (a fresh copy each time)."""
    return json.loads((DATA / name).read_text())


def policy_doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((POLICIES / name).read_text())


def default_docs() -> list[dict[str, Any]]:
    return [policy_doc(p.name) for p in sorted(POLICIES.glob("*.yaml"))]


def fill_store(store: PolicyStore, docs: list[Mapping[str, Any]]) -> None:
    policies = {}
    for doc in docs:
        p = compile_policy(doc)
        policies[policy_key(p.kind, p.namespace, p.name)] = p
    store.replace(policies)


def set_images(review: dict[str, Any], images: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``review`` with images replaced by container (or image volume) name."""
    out = copy.deepcopy(review)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") in images and "image" in node:
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


@dataclass(frozen=True)
class Certs:
    """A throw-away CA and serving pair, written to ``directory``."""

    pair: Pair
    directory: Path
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@dataclass
class Webhook:
    """A running webhook and an HTTPS client that trusts it."""

    url: str
    session: aiohttp.ClientSession
    store: PolicyStore
    metrics: Metrics
    reloader: CertReloader
    runner: web.AppRunner

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])

    async def review(
        self,
        review: Mapping[str, Any] | str | bytes,
        *,
        endpoint: str = "validate",
        query: str = "?timeout=10s",
    ) -> tuple[int, dict[str, Any]]:
        """POST a review (a fixture name, a dict, or raw text); (HTTP status, JSON body)."""
        if isinstance(review, str) and review.endswith(".json"):
            review = fixture(review)
        data = review if isinstance(review, bytes | str) else json.dumps(review)
        async with self.session.post(
            f"{self.url}/{endpoint}{query}",
            data=data,
            headers={"Content-Type": "application/json"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def response(self, review: Mapping[str, Any] | str, **kwargs: Any) -> dict[str, Any]:
        """The ``response`` of a review that must be answered with HTTP 200."""
        status, body = await self.review(review, **kwargs)
        assert status == 200, body
        assert body["apiVersion"] == "admission.k8s.io/v1"
        assert body["kind"] == "AdmissionReview"
        response: dict[str, Any] = body["response"]
        return response

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}") as resp:
            return resp.status, await resp.text()


StartWebhook = Callable[..., Awaitable[Webhook]]
