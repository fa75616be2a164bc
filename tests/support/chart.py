"""Helpers for the chart tests. Render the Helm chart with the real Helm engine (``helm-python-sdk``: Helm's Go SDK
behind a C ABI, no ``helm`` binary, no cluster) for named value sets.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "baseguard"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.28", "1.30")
RELEASE = "baseguard"
NAMESPACE = "baseguard-system"

#: A CA bundle as `certificates.caBundle` wants it (base64 of a PEM certificate).
CA_BUNDLE = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
).decode()
DIGEST = "sha256:" + "ab" * 32

#: Value sets every chart test runs over: the defaults and the choices a platform
#: team makes (docs/install.md).
VALUE_SETS: Mapping[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"certificates": {"mode": "cert-manager"}},
    "cert-manager-issuer": {
        "certificates": {
            "mode": "cert-manager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "mutual-tls": {
        "webhook": {"clientAuth": {"caConfigMap": "apiserver-client-ca", "names": ["kube-apiserver"]}}
    },
    "given-secret": {
        "certificates": {"mode": "secret", "secretName": "my-webhook-tls", "caBundle": CA_BUNDLE}
    },
    "observability": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
            "apiServer": {"ports": [6443], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
            "extraEgress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}],
        },
    },
    "bundled-policies": {
        "policies": {"enabled": True, "include": ["eol/*", "pinning/*", "allowlists/*"], "mode": "Audit"}
    },
    # The webhook running outside the cluster (development, the control-plane tests):
    # the apiserver calls a URL, and the managed certificate names its host.
    "outside-cluster": {"webhook": {"url": "https://127.0.0.1:8443"}},
    # The mutating webhook registered at all times (every pod annotated; two calls per pod).
    "mutating-always": {"webhook": {"mutating": {"register": "Always"}}},
    # EKS: the nodes' ECR plugin, run by baseguard with the same config (docs/install.md).
    "credential-providers": {
        "registryCredentials": {
            "credentialProviders": {
                "config": {
                    "apiVersion": "kubelet.config.k8s.io/v1",
                    "kind": "CredentialProviderConfig",
                    "providers": [
                        {
                            "name": "ecr-credential-provider",
                            "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
                            "defaultCacheDuration": "12h",
                            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                        }
                    ],
                },
                "binDir": {"hostPath": {"path": "/etc/eks/image-credential-provider", "type": "Directory"}},
            }
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/baseguard-ecr"}},
    },
    # Replicas sharing an external Valkey/Redis over TLS, with a password (docs/shared-cache.md).
    "shared-cache": {
        "sharedCache": {
            "url": "rediss://baseguard@valkey.cache.svc:6380/2",
            "secretName": "baseguard-shared-cache",
            "passwordKey": "password",
            "caConfigMap": "valkey-ca",
        },
        "networkPolicy": {"enabled": True},
    },
    "strict": {
        "replicas": 3,
        "antiAffinity": "hard",
        "podDisruptionBudget": {"minAvailable": 2},
        "image": {"digest": DIGEST},
        "priorityClassName": "system-cluster-critical",
        "webhook": {
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "excludeNamespaces": ["monitoring"],
            "namespaceSelector": {
                "matchExpressions": [{"key": "baseguard.io/exempt", "operator": "DoesNotExist"}]
            },
            "mutating": {"enabled": False},
        },
        "registryCredentials": {"pullSecrets": False, "dockerConfigSecret": "registry-creds"},
        "registryConfig": {
            "registries": [{"host": "registry.internal:5000", "insecure": True}],
            "timeout": 3,
        },
        "extraArgs": ["--budget=4"],
    },
}


@dataclass(frozen=True)
class Rendered:
    """One rendering: the objects in file order, NOTES.txt, and the values used."""

    values: Mapping[str, Any]
    objects: tuple[dict[str, Any], ...]
    notes: str
    merged_values: Mapping[str, Any]
    """The chart's defaults with ``values`` on top: what the templates saw."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]


def documents(manifests: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    for name in sorted(manifests):
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all(manifests[name]):
                if doc:
                    yield doc


def render(
    values: Mapping[str, Any], *, name: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    """Render as ``helm install`` would (values checked against values.schema.json)."""
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(dict(values), name=name, namespace=namespace, is_install=True)
        merged = chart.merge_values(dict(values))
    notes = next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")
    return Rendered(values=values, objects=tuple(documents(manifests)), notes=notes, merged_values=merged)


@functools.cache
def rendered(value_set: str) -> Rendered:
    """The rendering of a named value set (cached: the tests only read it)."""
    return render(VALUE_SETS[value_set])


# --- label selectors, evaluated the way the apiserver does ------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """``metav1.LabelSelector`` semantics: every matchLabels pair and every expression holds."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def namespace_labels(name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of a namespace: the apiserver always sets kubernetes.io/metadata.name."""
    return {"kubernetes.io/metadata.name": name, **(extra or {})}


def flags(args: Sequence[str]) -> dict[str, str]:
    """``--name=value`` arguments as a mapping (bare ``--flag`` maps to "")."""
    out: dict[str, str] = {}
    for arg in args:
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            out[key] = value
    return out
