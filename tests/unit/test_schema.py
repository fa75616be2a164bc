"""The CRD schema: structural for the apiserver, and precise for ``policy validate``."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest
import yaml

from controller import globs
from controller.policy.schema import crd_manifests, field_path, openapi_schema, validate_document

JUNCTORS = ("anyOf", "allOf", "oneOf", "not")


def policy(spec: Any = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "p"},
        "spec": {} if spec is None else spec,
    }
    doc.update(top)
    return doc


def messages(doc: Any) -> list[str]:
    return [str(e) for e in validate_document(doc)]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node that describes a value (not the logical junctors)."""
    yield path or "<root>", schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


# --- the schema is structural ----------------------------------------------------------


def test_every_node_is_typed() -> None:
    untyped = [p for p, node in nodes(openapi_schema()) if "type" not in node]
    assert untyped == []


def test_no_additional_properties_false_and_no_properties_beside_additional_properties() -> None:
    for path, node in nodes(openapi_schema()):
        assert node.get("additionalProperties", True) is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_junctors_carry_no_types_or_defaults() -> None:
    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key in JUNCTORS:
                branches = node.get(key, [])
                yield from branches if isinstance(branches, list) else [branches]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for branch in walk(openapi_schema()):
        assert not {"type", "default", "description", "additionalProperties"} & set(branch), branch


def test_defaults_are_valid_for_their_fields() -> None:
    with_defaults = [(p, n) for p, n in nodes(openapi_schema()) if "default" in n]
    assert {p for p, _ in with_defaults} == {
        ".spec.mode",
        ".spec.pinning.require",
        ".spec.pinning.disallowedTags",
        ".spec.pinning.mutateToDigest",
        ".spec.lineage.maxDepth",
        ".spec.lineage.verify",
        ".spec.lineage.onUnknownBase",
        ".spec.lineage.onLookupFailure",
        ".spec.lineage.staleBase",
        ".spec.trust.appliesTo",
        ".spec.trust.authorities[].keyless.trustedRoot",
        ".spec.evidence.scope",
        ".spec.evidence.requireScan",
    }
    for path, node in with_defaults:
        assert list(jsonschema.Draft7Validator(node).iter_errors(node["default"])) == [], path


def test_root_fields_follow_the_apiserver_rules() -> None:
    schema = openapi_schema()
    assert schema["type"] == "object"
    assert schema["properties"]["apiVersion"] == {"type": "string"}
    assert schema["properties"]["kind"] == {"type": "string"}
    assert schema["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize(
    ("alphabet", "field"),
    [
        (globs.REPOSITORY_CHARS, ("spec", "registries", "allowed", "[]")),
        (globs.REPOSITORY_CHARS, ("spec", "bases", "allowed", "[]", "image")),
        (globs.REPOSITORY_CHARS, ("spec", "bases", "deprecated", "[]", "image")),
        (globs.TAG_CHARS, ("spec", "pinning", "disallowedTags", "[]")),
        (globs.TAG_CHARS, ("spec", "bases", "allowed", "[]", "tags", "[]")),
        (globs.NAMESPACE_CHARS, ("spec", "match", "namespaces", "[]")),
        (globs.NAMESPACE_CHARS, ("spec", "exceptions", "[]", "namespaces", "[]")),
        (globs.IMAGE_CHARS, ("spec", "exclude", "images", "[]")),
        (globs.IMAGE_CHARS, ("spec", "exceptions", "[]", "images", "[]")),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else v.pattern,
)
def test_glob_patterns_are_the_alphabets_of_globs_py(alphabet: Any, field: tuple[str, ...]) -> None:
    node = openapi_schema()
    for part in field:
        node = node["items"] if part == "[]" else node["properties"][part]
    assert node["pattern"] == alphabet.pattern


def test_openapi_schema_is_a_fresh_copy_each_time() -> None:
    first = openapi_schema()
    first["properties"]["spec"]["properties"].clear()
    assert "mode" in openapi_schema()["properties"]["spec"]["properties"]


def test_schema_is_not_read_at_import_time() -> None:
    code = (
        "import controller.policy.compile, controller.policy.schema as s;"
        "print(s._schema_text.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


# --- the CRDs --------------------------------------------------------------------------


def test_crd_manifests_are_well_formed() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in crd_manifests()}
    assert set(crds) == {"ClusterBaseImagePolicy", "BaseImagePolicy", "BaseImagePolicyException"}
    expected = {
        "ClusterBaseImagePolicy": ("clusterbaseimagepolicies", "cbip", "Cluster"),
        "BaseImagePolicy": ("baseimagepolicies", "bip", "Namespaced"),
    }
    for kind, (plural, short, scope) in expected.items():
        crd = crds[kind]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == f"{plural}.baseguard.io"
        assert crd["spec"]["group"] == "baseguard.io"
        assert crd["spec"]["scope"] == scope
        assert crd["spec"]["names"] == {
            "kind": kind,
            "listKind": f"{kind}List",
            "plural": plural,
            "singular": kind.lower(),
            "shortNames": [short],
            "categories": ["baseguard"],
        }
        [version] = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        assert version["schema"]["openAPIV3Schema"] == openapi_schema()
        columns = {
            c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]
        }
        assert columns == {
            "Mode": ("string", ".spec.mode"),
            "Ready": ("string", '.status.conditions[?(@.type=="Ready")].status'),
            "Violations": ("integer", ".status.audit.violations"),
            "Age": ("date", ".metadata.creationTimestamp"),
        }


