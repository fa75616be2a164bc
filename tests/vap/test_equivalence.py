"""The generated ValidatingAdmissionPolicy and baseguard agree, image by image (cel-python).

The apiserver judges the string rules of a policy with the CEL that
:mod:`controller.vap` writes; baseguard judges them with its own evaluator. For
the reference vectors of the parsers the runtime uses (the ones
``tests/unit/test_reference.py`` replays), for each policy shape, and for
generated images, namespaces and labels, the two must name the same rules. The
same comparison runs against the real kube-apiserver in ``tests/cluster/test_vap.py``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vap.vapcel import evaluate as vap_evaluate

from controller.errors import InvalidReference
from controller.policy.compile import compile_policy
from controller.policy.evaluate import evaluate
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.model import CompiledPolicy, RuleCode
from controller.reference import parse
from controller.vap.generate import export

TODAY = dt.date(2026, 6, 1)
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
STRING_RULES = {
    RuleCode.INVALID_REFERENCE,
    RuleCode.REGISTRY_NOT_ALLOWED,
    RuleCode.DISALLOWED_TAG,
    RuleCode.UNPINNED,
}


def _vectors() -> list[str]:
    """Every input of the reference vectors, accepted and refused."""
    path = pathlib.Path(__file__).parents[1] / "unit" / "test_reference.py"
    spec = importlib.util.spec_from_file_location("reference_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [text for text, _ in module.ACCEPTED] + [text for text, _ in module.REFUSED]


VECTORS = _vectors()
HEX64 = "a" * 64
EXTRA = [
    "nginx",
    "user/app",
    "docker.io/nginx",
    "index.docker.io/nginx:1.25.3",
    "REGISTRY-1.DOCKER.IO/library/nginx:latest",
    "registry.corp.example:5000/team/app:v1.2.3",
    "Registry.Corp.Example/team/app:1.2.3-slim",
    f"nginx:1.2@sha256:{HEX64}",
    f"nginx@sha256:{HEX64}",
    "nginx:3.12.3-slim",
    "nginx:v1.2.3",
    "nginx:1.2.3.4",
    "nginx:x1.2.3",
    "nginx:.1.2.3",
    "nginx:LATEST",
    "nginx:latest-1",
    "localhost/app",
    "localhost:5000/app:1.0.0",
    "FOO/bar:1.2.3",
    "quay.io/team/app:1.2.3",
    "a" * 248,
    "a" * 247,
    "x.io/" + "a" * 255,
    "x.io/" + "a" * 256,
    "",
    "nginx:",
    "nginx@",
    "a@b@c",
]


def _policy(spec: Mapping[str, Any], *, kind: str = "ClusterBaseImagePolicy") -> CompiledPolicy:
    meta: dict[str, Any] = {"name": "p"}
    if kind == "BaseImagePolicy":
        meta["namespace"] = "team"
    return compile_policy(
        {"apiVersion": "baseguard.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}
    )


POLICIES: dict[str, CompiledPolicy] = {
    "allowlist": _policy(
        {
            "registries": {
                "allowed": [
                    "docker.io/library/*",
                    "registry.corp.example*/team/*",
                    "quay.io/te?m/*",
                ]
            }
        }
    ),
    "tags": _policy({"pinning": {"disallowedTags": ["latest", "*-dev", "1.?"]}}),
    "version": _policy({"pinning": {"require": "Version"}}),
    "digest": _policy({"pinning": {"require": "Digest"}, "mode": "Warn"}),
    "exclude": _policy(
        {
            "registries": {"allowed": ["registry.corp.example/*"]},
            "pinning": {"require": "Digest"},
            "exclude": {"images": ["docker.io/library/nginx", "docker.io/user/*:v?"]},
        }
    ),
    "exceptions": _policy(
        {
            "pinning": {},
            "exceptions": [
                {
                    "images": ["docker.io/library/nginx*"],
                    "until": "2026-06-01",
                    "reason": "in force",
                },
                {"images": ["docker.io/user/*"], "until": "2026-05-31", "reason": "expired"},
                {"namespaces": ["legacy-*"], "until": "2027-01-01", "reason": "namespace"},
            ],
        }
    ),
    "namespaced": _policy(
        {
            "registries": {"allowed": ["docker.io/*"]},
            "match": {
                "objectSelector": {
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["free"]}]
                }
            },
        },
        kind="BaseImagePolicy",
    ),
    "match": _policy(
        {
            "pinning": {"require": "Version"},
            "match": {
                "namespaces": ["prod-*", "team"],
                "excludeNamespaces": ["prod-sandbox"],
                "objectSelector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "debug", "operator": "DoesNotExist"}],
                },
            },
        }
    ),
}


def baseguard_rules(
    policy: CompiledPolicy, image: str, *, namespace: str, labels: Mapping[str, str]
) -> set[str]:
    """The string rules baseguard's evaluator reports (not waived) for one image."""
    try:
        ref, invalid = parse(image), None
    except InvalidReference as exc:
        ref, invalid = None, exc.message
    obj = ObjectFacts(kind="Pod", name="x", namespace=namespace, labels=dict(labels))
    facts = ImageFacts(image=image, container="c", reference=ref, invalid=invalid)
    (result,) = evaluate([policy], obj, [facts], now=NOW)
    return {v.rule.value for v in result.violations if v.waived is None and v.rule in STRING_RULES}


