"""The rendered chart: valid Kubernetes objects that keep the invariants docs/install.md promises.

Every object of every value set is validated against the Kubernetes OpenAPI schemas
(``kubernetes-validate``, strict: unknown fields are errors, as ``kubectl apply
--validate=strict`` would make them) at the oldest supported version and a current
one. Custom resources the Kubernetes schemas do not know are checked otherwise: our
policies by our own validator, cert-manager and Prometheus objects by the cross-object
invariants below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from support.chart import (
    CA_BUNDLE,
    DIGEST,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUE_SETS,
    Rendered,
    flags,
    namespace_labels,
    render,
    rendered,
    selector_matches,
)

from controller.policy.compile import check_policy
from controller.registry.config import parse_registry_config

#: Kinds outside the Kubernetes OpenAPI: each is checked by a test of its own below.
CUSTOM_KINDS = {
    ("baseguard.io/v1alpha1", "ClusterBaseImagePolicy"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ClusterBaseImagePolicy",
}
WORKLOAD_RULES = {
    ("", "pods", ("CREATE", "UPDATE")),
    ("", "pods/ephemeralcontainers", ("UPDATE",)),
    ("", "replicationcontrollers", ("CREATE", "UPDATE")),
    ("", "podtemplates", ("CREATE", "UPDATE")),
    ("apps", "deployments", ("CREATE", "UPDATE")),
    ("apps", "replicasets", ("CREATE", "UPDATE")),
    ("apps", "statefulsets", ("CREATE", "UPDATE")),
    ("apps", "daemonsets", ("CREATE", "UPDATE")),
    ("batch", "jobs", ("CREATE", "UPDATE")),
    ("batch", "cronjobs", ("CREATE", "UPDATE")),
}


def value(chart: Rendered, *path: str) -> Any:
    node: Any = chart.merged_values
    for part in path:
        node = node[part]
    return node


def container(chart: Rendered) -> dict[str, Any]:
    [only] = chart.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(chart: Rendered) -> dict[str, str]:
    return chart.one("Deployment")["spec"]["template"]["metadata"]["labels"]


TEMPLATE = "baseguard.io/webhook-template"


def when_needed(chart: Rendered) -> bool:
    """``webhook.mutating.register: WhenNeeded``: the leader installs the mutating entry."""
    return bool(value(chart, "webhook", "mutating", "enabled")) and (
        value(chart, "webhook", "mutating", "register") == "WhenNeeded"
    )


def webhooks(chart: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every webhook entry, the mutating one too when it is kept in the template annotation
    (the leader installs exactly that entry, so it must keep every invariant below)."""
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for config in chart.of_kind(kind):
            for hook in config["webhooks"]:
                yield kind, hook
            template = (config["metadata"].get("annotations") or {}).get(TEMPLATE)
            if template is not None:
                yield kind, json.loads(template)


def workload_webhooks(chart: Rendered) -> list[tuple[str, dict[str, Any]]]:
    return [(k, h) for k, h in webhooks(chart) if h["name"].startswith("workloads.")]


