"""values.schema.json makes bad values fail at install; `helm lint` passes for every value set."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml
from support.chart import CA_BUNDLE, CHART, KUBE_VERSIONS, VALUE_SETS, render


def schema_error(values: dict[str, Any]) -> str:
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError) as caught:
        chart.validate_schema(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replica": 3}, "additional properties 'replica' not allowed"),
        ({"replicas": 0}, "at '/replicas': minimum"),
        ({"webhook": {"timeoutSeconds": 31}}, "at '/webhook/timeoutSeconds': maximum: got 31, want 30"),
        ({"webhook": {"failurePolicy": "Deny"}}, "at '/webhook/failurePolicy'"),
        ({"webhook": {"mutating": {"reinvocationPolicy": "Always"}}}, "at '/webhook/mutating/reinvocationPolicy'"),
        ({"webhook": {"excludeNamespaces": ["Kube_System"]}}, "at '/webhook/excludeNamespaces/0'"),
        ({"securityContext": {"runAsNonRoot": False}}, "at '/securityContext/runAsNonRoot': value must be true"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "at '/securityContext/readOnlyRootFilesystem'"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "at '/securityContext/allowPrivilegeEscalation'"),
        ({"securityContext": {"privileged": True}}, "at '/securityContext/privileged'"),
        ({"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}, "at '/securityContext/capabilities/drop'"),
        ({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}, "at '/securityContext/capabilities/add'"),
        ({"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 0}}, "at '/podSecurityContext/runAsUser'"),
        ({"certificates": {"mode": "vault"}}, "at '/certificates/mode'"),
        ({"certificates": {"mode": "secret"}}, "at '/certificates/caBundle'"),
        ({"certificates": {"mode": "secret", "secretName": "tls", "caBundle": "not-base64-pem"}}, "at '/certificates/caBundle'"),
        ({"certificates": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}}, "at '/certificates/certManager/issuerRef'"),
        ({"image": {"digest": "sha256:abc"}}, "at '/image/digest'"),
        ({"image": {"repository": "ghcr.io/Acme/baseguard"}}, "at '/image/repository'"),
        ({"registryConfig": {"registries": [{"host": "r.example", "password": "hunter2"}]}}, "invalid propertyName 'password'"),
        ({"registryConfig": {"registries": [{"insecure": True}]}}, "missing property 'host'"),
        ({"policies": {"mode": "enforce"}}, "at '/policies/mode'"),
        ({"logLevel": "TRACE"}, "at '/logLevel'"),
        ({"webhook": {"url": "http://127.0.0.1:8443"}}, "at '/webhook/url'"),
        ({"webhook": {"url": "https://127.0.0.1:8443/?x=1"}}, "at '/webhook/url'"),
        ({"networkPolicy": {"registries": {"ports": []}}}, "at '/networkPolicy/registries/ports'"),
    ],
    ids=[
        "typo",
        "no-replicas",
        "timeout-over-30",
        "unknown-failure-policy",
        "unknown-reinvocation-policy",
        "bad-namespace-name",
        "root",
        "writable-root",
        "privilege-escalation",
        "privileged",
        "capabilities-kept",
        "capability-added",
        "uid-0",
        "unknown-cert-mode",
        "secret-mode-without-secret",
        "ca-bundle-not-pem",
        "issuer-without-name",
        "short-digest",
        "upper-case-repository",
        "password-in-configmap",
        "registry-without-host",
        "mode-case",
        "log-level",
        "url-not-https",
        "url-with-query",
        "no-registry-ports",
    ],
)
def test_bad_values_fail_at_install(values: dict[str, Any], message: str) -> None:
    assert message in schema_error(values)
    # The same values fail a render (helm install / template), not only the explicit check.
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_value_sets_are_valid(value_set: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(VALUE_SETS[value_set])


def test_a_disruption_budget_that_blocks_every_drain_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="must be below replicas"):
        render({"replicas": 2, "podDisruptionBudget": {"minAvailable": 2}})


def test_one_replica_says_to_disable_the_disruption_budget() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"replicas=1 .* set podDisruptionBudget.enabled=false"):
        render({"replicas": 1})
    assert render({"replicas": 1, "podDisruptionBudget": {"enabled": False}}).one("Deployment")["spec"]["replicas"] == 1


def test_secret_mode_with_everything_given_renders() -> None:
    rendered = render({"certificates": {"mode": "secret", "secretName": "tls", "caBundle": CA_BUNDLE}})
    assert rendered.one("Deployment")


def test_values_yaml_and_schema_agree() -> None:
    """Every default in values.yaml is described by the schema (no key only one side knows)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) == set(schema["properties"]) - {"global"}
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values)


@pytest.mark.parametrize("kube_version", ["v1.28.0", "v1.30.0"])
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_passes(value_set: str, kube_version: str) -> None:
    report = helm_python.lint(
        CHART, VALUE_SETS[value_set], strict=True, namespace="baseguard-system", kube_version=kube_version
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_helm_lint_reports_bad_values() -> None:
    report = helm_python.lint(CHART, {"replica": 3}, strict=True, kube_version="v1.30.0")
    assert any("'replica' not allowed" in e for e in report["errors"])


def test_kube_version_floor_is_the_oldest_version_tested() -> None:
    """Chart.yaml's kubeVersion (helm install refuses older clusters) is what the objects
    are validated against."""
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert metadata["kubeVersion"] == f">={KUBE_VERSIONS[0]}.0-0"