def vap_rules(
    policy: CompiledPolicy, image: str, *, namespace: str, labels: Mapping[str, str]
) -> set[str]:
    """The rules the generated VAP fails for one image (each message names its rule)."""
    vap = export(policy, today=TODAY).policy
    matched, failed = vap_evaluate(vap, [image], namespace=namespace, labels=labels)
    if not matched:
        return set()
    return {message.split("(", 1)[1].split(")", 1)[0] for message in failed}


def _agree(
    name: str, image: str, namespace: str = "team", labels: Mapping[str, str] | None = None
) -> None:
    policy = POLICIES[name]
    given_labels = {"app": "web"} if labels is None else labels
    expected = baseguard_rules(policy, image, namespace=namespace, labels=given_labels)
    got = vap_rules(policy, image, namespace=namespace, labels=given_labels)
    assert got == expected, f"{name}: {image!r} in {namespace} {given_labels}"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_reference_vector_is_judged_alike(name: str) -> None:
    for image in [*VECTORS, *EXTRA]:
        _agree(name, image)


def test_the_vectors_do_show_each_rule() -> None:
    """The comparison is not vacuous: each rule is reported for some vector, and not for others."""
    for name, rule in [
        ("allowlist", "registry-not-allowed"),
        ("tags", "disallowed-tag"),
        ("version", "unpinned"),
        ("digest", "unpinned"),
        ("allowlist", "invalid-reference"),
    ]:
        seen = [
            vap_rules(POLICIES[name], i, namespace="team", labels={}) for i in [*VECTORS, *EXTRA]
        ]
        assert any(rule in s for s in seen) and any(rule not in s for s in seen), (name, rule)


def test_docker_hub_normalisation_host_case_and_ports() -> None:
    policy = POLICIES["allowlist"]
    for image in [
        "nginx",
        "docker.io/nginx",
        "INDEX.DOCKER.IO/nginx",
        "Registry.Corp.Example:5000/team/app",
    ]:
        assert vap_rules(policy, image, namespace="team", labels={}) == set(), image
    assert vap_rules(policy, "user/app", namespace="team", labels={}) == {"registry-not-allowed"}
    assert vap_rules(policy, "evil.io/library/nginx", namespace="team", labels={}) == {
        "registry-not-allowed"
    }


