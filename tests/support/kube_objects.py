"""Kubernetes objects as the operator tests apply them: namespaces, policies, pods, the webhook
configurations, and the AdmissionReview the apiserver sends for an object."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

NAMESPACE = "baseguard"
SERVICE_HOST = f"baseguard.{NAMESPACE}.svc"
POLICY_API = "baseguard.io/v1alpha1"


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


def cluster_policy(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": POLICY_API,
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def ns_policy(name: str, ns: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": POLICY_API,
        "kind": "BaseImagePolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": dict(spec),
    }


NO_LATEST = {"pinning": {"disallowedTags": ["latest"]}}


def webhook_configurations() -> list[dict[str, Any]]:
    service = {"name": "baseguard", "namespace": NAMESPACE, "path": "/validate"}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "baseguard"},
            "webhooks": [
                {"name": "validate.baseguard.io", "clientConfig": {"service": service}},
                {"name": "policies.baseguard.io", "clientConfig": {"service": service}},
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "baseguard"},
            "webhooks": [
                {
                    "name": "mutate.baseguard.io",
                    "clientConfig": {"service": {**service, "path": "/mutate"}},
                }
            ],
        },
    ]


def pod(name: str, ns: str, image: str, **extra: Any) -> dict[str, Any]:
    spec = {"containers": [{"name": "app", "image": image}], **extra}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": spec,
    }


def review(
    obj: Mapping[str, Any],
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview as the apiserver sends it for ``obj``."""
    api_version = str(obj["apiVersion"])
    group, _, version = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
        "operation": operation,
        "name": meta.get("name"),
        "object": dict(obj),
        "userInfo": {"username": "tester"},
    }
    if meta.get("namespace"):
        request["namespace"] = meta["namespace"]
    if old is not None:
        request["oldObject"] = dict(old)
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
