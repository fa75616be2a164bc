"""Compiling policies: defaults, parsed values, and every mistake reported at its field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from controller.errors import PolicyError
from controller.globs import GlobSet
from controller.policy.compile import catalog_references, check_policy, compile_policy
from controller.policy.model import (
    BaseEntry,
    CompiledPolicy,
    DeprecatedEntry,
    LabelRequirement,
    LabelSelector,
    LineageSettings,
    Match,
    Mode,
    OnOutcome,
    Pinning,
    Require,
    Verify,
    Waiver,
)
from controller.policy.schema import validate_document
from controller.reference import Reference

POLICIES = Path(__file__).resolve().parent.parent / "data" / "policies"
VALID = sorted((POLICIES / "valid").glob("*.yaml"))
INVALID = sorted((POLICIES / "invalid").glob("*.yaml"))
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def policy(spec: Any = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "p"},
        "spec": {} if spec is None else spec,
    }
    doc.update(top)
    return doc


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


# --- valid policies --------------------------------------------------------------------


def test_there_are_example_policies() -> None:
    assert len(VALID) >= 5 and len(INVALID) >= 5


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_every_valid_example_compiles(path: Path) -> None:
    doc = load(path)
    assert check_policy(doc) == []
    compiled = compile_policy(doc)
    assert compiled.name == doc["metadata"]["name"]


def test_the_spec_example_compiles_to_exactly_what_it_says() -> None:
    compiled = compile_policy(load(POLICIES / "valid" / "production-bases.yaml"))
    python = Reference("docker.io", "library/python", "3.12-slim")
    assert compiled == CompiledPolicy(
        kind="ClusterBaseImagePolicy",
        name="production-bases",
        namespace=None,
        mode=Mode.ENFORCE,
        match=Match(
            namespaces=GlobSet(("prod-*",)),
            exclude_namespaces=GlobSet(("kube-system",)),
            namespace_selector=LabelSelector(),
            object_selector=LabelSelector(),
        ),
        exclude_images=GlobSet(("registry.example.com/debug/*",)),
        waivers=(
            Waiver(
                images=GlobSet(("docker.io/acme/legacy-*",)),
                namespaces=GlobSet(("payments",)),
                until=dt.date(2026, 3, 31),
                reason="migration to python 3.12 tracked in PAY-123",
                index=0,
            ),
        ),
        registries_allowed=GlobSet(("docker.io/library/*", "ghcr.io/acme/*")),
        pinning=Pinning(require=Require.VERSION, disallowed_tags=GlobSet(("latest",))),
        bases_allowed=(
            BaseEntry(
                image=GlobSet(("docker.io/library/python",)),
                tags=GlobSet(("3.12*-slim*", "3.13*-slim*")),
                digests=None,
            ),
        ),
        bases_deprecated=(
            DeprecatedEntry(
                image=GlobSet(("docker.io/library/python",)),
                tags=GlobSet(("3.8*", "3.7*")),
                reason="Python 3.8 reached end of life on 2024-10-07",
                replacement="docker.io/library/python:3.12-slim",
                enforce_after=dt.date(2025, 1, 1),
            ),
        ),
        lineage=LineageSettings(
            max_depth=4,
            verify=Verify.LAYERS,
            catalog=(python,),
            on_unknown_base=OnOutcome.DENY,
            on_lookup_failure=OnOutcome.DENY,
            max_base_age=dt.timedelta(days=180),
            stale_base=OnOutcome.WARN,
            platforms=("linux/amd64", "linux/arm64"),
        ),
        lineage_declared=True,
    )
    assert compiled.judges_lineage and compiled.key == "production-bases"


def test_defaults_of_an_empty_spec() -> None:
    compiled = compile_policy(policy())
    no_tag_rule = Pinning(disallowed_tags=GlobSet(()))
    assert compiled == CompiledPolicy(kind="ClusterBaseImagePolicy", name="p", pinning=no_tag_rule)
    assert compiled.pinning.require is Require.NONE
    assert compiled.pinning.disallowed_tags.patterns == ()  # no pinning section, no tag rule
    assert not compiled.pinning.mutate_to_digest
    assert compiled.lineage == LineageSettings(
        max_depth=4,
        verify=Verify.LAYERS,
        on_unknown_base=OnOutcome.DENY,
        on_lookup_failure=OnOutcome.DENY,
        stale_base=OnOutcome.WARN,
    )
    assert compiled.bases_allowed is None and compiled.registries_allowed is None
    assert not compiled.lineage_declared and not compiled.needs_lineage


def test_apiserver_defaulted_policy_compiles_the_same_as_the_file() -> None:
    """What the apiserver stores (defaults filled in) means what the file meant."""
    assert compile_policy(policy({"mode": "Enforce"})) == compile_policy(policy())
    defaulted = policy(
        {"pinning": {"require": "None", "disallowedTags": ["latest"], "mutateToDigest": False}}
    )
    assert compile_policy(defaulted) == compile_policy(policy({"pinning": {}}))


def test_a_policy_without_pinning_judges_no_tag() -> None:
    """The ["latest"] default belongs to policies with a pinning section."""
    assert compile_policy(policy()).pinning.disallowed_tags.patterns == ()


@pytest.mark.parametrize(
    ("doc", "field", "expected"),
    [
        (policy({"lineage": {}}), "lineage_declared", True),
        (policy({"lineage": {}}), "lineage", LineageSettings()),
        (policy({"pinning": {}}), "pinning", Pinning(disallowed_tags=GlobSet(("latest",)))),
        (
            policy({"pinning": {"disallowedTags": []}}),
            "pinning",
            Pinning(disallowed_tags=GlobSet(())),
        ),
        (policy({"mode": "Audit"}), "mode", Mode.AUDIT),
        (policy({"match": {"namespaces": [], "excludeNamespaces": []}}), "match", Match()),
        (policy({"exclude": {"images": []}}), "exclude_images", None),
        (
            policy(
                {
                    "bases": {
                        "allowed": [
                            {"image": "docker.io/library/python", "tags": [], "digests": []}
                        ]
                    }
                }
            ),
            "bases_allowed",
            (BaseEntry(image=GlobSet(("docker.io/library/python",))),),
        ),
        (policy({"bases": {"deprecated": []}}), "bases_deprecated", ()),
        (
            policy({"lineage": {"maxBaseAge": "12h"}}),
            "lineage",
            LineageSettings(max_base_age=dt.timedelta(hours=12)),
        ),
        (
            policy({"lineage": {"maxBaseAge": "26w"}}),
            "lineage",
            LineageSettings(max_base_age=dt.timedelta(weeks=26)),
        ),
        (policy({"lineage": {"maxDepth": 0}}), "lineage", LineageSettings(max_depth=0)),
        (policy(kind="BaseImagePolicy"), "namespace", "default"),
        (
            policy(kind="BaseImagePolicy", metadata={"name": "p", "namespace": "team-a"}),
            "key",
            "team-a/p",
        ),
        (policy(metadata={"name": "p", "namespace": "ignored"}), "namespace", None),
        (policy(metadata={"name": "p", "uid": "u-1", "generation": 3}), "uid", "u-1"),
        (policy(metadata={"name": "p", "uid": "u-1", "generation": 3}), "generation", 3),
        (
            policy(
                {
                    "bases": {
                        "deprecated": [
                            {"image": "docker.io/library/python", "replacement": "python:3.12-slim"}
                        ]
                    }
                }
            ),
            "bases_deprecated",
            (
                DeprecatedEntry(
                    image=GlobSet(("docker.io/library/python",)),
                    replacement="docker.io/library/python:3.12-slim",
                ),
            ),
        ),
        (
            policy(
                {
                    "match": {
                        "objectSelector": {
                            "matchLabels": {"tier": "web", "app": "shop"},
                            "matchExpressions": [
                                {"key": "track", "operator": "NotIn", "values": ["canary"]},
                                {"key": "legacy", "operator": "Exists"},
                            ],
                        }
                    }
                }
            ),
            "match",
            Match(
                object_selector=LabelSelector(
                    match_labels=(("app", "shop"), ("tier", "web")),
                    match_expressions=(
                        LabelRequirement("track", "NotIn", frozenset({"canary"})),
                        LabelRequirement("legacy", "Exists"),
                    ),
                )
            ),
        ),
    ],
    ids=[
        "lineage-section-declares",
        "lineage-defaults",
        "pinning-defaults",
        "no-disallowed-tags",
        "mode",
        "empty-namespace-lists-do-not-constrain",
        "empty-exclude",
        "empty-tags-and-digests-mean-any",
        "empty-deprecated",
        "hours",
        "weeks",
        "depth-zero",
        "namespaced-defaults-to-default",
        "namespaced-key",
        "cluster-kind-has-no-namespace",
        "uid",
        "generation",
        "replacement-is-normalized",
        "label-selector",
    ],
)
def test_compiled_fields(doc: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(compile_policy(doc), field) == expected


def test_waivers_keep_their_index_and_dates() -> None:
    compiled = compile_policy(
        policy(
            {
                "exceptions": [
                    {"namespaces": ["payments"], "until": "2026-03-31", "reason": "PAY-123"},
                    {"images": ["docker.io/acme/*"], "until": "2024-02-29"},
                ]
            }
        )
    )
    assert compiled.waivers == (
        Waiver(
            images=None,
            namespaces=GlobSet(("payments",)),
            until=dt.date(2026, 3, 31),
            reason="PAY-123",
            index=0,
        ),
        Waiver(
            images=GlobSet(("docker.io/acme/*",)),
            namespaces=None,
            until=dt.date(2024, 2, 29),
            reason="",
            index=1,
        ),
    )


def test_yaml_dates_and_read_only_mappings_compile() -> None:
    doc = yaml.safe_load(
        """
        apiVersion: baseguard.io/v1alpha1
        kind: BaseImagePolicy
        metadata: {name: p, namespace: shop}
        spec:
          exceptions: [{namespaces: [shop], until: 2026-03-31}]
          bases:
            deprecated: [{image: docker.io/library/node, enforceAfter: 2025-04-30}]
        """
    )
    compiled = compile_policy(MappingProxyType(doc))
    assert compiled.waivers[0].until == dt.date(2026, 3, 31)
    assert compiled.bases_deprecated[0].enforce_after == dt.date(2025, 4, 30)


# --- invalid policies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            policy({"registries": {"allowed": ["Docker.io/*"]}}),
            [
                "spec.registries.allowed[0]: bad glob 'Docker.io/*': 'D' cannot occur in a repository pattern (names are lower case: 'docker.io/*')"
            ],
        ),
        (
            policy({"registries": {"allowed": ["docker.io/library/*", "library/*"]}}),
            [
                "spec.registries.allowed[1]: 'library/*' never matches: names are normalized with their registry, write 'docker.io/library/*'"
            ],
        ),
        (
            policy({"registries": {"allowed": ["ghcr.io"]}}),
            [
                "spec.registries.allowed[0]: 'ghcr.io' names a registry, not a repository: write 'ghcr.io/*'"
            ],
        ),
        (
            policy({"bases": {"allowed": [{"image": "python"}]}}),
            [
                "spec.bases.allowed[0].image: 'python' never matches: names are normalized with their registry, write 'docker.io/library/python'"
            ],
        ),
        (
            policy({"bases": {"deprecated": [{"image": "docker.io/library/python:3.8"}]}}),
            [
                "spec.bases.deprecated[0].image: 'docker.io/library/python:3.8' has a tag, but this is a repository pattern: write 'docker.io/library/python' and put the tag in 'tags'"
            ],
        ),
        (
            policy(
                {
                    "bases": {
                        "allowed": [{"image": "docker.io/library/python", "tags": ["3.12@sha"]}]
                    }
                }
            ),
            [
                "spec.bases.allowed[0].tags[0]: bad glob '3.12@sha': '@' cannot occur in a tag pattern"
            ],
        ),
        (
            policy({"exclude": {"images": ["busybox:1.36"]}}),
            [
                "spec.exclude.images[0]: 'busybox:1.36' never matches: names are normalized with their registry, write 'docker.io/library/busybox:1.36'"
            ],
        ),
        (
            policy({"exceptions": [{"images": ["acme/legacy-*"], "until": "2026-01-01"}]}),
            [
                "spec.exceptions[0].images[0]: 'acme/legacy-*' never matches: names are normalized with their registry, write 'docker.io/acme/legacy-*'"
            ],
        ),
        (
            policy({"exceptions": [{"namespaces": ["payments"], "until": "2026-02-30"}]}),
            [
                "spec.exceptions[0].until: '2026-02-30' is not a calendar date: day is out of range for month"
            ],
        ),
        (
            policy({"exceptions": [{"namespaces": ["payments"], "until": "2025-02-29"}]}),
            [
                "spec.exceptions[0].until: '2025-02-29' is not a calendar date: day is out of range for month"
            ],
        ),
        (
            policy(
                {
                    "bases": {
                        "deprecated": [
                            {"image": "docker.io/library/python", "enforceAfter": "2025-13-01"}
                        ]
                    }
                }
            ),
            [
                "spec.bases.deprecated[0].enforceAfter: '2025-13-01' is not a calendar date: month must be in 1..12"
            ],
        ),
        (
            policy({"exceptions": [{"namespaces": ["payments"], "until": "next week"}]}),
            ["spec.exceptions[0].until: 'next week' is not a date: expected YYYY-MM-DD"],
        ),
        (
            policy({"mode": "Block", "lineage": {"staleBase": "deny"}}),
            [
                "spec.mode: unsupported value 'Block': must be one of Enforce, Warn, Audit",
                "spec.lineage.staleBase: unsupported value 'deny': must be one of Deny, Warn, Allow",
            ],
        ),
        (
            policy({"pinning": {"mutatetoDigest": True}}),
            ["spec.pinning.mutatetoDigest: unknown field (did you mean 'mutateToDigest'?)"],
        ),
        (
            policy({"lineage": {"catalog": ["docker.io/library/python:3.12-slim", "Python:3.12"]}}),
            [
                "spec.lineage.catalog[1]: invalid reference 'Python:3.12': repository name must be lower case"
            ],
        ),
        (
            policy({"lineage": {"catalog": ["python@sha256:abc"]}}),
            [
                "spec.lineage.catalog[0]: invalid reference 'python@sha256:abc': a sha256 digest is 64 lower-case hex characters"
            ],
        ),
        (
            policy(
                {
                    "bases": {
                        "deprecated": [
                            {"image": "docker.io/library/python", "replacement": "python 3.12"}
                        ]
                    }
                }
            ),
            [
                "spec.bases.deprecated[0].replacement: invalid reference 'python 3.12': contains white space"
            ],
        ),
        (
            policy(
                {
                    "bases": {
                        "allowed": [
                            {
                                "image": "docker.io/library/python",
                                "digests": [DIGEST_A, "sha256:" + "A" * 64],
                            }
                        ]
                    }
                }
            ),
            [
                "spec.bases.allowed[0].digests[1]: 'sha256:"
                + "A" * 64
                + "' is not a digest: expected sha256:, sha384: or sha512: and lower-case hex characters"
            ],
        ),
        (
            policy({"lineage": {"maxBaseAge": "0d"}}),
            ["spec.lineage.maxBaseAge: '0d' must be longer than zero"],
        ),
        (
            policy(
                {
                    "match": {
                        "objectSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}
                    }
                }
            ),
            [
                "spec.match.objectSelector.matchExpressions[0].values: must not be empty when operator is In"
            ],
        ),
        (
            policy(
                {
                    "match": {
                        "objectSelector": {
                            "matchExpressions": [
                                {"key": "tier", "operator": "Exists", "values": ["a"]}
                            ]
                        }
                    }
                }
            ),
            [
                "spec.match.objectSelector.matchExpressions[0].values: must be empty when operator is Exists"
            ],
        ),
        (
            policy({"match": {"namespaceSelector": {"matchLabels": {"team name": "a"}}}}),
            [
                "spec.match.namespaceSelector.matchLabels[team name]: invalid label key 'team name': at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ],
        ),
        (
            policy({"match": {"namespaceSelector": {"matchLabels": {"team": "-a"}}}}),
            [
                "spec.match.namespaceSelector.matchLabels.team: invalid label value '-a': at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ],
        ),
        (
            policy(apiVersion="baseguard.io/v1", kind="BaseImagePolicy", metadata={}),
            [
                "apiVersion: expected 'baseguard.io/v1alpha1', got 'baseguard.io/v1'",
                "metadata.name: required field is missing",
            ],
        ),
        (
            policy(kind="ImagePolicy"),
            [
                "kind: unsupported kind 'ImagePolicy': must be ClusterBaseImagePolicy or BaseImagePolicy"
            ],
        ),
    ],
    ids=[
        "upper-case-glob",
        "glob-without-registry",
        "registry-without-repository",
        "short-base-name",
        "base-image-with-tag",
        "tag-glob-alphabet",
        "short-image-name",
        "waiver-image-without-registry",
        "impossible-date",
        "not-a-leap-year",
        "month-13",
        "not-a-date",
        "unknown-enums",
        "unknown-field",
        "bad-catalog-reference",
        "bad-catalog-digest",
        "bad-replacement",
        "bad-digest",
        "zero-duration",
        "in-without-values",
        "exists-with-values",
        "bad-label-key",
        "bad-label-value",
        "wrong-api-version-and-no-name",
        "wrong-kind",
    ],
)
def test_check_policy_reports_each_mistake_at_its_field(
    doc: dict[str, Any], expected: list[str]
) -> None:
    assert [str(e) for e in check_policy(doc)] == expected


def test_schema_errors_come_first_and_are_not_repeated() -> None:
    doc = policy(
        {
            "lineage": {"catalog": ["Python"], "maxBaseAge": "1 year"},
            "exceptions": [
                {"namespaces": ["a"], "until": "2026-02-30"},
                {"namespaces": ["b"], "until": "soon"},
            ],
        }
    )
    assert [str(e) for e in check_policy(doc)] == [
        "spec.lineage.maxBaseAge: '1 year' is not a duration: expected a number and a unit h, d or w (e.g. 180d)",
        "spec.exceptions[1].until: 'soon' is not a date: expected YYYY-MM-DD",
        "spec.lineage.catalog[0]: invalid reference 'Python': repository name must be lower case",
        "spec.exceptions[0].until: '2026-02-30' is not a calendar date: day is out of range for month",
    ]
    assert [str(e) for e in check_policy(doc)][:2] == [str(e) for e in validate_document(doc)]


@pytest.mark.parametrize(
    "doc",
    [
        policy({"lineage": "deep", "bases": {"allowed": "python"}, "exceptions": {"until": 1}}),
        policy(
            {"match": {"namespaceSelector": {"matchLabels": ["a"], "matchExpressions": [["x"]]}}}
        ),
        policy({"bases": {"allowed": [None, {"image": 3, "digests": [1]}], "deprecated": [[]]}}),
        policy(
            {
                "pinning": {"disallowedTags": [None]},
                "lineage": {"platforms": [1], "catalog": [None]},
            }
        ),
        policy(None, metadata=None, kind=None),
    ],
    ids=[
        "sections-of-wrong-type",
        "selector-of-wrong-type",
        "entries-of-wrong-type",
        "items-of-wrong-type",
        "nulls",
    ],
)
def test_wrong_types_are_reported_never_crash(doc: dict[str, Any]) -> None:
    errors = check_policy(doc)
    assert errors and all(isinstance(e, PolicyError) for e in errors)
    with pytest.raises(PolicyError):
        compile_policy(doc)


def test_compile_policy_raises_the_first_error_with_path_and_reason() -> None:
    doc = policy({"mode": "Strict", "pinning": {"require": "Tag"}})
    with pytest.raises(PolicyError) as raised:
        compile_policy(doc)
    assert raised.value.path == "spec.mode"
    assert raised.value.reason == "unsupported value 'Strict': must be one of Enforce, Warn, Audit"
    assert str(raised.value) == str(check_policy(doc)[0])


def _expectations(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :] for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_report_what_they_expect(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect:' lines"
    assert [str(e) for e in check_policy(load(path))] == expected


# --- catalog_references ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ()),
        (
            {
                "lineage": {
                    "catalog": [
                        "python:3.12-slim",
                        "docker.io/library/python:3.12-slim",
                        "alpine:3.20",
                    ]
                }
            },
            (
                Reference("docker.io", "library/python", "3.12-slim"),
                Reference("docker.io", "library/alpine", "3.20"),
            ),
        ),
        (
            {
                "lineage": {"catalog": ["alpine:3.20"]},
                "bases": {
                    "allowed": [
                        {
                            "image": "registry.example.com/golden/base",
                            "digests": [DIGEST_B, DIGEST_A],
                        },
                        {"image": "registry.example.com/golden/*", "digests": [DIGEST_A]},
                        {"image": "registry.example.com/golden/other"},
                    ],
                    "deprecated": [{"image": "docker.io/library/debian", "digests": [DIGEST_A]}],
                },
            },
            (
                Reference("docker.io", "library/alpine", "3.20"),
                Reference("registry.example.com", "golden/base", None, DIGEST_A),
                Reference("registry.example.com", "golden/base", None, DIGEST_B),
                Reference("docker.io", "library/debian", None, DIGEST_A),
            ),
        ),
    ],
    ids=["none", "catalog-deduplicated", "literal-entries-with-digests"],
)
def test_catalog_references(spec: dict[str, Any], expected: tuple[Reference, ...]) -> None:
    assert catalog_references(compile_policy(policy(spec))) == expected