def test_the_exception_crd_is_namespaced_and_built_from_its_own_schema() -> None:
    from controller.policy.exceptions import exception_schema

    [crd] = [c for c in crd_manifests() if c["spec"]["names"]["kind"] == "BaseImagePolicyException"]
    assert crd["metadata"]["name"] == "baseimagepolicyexceptions.baseguard.io"
    assert crd["spec"]["scope"] == "Namespaced"  # never cluster-wide: it waives in its namespace only
    assert crd["spec"]["names"]["shortNames"] == ["bipx"]
    [version] = crd["spec"]["versions"]
    assert version["schema"]["openAPIV3Schema"] == exception_schema()
    assert version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["policy", "images", "until"]


def test_crd_manifests_dump_as_plain_yaml() -> None:
    """No anchors or aliases (the selector schema is written once in the source)."""
    text = yaml.safe_dump_all(crd_manifests(), sort_keys=False)
    assert "&id" not in text and "*id" not in text
    assert list(yaml.safe_load_all(text)) == crd_manifests()


# --- validate_document -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (policy(), []),
        (policy(kind="BaseImagePolicy"), []),
        (
            policy(apiVersion="baseguard.io/v1beta1"),
            ["apiVersion: expected 'baseguard.io/v1alpha1', got 'baseguard.io/v1beta1'"],
        ),
        (
            policy(kind="Pod"),
            ["kind: unsupported kind 'Pod': must be ClusterBaseImagePolicy or BaseImagePolicy"],
        ),
        (policy(metadata={}), ["metadata.name: required field is missing"]),
        (policy(metadata={"namespace": "x"}), ["metadata.name: required field is missing"]),
        (
            policy(metadata={"name": "Prod_Bases"}),
            [
                "metadata.name: invalid name 'Prod_Bases': lower-case letters, digits, '-' and '.', "
                "at most 253 characters"
            ],
        ),
        (
            policy(kind="BaseImagePolicy", metadata={"name": "p", "namespace": "Team A"}),
            [
                "metadata.namespace: invalid namespace 'Team A': lower-case letters, digits and '-', "
                "at most 63 characters"
            ],
        ),
        (
            {
                "apiVersion": "baseguard.io/v1alpha1",
                "kind": "BaseImagePolicy",
                "metadata": {"name": "p"},
            },
            ["spec: required field is missing"],
        ),
        (["not", "a", "mapping"], ["a policy must be a mapping, got a list"]),
    ],
    ids=[
        "cluster-ok",
        "namespaced-without-namespace-ok",
        "wrong-api-version",
        "wrong-kind",
        "no-metadata-name",
        "namespace-but-no-name",
        "bad-name",
        "bad-namespace",
        "no-spec",
        "not-a-mapping",
    ],
)
def test_identity(doc: Any, expected: list[str]) -> None:
    assert messages(doc) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"mode": "enforce"},
            ["spec.mode: unsupported value 'enforce': must be one of Enforce, Warn, Audit"],
        ),
        ({"mode": None}, ["spec.mode: expected a string, got null"]),
        (
            {"pinning": {"require": "Tag"}},
            ["spec.pinning.require: unsupported value 'Tag': must be one of None, Version, Digest"],
        ),
        (
            {"pinning": {"mutateToDigest": "yes"}},
            ["spec.pinning.mutateToDigest: expected a boolean (true or false), got a string"],
        ),
        (
            {"pinning": {"disallowedTags": "latest"}},
            ["spec.pinning.disallowedTags: expected a list, got a string"],
        ),
        (
            {"pinning": {"disallowedTags": [3.12]}},
            ["spec.pinning.disallowedTags[0]: expected a string, got a number"],
        ),
        (
            {"lineage": {"onUnknownBase": "Ignore"}},
            [
                "spec.lineage.onUnknownBase: unsupported value 'Ignore': must be one of Deny, Warn, Allow"
            ],
        ),
        ({"lineage": {"maxDepth": 11}}, ["spec.lineage.maxDepth: must be at most 10, got 11"]),
        ({"lineage": {"maxDepth": -1}}, ["spec.lineage.maxDepth: must be at least 0, got -1"]),
        (
            {"lineage": {"maxDepth": "4"}},
            ["spec.lineage.maxDepth: expected an integer, got a string"],
        ),
        (
            {"lineage": {"maxBaseAge": "6mo"}},
            [
                "spec.lineage.maxBaseAge: '6mo' is not a duration: expected a number and a unit h, d or w (e.g. 180d)"
            ],
        ),
        (
            {"lineage": {"platforms": ["linux"]}},
            [
                "spec.lineage.platforms[0]: 'linux' is not a platform: expected os/arch or os/arch/variant in lower case (e.g. linux/arm64)"
            ],
        ),
        (
            {"lineage": {"platforms": []}},
            ["spec.lineage.platforms: must not be empty (leave the field out instead)"],
        ),
        (
            {"registries": {"allowed": []}},
            ["spec.registries.allowed: must not be empty (leave the field out instead)"],
        ),
        ({"registries": {"allowed": [""]}}, ["spec.registries.allowed[0]: must not be empty"]),
        (
            {"registries": {"allowed": ["docker.io/library/*", "GHCR.io/acme/*"]}},
            [
                "spec.registries.allowed[1]: bad glob 'GHCR.io/acme/*': 'C', 'G', 'H', 'R' cannot occur in a repository pattern (names are lower case: 'ghcr.io/acme/*')"
            ],
        ),
        (
            {"match": {"namespaces": ["prod_*"]}},
            [
                "spec.match.namespaces[0]: bad glob 'prod_*': '_' cannot occur in a namespace pattern"
            ],
        ),
        (
            {"exclude": {"images": ["debug image"]}},
            ["spec.exclude.images[0]: bad glob 'debug image': ' ' cannot occur in an image pattern"],
        ),
        (
            {"exceptions": [{"namespaces": ["a"], "until": "31.03.2026"}]},
            ["spec.exceptions[0].until: '31.03.2026' is not a date: expected YYYY-MM-DD"],
        ),
        (
            {"exceptions": [{"namespaces": ["a"]}]},
            ["spec.exceptions[0].until: required field is missing"],
        ),
        (
            {"exceptions": [{"until": "2026-01-01", "reason": "r"}]},
            ["spec.exceptions[0]: must set at least one of: images, namespaces, namespaceSelector"],
        ),
        (
            {"exceptions": [{"images": [], "until": "2026-01-01"}]},
            ["spec.exceptions[0].images: must not be empty (leave the field out instead)"],
        ),
        (
            {"bases": {"allowed": [{"tags": ["3.12"]}]}},
            ["spec.bases.allowed[0].image: required field is missing"],
        ),
        (
            {
                "bases": {
                    "allowed": [{"image": "docker.io/library/python", "digests": ["sha256:ABC"]}]
                }
            },
            [
                "spec.bases.allowed[0].digests[0]: 'sha256:ABC' is not a digest: expected sha256:, sha384: or sha512: and lower-case hex characters"
            ],
        ),
        (
            {"bases": {"deprecated": [{"image": "docker.io/library/python", "replacement": ""}]}},
            ["spec.bases.deprecated[0].replacement: must not be empty"],
        ),
        (
            {
                "match": {
                    "objectSelector": {"matchExpressions": [{"key": "tier", "operator": "Equals"}]}
                }
            },
            [
                "spec.match.objectSelector.matchExpressions[0].operator: unsupported value 'Equals': must be one of In, NotIn, Exists, DoesNotExist"
            ],
        ),
        (
            {"match": {"namespaceSelector": {"matchLabels": {"app.kubernetes.io/name": 1}}}},
            [
                "spec.match.namespaceSelector.matchLabels[app.kubernetes.io/name]: expected a string, got an integer"
            ],
        ),
    ],
    ids=[
        "enum-case",
        "null-is-a-type-error-only",
        "require-enum",
        "boolean",
        "list-expected",
        "unquoted-version-is-a-number",
        "outcome-enum",
        "max-depth-too-deep",
        "max-depth-negative",
        "max-depth-string",
        "duration",
        "platform",
        "empty-platforms",
        "empty-allowlist",
        "empty-glob",
        "upper-case-registry",
        "namespace-glob",
        "image-glob",
        "date-format",
        "waiver-without-until",
        "waiver-without-scope",
        "waiver-with-empty-images",
        "base-without-image",
        "digest",
        "empty-replacement",
        "selector-operator",
        "label-value-type",
    ],
)
def test_spec_errors(spec: dict[str, Any], expected: list[str]) -> None:
    assert messages(policy(spec)) == expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            policy({"pinning": {"mutatetoDigest": True}}),
            ["spec.pinning.mutatetoDigest: unknown field (did you mean 'mutateToDigest'?)"],
        ),
        (policy({"Mode": "Warn"}), ["spec.Mode: unknown field (did you mean 'mode'?)"]),
        (
            policy({"bases": {"allowed": [{"image": "docker.io/library/python", "tag": ["3"]}]}}),
            ["spec.bases.allowed[0].tag: unknown field (did you mean 'tags'?)"],
        ),
        (policy({"lineage": {"colour": "blue"}}), ["spec.lineage.colour: unknown field"]),
        (policy(specs={}), ["specs: unknown field (did you mean 'spec'?)"]),
        (
            policy(status={"audit": {"violation": 1}}),
            ["status.audit.violation: unknown field (did you mean 'violations'?)"],
        ),
        (
            policy(
                metadata={
                    "name": "p",
                    "labels": {"team": "platform"},
                    "annotations": {"a": "b"},
                    "managedFields": [{"manager": "kubectl"}],
                }
            ),
            [],
        ),
        (policy({"match": {"namespaceSelector": {"matchLabels": {"any.key/at-all": "v"}}}}), []),
    ],
    ids=[
        "typo-in-case",
        "capitalized",
        "in-list-item",
        "no-close-match",
        "top-level",
        "status",
        "metadata-is-free-form",
        "label-maps-are-free-form",
    ],
)
def test_unknown_fields(doc: dict[str, Any], expected: list[str]) -> None:
    assert messages(doc) == expected


