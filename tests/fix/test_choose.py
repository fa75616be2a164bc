"""``--update``'s choice: the policy's replacement, else the newest allowed tag of the same kind."""

from __future__ import annotations

from typing import Any

import pytest

from controller.fix.choose import deprecation, newest_tag, tag_shape
from controller.policy.compile import compile_policy
from controller.policy.model import CompiledPolicy
from controller.reference import parse

TAGS = [
    "3.8-slim", "3.8.10-slim", "3.8", "3.12-slim", "3.12.7-slim", "3.13-slim", "3.13.0-slim",
    "3.13.1-slim", "3.13.1", "3.13-alpine", "3.13-alpine3.20", "3.13-alpine3.21", "3.8-alpine",
    "3.8-alpine3.18", "3.14-rc-slim", "3.14.0rc1-slim", "3.14-slim", "slim", "latest", "bookworm",
]


def policy(spec: dict[str, Any]) -> CompiledPolicy:
    return compile_policy(
        {"apiVersion": "baseguard.io/v1alpha1", "kind": "ClusterBaseImagePolicy",
         "metadata": {"name": "p"}, "spec": spec}
    )


EOL = policy({"bases": {"deprecated": [
    {"image": "docker.io/library/python", "tags": ["3.8*"], "reason": "EOL"},
    {"image": "docker.io/library/python", "tags": ["3.14*"], "reason": "not released"},
]}})
ALLOW_313 = policy({"bases": {"allowed": [{"image": "docker.io/library/python", "tags": ["3.12*", "3.13*"]}]}})


@pytest.mark.parametrize(
    ("current", "policies", "chosen"),
    [
        ("python:3.8-slim", [EOL], "3.13-slim"),  # 3.14-slim is newer, but deprecated
        ("python:3.8-slim", [], "3.14-slim"),  # no policy: the newest of the variant
        ("python:3.8-slim", [EOL, ALLOW_313], "3.13-slim"),
        ("python:3.8.10-slim", [EOL], "3.13.1-slim"),  # precision kept: never 3.13-slim
        ("python:3.8", [EOL], None),  # a bare 3.8: 3.13.1 is finer, and no 3.13 tag exists
        ("python:3.8-alpine", [EOL], "3.13-alpine"),  # never -slim, never a bare tag
        ("python:3.8-alpine3.18", [EOL], "3.13-alpine3.21"),  # Alpine stays Alpine, newest release
        ("python:3.13-slim", [EOL], None),  # already the newest allowed
        ("python:slim", [EOL], None),  # names no version: nothing to count from
    ],
)
def test_newest_allowed_tag_of_the_same_variant_and_precision(
    current: str, policies: list[CompiledPolicy], chosen: str | None
) -> None:
    assert newest_tag(parse(current), TAGS, policies) == chosen


def test_an_allowlist_that_names_the_repository_bounds_the_choice() -> None:
    only_312 = policy({"bases": {"allowed": [{"image": "docker.io/library/python", "tags": ["3.12*"]}]}})
    assert newest_tag(parse("python:3.8-slim"), TAGS, [only_312]) == "3.12-slim"
    about_node = policy({"bases": {"allowed": [{"image": "docker.io/library/node"}]}})
    assert newest_tag(parse("python:3.8-slim"), TAGS, [about_node]) == "3.14-slim"


def test_disallowed_tags_and_registries_are_never_chosen() -> None:
    no_13 = policy({"pinning": {"disallowedTags": ["latest", "3.13*", "3.14*"]}})
    assert newest_tag(parse("python:3.8-slim"), TAGS, [no_13]) == "3.12-slim"
    elsewhere = policy({"registries": {"allowed": ["registry.example/*"]}})
    assert newest_tag(parse("python:3.8-slim"), TAGS, [elsewhere]) is None


def test_a_deprecated_entry_with_a_replacement_is_found_before_any_tag_is_counted() -> None:
    with_replacement = policy({"bases": {"deprecated": [
        {"image": "docker.io/library/python", "tags": ["3.8*"], "replacement": "python:3.12-slim"}
    ]}})
    entry = deprecation(parse("python:3.8-slim"), [with_replacement])
    assert entry is not None and entry.replacement == "docker.io/library/python:3.12-slim"
    assert deprecation(parse("python:3.12-slim"), [with_replacement]) is None


def test_tag_shapes() -> None:
    shape = tag_shape("v1.2.3-alpine3.18")
    assert shape is not None
    assert (shape.prefix, shape.version, shape.variant, shape.suffix_numbers) == ("v", (1, 2, 3), "-alpine#.#", (3, 18))
    assert tag_shape("latest") is None
    pre = tag_shape("3.14.0rc1-slim")
    assert pre is not None and pre.variant.startswith("~")  # a pre-release is no variant of 3.14.0