def rule_tuples(rules: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (group, resource, tuple(rule["operations"]))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def rbac_rules(chart: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("ClusterRole", "Role"):
        for role in chart.of_kind(kind):
            for rule in role["rules"]:
                yield kind, rule


def grants(chart: Rendered, kind: str, name: str | None = None) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs granted by the ``kind`` role named ``name`` (default: the
    controller's own, named as its Deployment)."""
    wanted = name or chart.one("Deployment")["metadata"]["name"]
    out: dict[tuple[str, str], set[str]] = {}
    for role in chart.of_kind(kind):
        if role["metadata"]["name"] != wanted:
            continue
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# --- every object is a valid Kubernetes object ----------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(chart: Rendered, version: str) -> None:
    problems = []
    for obj in chart.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{obj['apiVersion']} {obj['kind']}: not a Kubernetes kind; check it in a test")
    assert problems == []


def test_objects_are_named_labelled_and_namespaced(chart: Rendered) -> None:
    for obj in chart.objects:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63, meta["name"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "baseguard", meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, meta["name"]
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, meta["name"]
        else:
            assert meta["namespace"] == NAMESPACE, meta["name"]


@pytest.mark.parametrize(
    ("release", "expected"),
    [("baseguard", "baseguard"), ("prod", "prod-baseguard"), ("baseguard-eu", "baseguard-eu")],
    ids=["release-is-chart-name", "prefixed", "contains-chart-name"],
)
def test_object_names_follow_the_release(release: str, expected: str) -> None:
    chart = render({}, name=release)
    assert chart.one("Deployment")["metadata"]["name"] == expected
    assert chart.one("ValidatingWebhookConfiguration")["metadata"]["name"] == expected


# --- RBAC: least privilege --------------------------------------------------------------


def test_rbac_has_no_wildcards(chart: Rendered) -> None:
    for kind, rule in rbac_rules(chart):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), (kind, rule)


def test_cluster_role_grants_exactly_what_the_controller_uses(chart: Rendered) -> None:
    read = {"get", "list", "watch"}
    expected: dict[tuple[str, str], set[str]] = {
        ("baseguard.io", "clusterbaseimagepolicies"): read,
        ("baseguard.io", "baseimagepolicies"): read,
        ("baseguard.io", "baseimagepolicyexceptions"): read,
        ("baseguard.io", "clusterbaseimagepolicies/status"): {"patch"},
        ("baseguard.io", "baseimagepolicies/status"): {"patch"},
        ("baseguard.io", "baseimagepolicyexceptions/status"): {"patch"},
        ("", "namespaces"): read,
        ("", "pods"): {"list", "watch"},
        ("", "replicationcontrollers"): {"list", "watch"},
        ("", "podtemplates"): {"list", "watch"},
        ("apps", "deployments"): {"list", "watch"},
        ("apps", "replicasets"): {"list", "watch"},
        ("apps", "statefulsets"): {"list", "watch"},
        ("apps", "daemonsets"): {"list", "watch"},
        ("batch", "jobs"): {"list", "watch"},
        ("batch", "cronjobs"): {"list", "watch"},
        ("", "events"): {"get", "create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        ("openreports.io", "reports"): {"get", "list", "create", "update", "patch", "delete"},
        ("openreports.io", "clusterreports"): {"get", "list", "create", "update", "patch", "delete"},
        ("wgpolicyk8s.io", "policyreports"): {"get", "list", "create", "update", "patch", "delete"},
        ("wgpolicyk8s.io", "clusterpolicyreports"): {"get", "list", "create", "update", "patch", "delete"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get"},
    }
    if value(chart, "registryCredentials", "pullSecrets"):
        expected[("", "secrets")] = {"get"}
        expected[("", "serviceaccounts")] = {"get"}
    if value(chart, "certificates", "mode") == "self":
        expected[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] = {"get", "patch"}
        expected[("admissionregistration.k8s.io", "mutatingwebhookconfigurations")] = {"get", "patch"}
    elif when_needed(chart):
        # the leader copies the validating caBundle into the mutating entry it installs
        expected[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] = {"get"}
        expected[("admissionregistration.k8s.io", "mutatingwebhookconfigurations")] = {"get", "patch"}
    assert grants(chart, "ClusterRole") == expected


def test_exception_authors_get_exceptions_only_never_edit_on_policies(chart: Rendered) -> None:
    """Filing an exception is granted apart from editing a policy: the author role writes
    BaseImagePolicyException objects and only reads policies; it joins `edit` only when asked."""
    name = f"{chart.one('Deployment')['metadata']['name']}-exception-author"
    [role] = [r for r in chart.of_kind("ClusterRole") if r["metadata"]["name"] == name]
    read = {"get", "list", "watch"}
    assert grants(chart, "ClusterRole", name) == {
        ("baseguard.io", "baseimagepolicyexceptions"): read | {"create", "update", "patch", "delete"},
        ("baseguard.io", "clusterbaseimagepolicies"): read,
        ("baseguard.io", "baseimagepolicies"): read,
    }
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in role["metadata"]["labels"]
    bound = {b["roleRef"]["name"] for k in ("ClusterRoleBinding", "RoleBinding") for b in chart.of_kind(k)}
    assert name not in bound  # it grants nothing until a namespace binds it


def test_the_exception_author_role_joins_edit_only_when_asked() -> None:
    chart = render({"exceptions": {"authorRole": {"aggregateToEdit": True}}})
    [role] = [r for r in chart.of_kind("ClusterRole") if r["metadata"]["name"].endswith("-exception-author")]
    assert role["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    off = render({"exceptions": {"authorRole": {"enabled": False}}})
    assert not [r for r in off.of_kind("ClusterRole") if r["metadata"]["name"].endswith("-exception-author")]


def test_webhook_configurations_are_patchable_by_name_only(chart: Rendered) -> None:
    names = {c["metadata"]["name"] for k, c in ((o["kind"], o) for o in chart.objects) if k.endswith("WebhookConfiguration")}
    touching = [r for _, r in rbac_rules(chart) if any("webhookconfigurations" in res for res in r["resources"])]
    args = flags(container(chart)["args"])
    if value(chart, "certificates", "mode") != "self":
        if not when_needed(chart):
            assert touching == [], "only self-managed certificates need to patch the caBundle"
            return
        assert touching
        for rule in touching:
            assert rule["resourceNames"] == [args["mutating-webhook"]], rule
            writes = set(rule["verbs"]) - {"get"}
            assert writes <= {"patch"}, rule
            assert not writes or rule["resources"] == ["mutatingwebhookconfigurations"], rule
        return
    assert touching
    for rule in touching:
        assert set(rule["verbs"]) <= {"get", "patch"}, rule
        assert rule.get("resourceNames"), f"unrestricted: {rule}"
        assert set(rule["resourceNames"]) <= names, rule
    # ... and they are the configurations the leader is told to keep current.
    assert {args["webhook-configuration"]} == {n for r in touching for n in r["resourceNames"]}


def test_writes_in_the_release_namespace_are_limited_to_named_objects(chart: Rendered) -> None:
    role = chart.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    args = flags(container(chart)["args"])
    for rule in role["rules"]:
        if set(rule["verbs"]) == {"create"}:
            continue  # create cannot be limited by name: the name is in the body
        assert rule.get("resourceNames"), rule
        if rule["resources"] == ["leases"]:
            assert rule["resourceNames"] == [args["lease-name"]]
        if rule["resources"] == ["secrets"]:
            assert rule["resourceNames"] == [args["tls-secret"]]
    secrets = grants(chart, "Role").get(("", "secrets"), set())
    assert bool(secrets) == (value(chart, "certificates", "mode") == "self")


def test_bindings_grant_the_roles_to_the_service_account(chart: Rendered) -> None:
    account = chart.one("ServiceAccount")["metadata"]["name"]
    assert chart.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = chart.one(binding_kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": chart.one("Deployment")["metadata"]["name"],
        }
        assert binding["roleRef"]["name"] in {r["metadata"]["name"] for r in chart.of_kind(role_kind)}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


# --- webhook configurations ------------------------------------------------------------


def test_every_webhook_speaks_v1_without_side_effects(chart: Rendered) -> None:
    found = list(webhooks(chart))
    assert found
    for _, hook in found:
        assert hook["admissionReviewVersions"] == ["v1"], hook["name"]
        assert hook["sideEffects"] == "None", hook["name"]
        assert hook["timeoutSeconds"] == value(chart, "webhook", "timeoutSeconds"), hook["name"]


def test_workload_webhooks_cover_every_workload_kind(chart: Rendered) -> None:
    hooks = workload_webhooks(chart)
    expected_kinds = {"ValidatingWebhookConfiguration"}
    if value(chart, "webhook", "mutating", "enabled"):
        expected_kinds.add("MutatingWebhookConfiguration")
    assert {k for k, _ in hooks} == expected_kinds
    for _, hook in hooks:
        assert rule_tuples(hook["rules"]) == WORKLOAD_RULES, hook["name"]
        assert all(r["scope"] == "Namespaced" for r in hook["rules"])


def test_the_mutating_webhook_is_registered_by_the_leader_when_needed(chart: Rendered) -> None:
    """WhenNeeded: no mutating webhook until a policy pins (one apiserver call per pod, not
    two); the entry the leader installs is the one ``Always`` renders."""
    mutating = chart.of_kind("MutatingWebhookConfiguration")
    args = flags(container(chart)["args"])
    if not value(chart, "webhook", "mutating", "enabled"):
        assert mutating == [] and "mutating-webhook" not in args
        return
    [config] = mutating
    annotations = config["metadata"].get("annotations") or {}
    if when_needed(chart):
        assert config["webhooks"] == []
        assert args["mutating-webhook"] == config["metadata"]["name"]
        entry = json.loads(annotations[TEMPLATE])
        always = render(
            {**chart.values, "webhook": {**chart.values.get("webhook", {}), "mutating": {"register": "Always"}}}
        )
        assert always.one("MutatingWebhookConfiguration")["webhooks"] == [entry]
    else:
        assert TEMPLATE not in annotations and "mutating-webhook" not in args
        assert [h["name"] for h in config["webhooks"]] == ["workloads.mutate.baseguard.io"]


def test_register_defaults_to_when_needed_and_takes_only_its_two_values() -> None:
    assert rendered("defaults").merged_values["webhook"]["mutating"]["register"] == "WhenNeeded"
    with pytest.raises(Exception, match="register"):
        render({"webhook": {"mutating": {"register": "Sometimes"}}})


def test_values_without_register_keep_the_webhook_registered() -> None:
    """``helm upgrade --reuse-values`` from a chart without the key keeps the older chart's
    defaults: the webhook stays registered (as before), nothing is left half-managed."""
    chart = render({"webhook": {"mutating": {"register": None}}})
    [config] = chart.of_kind("MutatingWebhookConfiguration")
    assert [h["name"] for h in config["webhooks"]] == ["workloads.mutate.baseguard.io"]
    assert TEMPLATE not in (config["metadata"].get("annotations") or {})
    assert "mutating-webhook" not in flags(container(chart)["args"])


def test_failure_policies_follow_values(chart: Rendered) -> None:
    for kind, hook in workload_webhooks(chart):
        if kind == "ValidatingWebhookConfiguration":
            assert hook["failurePolicy"] == value(chart, "webhook", "failurePolicy")
        else:
            assert hook["failurePolicy"] == value(chart, "webhook", "mutating", "failurePolicy")
            assert hook["reinvocationPolicy"] == "IfNeeded"
    assert all("reinvocationPolicy" in h for k, h in webhooks(chart) if k.startswith("Mutating"))
    validating = chart.one("ValidatingWebhookConfiguration")
    assert all("reinvocationPolicy" not in h for h in validating["webhooks"])


def test_default_failure_policy_is_ignore_during_rollout() -> None:
    [hook] = [h for _, h in workload_webhooks(rendered("defaults")) if h["name"].startswith("workloads.validate")]
    assert hook["failurePolicy"] == "Ignore"
    [strict] = [h for _, h in workload_webhooks(rendered("strict")) if h["name"].startswith("workloads.validate")]
    assert strict["failurePolicy"] == "Fail"


@pytest.mark.parametrize(
    ("namespace", "judged"),
    [("kube-system", False), (NAMESPACE, False), ("default", True), ("payments", True)],
    ids=["kube-system", "release-namespace", "default", "payments"],
)
def test_namespace_selector_leaves_out_kube_system_and_the_release_namespace(
    chart: Rendered, namespace: str, judged: bool
) -> None:
    for _, hook in workload_webhooks(chart):
        assert selector_matches(hook["namespaceSelector"], namespace_labels(namespace)) is judged


def test_extra_namespace_exclusions_are_added_not_replacing() -> None:
    chart = rendered("strict")
    for _, hook in workload_webhooks(chart):
        selector = hook["namespaceSelector"]
        assert not selector_matches(selector, namespace_labels("monitoring"))
        assert not selector_matches(selector, namespace_labels("kube-system"))
        assert not selector_matches(selector, namespace_labels("apps", {"baseguard.io/exempt": "yes"}))
        assert selector_matches(selector, namespace_labels("apps"))


def test_policy_webhook_checks_every_policy_and_exception(chart: Rendered) -> None:
    [hook] = [h for _, h in webhooks(chart) if h["name"] == "policies.validate.baseguard.io"]
    assert hook["failurePolicy"] == "Fail"
    assert "objectSelector" not in hook
    assert selector_matches(hook.get("namespaceSelector"), namespace_labels("kube-system"))
    assert rule_tuples(hook["rules"]) == {
        ("baseguard.io", "clusterbaseimagepolicies", ("CREATE", "UPDATE")),
        ("baseguard.io", "baseimagepolicies", ("CREATE", "UPDATE")),
        ("baseguard.io", "baseimagepolicyexceptions", ("CREATE", "UPDATE")),
    }
    assert hook["rules"][0]["scope"] == "*"


def test_webhooks_call_the_service_on_its_port(chart: Rendered) -> None:
    service = chart.one("Service")
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "https"
    assert [p["name"] for p in container(chart)["ports"]] == ["https"]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(chart))
    url = value(chart, "webhook", "url")
    for kind, hook in webhooks(chart):
        path = "/mutate" if kind.startswith("Mutating") else "/validate"
        if url:  # outside the cluster: the URL, and no Service reference beside it
            assert hook["clientConfig"] == {"url": url.rstrip("/") + path}
            continue
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == (
            service["metadata"]["name"],
            NAMESPACE,
            port["port"],
        )
        assert ref["path"] == ("/mutate" if kind.startswith("Mutating") else "/validate")


# --- certificates ----------------------------------------------------------------------


SELF_CERT_SETS = sorted(n for n, v in VALUE_SETS.items() if "certificates" not in v)


@pytest.mark.parametrize("value_set", SELF_CERT_SETS)
def test_self_managed_certificates(value_set: str) -> None:
    chart = rendered(value_set)
    assert value(chart, "certificates", "mode") == "self"
    for _, hook in webhooks(chart):
        assert "caBundle" not in hook["clientConfig"]  # the leader patches it in
    args = flags(container(chart)["args"])
    assert "manage-certificates" in args
    assert args["tls-secret"] == f"{RELEASE}-tls"
    assert "tls-cert" not in args and "tls-key" not in args  # read through the API instead
    volumes = chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert [v for v in volumes if "secret" in v and v["name"] == "tls"] == []
    assert chart.of_kind("Certificate") == []


def tls_files(chart: Rendered) -> tuple[dict[str, Any], dict[str, str]]:
    """The mounted serving Secret volume, and the flags that read its files."""
    [tls] = [v for v in chart.one("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    mounts = {m["name"]: m["mountPath"] for m in container(chart)["volumeMounts"]}
    args = flags(container(chart)["args"])
    assert args["tls-cert"] == f"{mounts['tls']}/tls.crt"
    assert args["tls-key"] == f"{mounts['tls']}/tls.key"
    assert "manage-certificates" not in args and "tls-secret" not in args
    return tls, args


@pytest.mark.parametrize("value_set", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_certificates(value_set: str) -> None:
    chart = rendered(value_set)
    serving = next(c for c in chart.of_kind("Certificate") if not c["spec"].get("isCA"))
    service = chart.one("Service")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    assert "server auth" in serving["spec"]["usages"]
    tls, _ = tls_files(chart)
    assert tls["secret"] == {"secretName": serving["spec"]["secretName"]}
    inject = f"{NAMESPACE}/{serving['metadata']['name']}"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = chart.one(kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == inject
        assert set(annotations) <= {"cert-manager.io/inject-ca-from", TEMPLATE}
    issuers = {(i["kind"], i["metadata"]["name"]) for i in chart.of_kind("Issuer")}
    ref = serving["spec"]["issuerRef"]
    if value_set == "cert-manager-issuer":
        assert ref == {"name": "corp-ca", "kind": "ClusterIssuer"}
        assert issuers == set()
    else:
        # self-signed issuer -> CA certificate -> CA issuer -> serving certificate
        assert ("Issuer", ref["name"]) in issuers
        [ca] = [c for c in chart.of_kind("Certificate") if c["spec"].get("isCA")]
        ca_issuer = next(i for i in chart.of_kind("Issuer") if i["metadata"]["name"] == ref["name"])
        assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
        assert ca["spec"]["issuerRef"]["name"] in {name for _, name in issuers}


def test_given_secret_certificates() -> None:
    chart = rendered("given-secret")
    for _, hook in webhooks(chart):
        assert hook["clientConfig"]["caBundle"] == CA_BUNDLE
    tls, _ = tls_files(chart)
    assert tls["secret"] == {"secretName": "my-webhook-tls"}  # not optional: yours must exist
    assert chart.of_kind("Certificate") == []


# --- the Deployment --------------------------------------------------------------------


def test_replicas_spread_over_nodes_and_a_disruption_budget(chart: Rendered) -> None:
    deployment = chart.one("Deployment")
    replicas = value(chart, "replicas")
    assert deployment["spec"]["replicas"] == replicas >= 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = [t.get("podAffinityTerm", t) for terms in anti.values() for t in terms]
    assert terms and all(t["topologyKey"] == "kubernetes.io/hostname" for t in terms)
    assert all(selector_matches(t["labelSelector"], pod_labels(chart)) for t in terms)
    pdb = chart.one("PodDisruptionBudget")
    assert selector_matches(pdb["spec"]["selector"], pod_labels(chart))
    assert 1 <= pdb["spec"]["minAvailable"] < replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_hard_anti_affinity_on_request() -> None:
    anti = rendered("strict").one("Deployment")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rendered("strict").one("Deployment")["spec"]["replicas"] == 3


def test_security_context_is_restricted(chart: Rendered) -> None:
    pod = chart.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(chart)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod
    # A read-only root needs a writable /tmp, in memory and bounded.
    mounts = {m["mountPath"]: m["name"] for m in container(chart)["volumeMounts"]}
    [tmp] = [v for v in pod["volumes"] if v["name"] == mounts["/tmp"]]
    assert tmp["emptyDir"]["sizeLimit"]


def test_probes_and_resources(chart: Rendered) -> None:
    main = container(chart)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert main[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}, probe
    assert main["resources"]["requests"]["cpu"] and main["resources"]["requests"]["memory"]
    assert main["resources"]["limits"]["memory"]


def test_image_reference(chart: Rendered) -> None:
    image = container(chart)["image"]
    repository = value(chart, "image", "repository")
    if value(chart, "image", "digest"):
        assert image == f"{repository}:0.1.0@{DIGEST}"
    else:
        assert image == f"{repository}:0.1.0"


def test_command_line_names_the_rendered_objects(chart: Rendered) -> None:
    main = container(chart)
    args = flags(main["args"])
    assert main["args"][0] == "run"
    assert args["namespace"] == "$(POD_NAMESPACE)"
    env = {e["name"]: e for e in main["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert args["service"] == chart.one("Service")["metadata"]["name"]
    assert args["port"] == str(main["ports"][0]["containerPort"])
    configs = {chart.one("ValidatingWebhookConfiguration")["metadata"]["name"]}
    configs |= {m["metadata"]["name"] for m in chart.of_kind("MutatingWebhookConfiguration")}
    if "webhook-configuration" in args:
        assert configs == {args["webhook-configuration"]}
    assert args["lease-name"] == f"{chart.one('Deployment')['metadata']['name']}-leader"
    assert args["audit-interval"] == value(chart, "audit", "interval")
    assert ("no-pull-secrets" in args) is not value(chart, "registryCredentials", "pullSecrets")


def test_registry_configuration_is_mounted_and_parses() -> None:
    chart = rendered("strict")
    main = container(chart)
    args = flags(main["args"])
    configmap = chart.one("ConfigMap")
    text = configmap["data"]["registries.yaml"]
    config = parse_registry_config(text, source="chart")
    assert list(config.hosts) == ["registry.internal:5000"]
    assert config.hosts["registry.internal:5000"].insecure is True
    assert config.timeout == 3
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert args["registry-config"] == f"{mounts['registries']}/registries.yaml"
    assert args["docker-config"] == f"{mounts['docker-config']}/config.json"
    volumes = {v["name"]: v for v in chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["registries"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert volumes["docker-config"]["secret"] == {
        "secretName": "registry-creds",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    annotations = chart.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/registries"]  # a config change rolls the pods
    assert main["args"][-1] == "--budget=4"


def test_credential_provider_plugins_are_mounted_and_the_config_parses(tmp_path: Path) -> None:
    """The kubelet's CredentialProviderConfig and plugin dir, where the registry config says."""
    chart = rendered("credential-providers")
    main = container(chart)
    args = flags(main["args"])
    configmap = chart.one("ConfigMap")
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert args["registry-config"] == f"{mounts['registries']['mountPath']}/registries.yaml"
    registries = yaml.safe_load(configmap["data"]["registries.yaml"])
    assert registries["credentialProviderConfig"] == mounts["credential-provider-config"]["mountPath"]
    assert registries["credentialProviderBinDir"] == mounts["credential-provider-bin"]["mountPath"]
    assert mounts["credential-provider-bin"]["readOnly"] is True
    volumes = {v["name"]: v for v in chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["credential-provider-bin"]["hostPath"]["path"] == "/etc/eks/image-credential-provider"
    # What the pod will read parses as the kubelet's file does (paths moved under tmp_path).
    config = tmp_path / "config.yaml"
    config.write_text(configmap["data"]["credential-provider.yaml"])
    (tmp_path / "bin").mkdir()
    text = yaml.safe_dump(
        {**registries, "credentialProviderConfig": str(config), "credentialProviderBinDir": str(tmp_path / "bin")}
    )
    providers = parse_registry_config(text, source="chart").credential_providers
    assert providers is not None
    assert [p.name for p in providers.providers] == ["ecr-credential-provider"]
    assert providers.provider_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1") is not None


def test_credential_provider_config_without_plugins_is_refused() -> None:
    values = {"registryCredentials": {"credentialProviders": {"config": VALUE_SETS["credential-providers"]["registryCredentials"]["credentialProviders"]["config"]}}}
    with pytest.raises(Exception, match="binDir"):
        render(values)


# --- optional objects ------------------------------------------------------------------


def test_optional_objects_only_when_asked(chart: Rendered) -> None:
    assert bool(chart.of_kind("ServiceMonitor")) == value(chart, "metrics", "serviceMonitor", "enabled")
    assert bool(chart.of_kind("NetworkPolicy")) == value(chart, "networkPolicy", "enabled")
    assert bool(chart.of_kind("ClusterBaseImagePolicy")) == value(chart, "policies", "enabled")
    assert bool(chart.of_kind("ConfigMap")) == bool(
        value(chart, "registryConfig")
        or value(chart, "registryCredentials", "credentialProviders", "config")
    )


def test_service_monitor_scrapes_the_service() -> None:
    chart = rendered("observability")
    monitor = chart.one("ServiceMonitor")
    service = chart.one("Service")
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "https")
    assert endpoint["tlsConfig"]["serverName"] == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_network_policy_allows_only_what_the_controller_needs() -> None:
    chart = rendered("observability")
    policy = chart.one("NetworkPolicy")["spec"]
    assert selector_matches(policy["podSelector"], pod_labels(chart))
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert ingress["from"] == [{"ipBlock": {"cidr": "10.0.0.0/16"}}]
    ports = [{p["port"] for p in rule.get("ports", [])} for rule in policy["egress"]]
    assert {53} in ports  # DNS
    assert {6443} in ports  # the API server, as configured
    assert {8080} in ports  # extraEgress
    registries = next(r for r in policy["egress"] if {p["port"] for p in r["ports"]} == {443, 5000})
    assert registries["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]


def test_bundled_policies_are_the_library_policies() -> None:
    chart = rendered("bundled-policies")
    policies = chart.of_kind("ClusterBaseImagePolicy")
    library = sorted((ROOT / "policies").glob("*/*.yaml"))
    assert len(policies) == len(library)
    for doc in policies:
        origin = doc["metadata"]["annotations"]["baseguard.io/bundled-from"]
        source = yaml.safe_load((ROOT / "policies" / origin).read_text())
        assert doc["metadata"]["name"] == source["metadata"]["name"]
        assert doc["spec"] == {**source["spec"], "mode": "Audit"}  # values: policies.mode
        assert doc["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        assert check_policy(doc) == [], origin


def test_bundled_policies_keep_their_mode_unless_told() -> None:
    chart = render({"policies": {"enabled": True, "include": ["pinning/require-version-tags.yaml"]}})
    [doc] = chart.of_kind("ClusterBaseImagePolicy")
    assert doc["spec"]["mode"] == "Enforce"
    assert doc["metadata"]["name"] == "require-version-tags"


def test_one_bundled_policy_moves_to_its_own_mode_by_value() -> None:
    """The bundled policies are the release's (re-created on upgrade), so each one's mode is a value."""
    chart = render(
        {
            "policies": {
                "enabled": True,
                "include": ["pinning/require-version-tags.yaml", "eol/eol-python.yaml"],
                "mode": "Audit",
                "modes": {"require-version-tags": "Warn"},
            }
        }
    )
    modes = {doc["metadata"]["name"]: doc["spec"]["mode"] for doc in chart.of_kind("ClusterBaseImagePolicy")}
    assert modes.pop("require-version-tags") == "Warn"
    assert set(modes.values()) == {"Audit"}
    with pytest.raises(helm_python.HelmValuesError, match="/policies/modes/require-version-tags"):
        render({"policies": {"enabled": True, "modes": {"require-version-tags": "Block"}}})


def test_notes_say_what_to_do_next(chart: Rendered) -> None:
    deployment = chart.one("Deployment")["metadata"]["name"]
    assert f"rollout status deployment/{deployment}" in chart.notes
    assert "kubectl get cbip" in chart.notes
    assert "baseguard check" in chart.notes
    assert f"failurePolicy={value(chart, 'webhook', 'failurePolicy')}" in chart.notes
    if value(chart, "webhook", "failurePolicy") == "Ignore":
        assert "admitted UNCHECKED" in chart.notes
    assert "ImagePullBackOff" in chart.notes
    unpublished = value(chart, "image", "repository") == "ghcr.io/baseguard/baseguard"
    assert ("no\nimage is published there" in chart.notes) is unpublished
    if value(chart, "webhook", "policies", "enabled") and value(chart, "webhook", "policies", "failurePolicy") == "Fail":
        assert "refuses EVERY\n   create and edit of a ClusterBaseImagePolicy" in chart.notes


def test_the_chart_passes_baseguards_own_policies(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """What the chart deploys is pinned as the library policies ask (offline check)."""
    from controller.cli.main import main

    for name in ("defaults", "strict"):
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(list(rendered(name).objects)))
        code = main(["check", str(manifest), "-p", str(ROOT / "policies"), "--offline", "--format", "json", "--namespace", NAMESPACE])
        report = json.loads(capsys.readouterr().out)
        assert code == 0, report
        assert report["summary"]["deny"] == 0
        assert {r["name"] for r in report["results"]} == {rendered(name).one("Deployment")["metadata"]["name"]}


def test_value_sets_cover_the_choices() -> None:
    """The sets above exercise every certificate mode and every optional object."""
    modes = {VALUE_SETS[n].get("certificates", {}).get("mode", "self") for n in VALUE_SETS}
    assert modes == {"self", "cert-manager", "secret"}


def test_command_line_is_accepted_by_baseguard_run(chart: Rendered) -> None:
    """Every flag the chart passes exists in `baseguard run`, with a value it accepts."""
    import argparse

    from controller.cli.commands.run import add_arguments

    parser = argparse.ArgumentParser(prog="baseguard run", exit_on_error=False)
    add_arguments(parser)
    main = container(chart)
    assert main["args"][0] == "run"
    try:
        parsed = parser.parse_args(main["args"][1:])
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"baseguard run refuses the chart's arguments: {exc}")
    assert parsed.port == main["ports"][0]["containerPort"]
    assert parsed.manage_certificates is (value(chart, "certificates", "mode") == "self")
    assert parsed.pull_secrets is value(chart, "registryCredentials", "pullSecrets")
    url = value(chart, "webhook", "url")
    # Outside the cluster the serving certificate must also name the URL's host.
    assert parsed.cert_host == (["127.0.0.1"] if url and parsed.manage_certificates else [])


def test_cert_manager_mode_leaves_cert_managers_namespace_out() -> None:
    """With failurePolicy Fail, a webhook judging cert-manager's pods could keep cert-manager
    from restarting to renew the webhook's own certificate."""
    for value_set, judged in (("cert-manager", False), ("cert-manager-issuer", False), ("defaults", True)):
        for _, hook in workload_webhooks(rendered(value_set)):
            assert selector_matches(hook["namespaceSelector"], namespace_labels("cert-manager")) is judged
            assert selector_matches(hook["namespaceSelector"], namespace_labels("apps"))


def test_mutual_tls_mounts_the_client_ca_and_names_the_apiserver() -> None:
    chart = rendered("mutual-tls")
    main = container(chart)
    given = flags(main["args"])
    assert given["client-ca"] == "/etc/baseguard/client-ca/ca.crt"
    assert given["client-name"] == "kube-apiserver"
    mount = next(m for m in main["volumeMounts"] if m["name"] == "client-ca")
    assert mount["mountPath"] == "/etc/baseguard/client-ca" and mount["readOnly"] is True
    volumes = chart.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "client-ca")["configMap"] == {"name": "apiserver-client-ca"}
    assert "client-ca" not in flags(container(rendered("defaults"))["args"])
