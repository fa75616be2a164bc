"""Namespace labels for ``namespaceSelector``: the watch's, and a bounded API read for a namespace
the watch has not delivered yet (a brand-new namespace must not fail open)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from support.kube_api import ApiDouble

from controller.assess import Assessor
from controller.operator.kube import Kube
from controller.operator.namespaces import Namespaces
from controller.policy.compile import compile_policy
from controller.policy.store import PolicyStore
from controller.webhook.handlers import Admission, Endpoint
from controller.webhook.review import parse_review


def new_namespace(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


async def test_an_unwatched_namespace_is_read_once_and_remembered(
    double: ApiDouble, kube: Kube
) -> None:
    double.apply(new_namespace("fresh", {"env": "prod"}))
    namespaces = Namespaces(kube)
    before = len(double.requests)
    labels = await namespaces.lookup("fresh")
    assert labels == {"kubernetes.io/metadata.name": "fresh", "env": "prod"}
    assert await namespaces.lookup("fresh") == labels
    assert [r.path for r in double.requests[before:]] == ["/api/v1/namespaces/fresh"]


async def test_concurrent_reviews_share_one_read_and_a_missing_namespace_is_remembered(
    double: ApiDouble, kube: Kube
) -> None:
    namespaces = Namespaces(kube)
    before = len(double.requests)
    found = await asyncio.gather(*(namespaces.lookup("nowhere") for _ in range(5)))
    assert found == [None] * 5
    assert await namespaces.lookup("nowhere") is None
    assert [r.path for r in double.requests[before:]] == ["/api/v1/namespaces/nowhere"]


async def test_the_watch_wins_and_a_bad_name_is_never_sent(double: ApiDouble, kube: Kube) -> None:
    namespaces = Namespaces(kube)
    namespaces.put("watched", {"kubernetes.io/metadata.name": "watched", "env": "dev"})
    before = len(double.requests)
    assert await namespaces.lookup("watched") == {
        "kubernetes.io/metadata.name": "watched",
        "env": "dev",
    }
    assert await namespaces.lookup("../secrets") is None
    assert double.requests[before:] == []


class Stalled:
    """A client whose namespace read never answers."""

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        await asyncio.sleep(60)
        raise AssertionError("not reached")


async def test_a_read_that_does_not_answer_is_bounded() -> None:
    namespaces = Namespaces(Stalled(), timeout=0.05)  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    assert await namespaces.lookup("slow") is None
    assert asyncio.get_running_loop().time() - started < 1.0


PROD_ONLY = {
    "apiVersion": "baseguard.io/v1alpha1",
    "kind": "ClusterBaseImagePolicy",
    "metadata": {"name": "prod-pinning"},
    "spec": {
        "mode": "Enforce",
        "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
        "pinning": {"require": "Digest"},
    },
}


def pod_review(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f5c6b1e-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "name": "app",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": "python:3.12-slim"}]},
            },
        },
    }


async def test_a_brand_new_prod_namespace_is_judged_by_its_labels(
    double: ApiDouble, kube: Kube
) -> None:
    """The review arrives before the watch's event: the selector must still see ``env=prod``."""
    double.apply(new_namespace("brand-new", {"env": "prod"}))
    store = PolicyStore()
    store.replace({"prod-pinning": compile_policy(PROD_ONLY)}, {}, loaded=True)

    async def answer(namespaces: Namespaces) -> dict[str, Any]:
        admission = Admission(
            store=store,
            assessor=Assessor(None),
            clock=lambda: dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
            namespace_labels=namespaces.lookup,
        )
        review = parse_review(json.dumps(pod_review("brand-new")))
        body = await admission(review, endpoint=Endpoint.VALIDATE, budget=5.0)
        response: dict[str, Any] = body["response"]
        return response

    judged = await answer(Namespaces(kube))
    assert judged["allowed"] is False
    assert "prod-pinning" in judged["status"]["message"]
    # Without the read, only the name label was seen, and the Enforce policy did not apply.
    assert (await answer(Namespaces()))["allowed"] is True