def test_errors_come_in_document_order_one_per_field() -> None:
    doc = policy(
        {
            "lineage": {"verify": "layers", "maxDepth": "deep"},
            "mode": 3,
            "pinning": {"require": "digest", "extra": 1},
        }
    )
    assert messages(doc) == [
        "spec.lineage.verify: unsupported value 'layers': must be one of Layers, Annotations",
        "spec.lineage.maxDepth: expected an integer, got a string",
        "spec.mode: expected a string, got an integer",
        "spec.pinning.require: unsupported value 'digest': must be one of None, Version, Digest",
        "spec.pinning.extra: unknown field",
    ]


def test_yaml_dates_and_read_only_mappings_validate_like_kubectl_json() -> None:
    """An unquoted YAML date is a ``date``; kopf hands over Mappings that are not dicts."""
    doc = yaml.safe_load(
        """
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {name: p}
        spec:
          exceptions: [{namespaces: [payments], until: 2026-03-31}]
        status:
          conditions: [{type: Ready, status: "True", lastTransitionTime: 2025-06-01T10:00:00Z}]
        """
    )
    assert isinstance(doc["spec"]["exceptions"][0]["until"], dt.date)
    assert validate_document(MappingProxyType(doc)) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "bases", "allowed", 2, "tags", 0), "spec.bases.allowed[2].tags[0]"),
        (
            ("spec", "match", "objectSelector", "matchLabels", "app.kubernetes.io/name"),
            "spec.match.objectSelector.matchLabels[app.kubernetes.io/name]",
        ),
    ],
    ids=["empty", "top", "indexed", "map-key"],
)
def test_field_path(path: tuple[str | int, ...], expected: str) -> None:
    assert field_path(path) == expected


def test_the_schema_defaults_are_the_models() -> None:
    """One source for defaults: the model's dataclasses; the CRD schema repeats them for
    the apiserver, and must say the same."""
    from controller.policy.model import CompiledPolicy, LineageSettings, Pinning
    from controller.policy.schema import openapi_schema

    spec = openapi_schema()["properties"]["spec"]["properties"]
    lineage, pinning = LineageSettings(), Pinning()
    assert spec["mode"]["default"] == CompiledPolicy.mode
    got = {k: v.get("default") for k, v in spec["lineage"]["properties"].items() if "default" in v}
    assert got == {
        "maxDepth": lineage.max_depth,
        "verify": lineage.verify,
        "onUnknownBase": lineage.on_unknown_base,
        "onLookupFailure": lineage.on_lookup_failure,
        "staleBase": lineage.stale_base,
    }
    got = {k: v.get("default") for k, v in spec["pinning"]["properties"].items() if "default" in v}
    assert got == {
        "require": pinning.require,
        "disallowedTags": list(pinning.disallowed_tags.patterns),
        "mutateToDigest": pinning.mutate_to_digest,
    }