def test_exceptions_in_force_waive_and_expired_ones_are_left_out() -> None:
    policy = POLICIES["exceptions"]
    assert vap_rules(policy, "nginx", namespace="team", labels={}) == set()  # until today: waived
    assert vap_rules(policy, "user/app", namespace="team", labels={}) == {
        "disallowed-tag"
    }  # expired
    assert vap_rules(policy, "user/app", namespace="legacy-1", labels={}) == set()
    assert (
        export(policy, today=TODAY).policy["metadata"]["annotations"]["baseguard.io/regenerate-by"]
        == "2026-06-02"
    )


def test_scope_namespaces_and_selectors() -> None:
    assert vap_rules(POLICIES["match"], "nginx", namespace="prod-a", labels={"app": "web"}) == {
        "disallowed-tag",
        "unpinned",
    }
    assert (
        vap_rules(POLICIES["match"], "nginx", namespace="prod-sandbox", labels={"app": "web"})
        == set()
    )
    assert vap_rules(POLICIES["match"], "nginx", namespace="dev", labels={"app": "web"}) == set()
    assert (
        vap_rules(POLICIES["match"], "nginx", namespace="team", labels={"app": "web", "debug": "1"})
        == set()
    )
    assert vap_rules(POLICIES["namespaced"], "quay.io/x", namespace="other", labels={}) == set()
    assert vap_rules(POLICIES["namespaced"], "quay.io/x", namespace="team", labels={}) == {
        "registry-not-allowed"
    }
    assert (
        vap_rules(POLICIES["namespaced"], "quay.io/x", namespace="team", labels={"tier": "free"})
        == set()
    )


# --------------------------------------------------------------------------- generated

_alnum = st.text("abcz019", min_size=1, max_size=5)
_hosts = st.one_of(
    st.sampled_from(
        [
            "docker.io",
            "INDEX.docker.io",
            "registry-1.docker.io",
            "localhost",
            "LOCALHOST:5000",
            "registry.corp.example",
            "Registry.Corp.Example:5000",
            "quay.io",
            "[::1]:5000",
            "FOO",
            "a_b.io",
        ]
    ),
    st.builds(lambda a, b: f"{a}.{b}", _alnum, _alnum),
)
_paths = st.lists(
    st.one_of(
        _alnum,
        st.sampled_from(["library", "team", "user", "a.b", "a__b", "a--b", "A", "a-", "te1m"]),
    ),
    min_size=1,
    max_size=3,
).map("/".join)
_tags = st.one_of(
    st.sampled_from(
        [
            "latest",
            "1.2",
            "1.2.3",
            "v1.2.3-dev",
            "3.12.3-slim",
            "x1.2.3",
            "1.x",
            "LATEST",
            "-bad",
            "a" * 129,
        ]
    ),
    st.text("a1.-_Z", min_size=1, max_size=8),
)
_digests = st.sampled_from(
    [f"sha256:{HEX64}", "sha256:" + "a" * 63, "md5:" + "a" * 32, f"sha512:{'f' * 128}"]
)
images = st.one_of(
    st.builds(
        lambda host, path, tag, digest: (
            (f"{host}/" if host else "")
            + path
            + (f":{tag}" if tag else "")
            + (f"@{digest}" if digest else "")
        ),
        st.one_of(st.none(), _hosts),
        _paths,
        st.one_of(st.none(), _tags),
        st.one_of(st.none(), _digests),
    ),
    st.text("abcZ19./:@-_[]", max_size=24),
)
namespaces = st.sampled_from(["team", "prod-a", "prod-sandbox", "legacy-1", "dev", "default"])
labelsets = st.dictionaries(
    st.sampled_from(["app", "debug", "tier"]), st.sampled_from(["web", "free", "1"]), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(POLICIES)), image=images, namespace=namespaces, labels=labelsets)
def test_generated_pods_are_judged_alike(
    name: str, image: str, namespace: str, labels: dict[str, str]
) -> None:
    _agree(name, image, namespace, labels)
