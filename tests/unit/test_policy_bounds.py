"""Bounds a policy must keep to compile: durations, dates, brackets in globs, and pattern counts.

Each value here used to pass every check and then break later: ``maxBaseAge:
900000000d`` raised ``OverflowError`` at evaluation (every review of the
namespace an internal error), ``99999999999d`` at compilation (a traceback in
``policy validate``, a reload that failed in ``serve``), ``[abc`` was a glob
that could never match, and 20,000 globs cost 55 ms per image.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.policy_builders import NOW, img, lvl, plat

from controller.errors import PolicyError
from controller.policy.compile import check_policy, compile_policy
from controller.policy.evaluate import evaluate
from controller.policy.facts import ObjectFacts
from controller.policy.model import (
    MAX_PATTERNS_PER_NAMESPACE,
    MAX_PATTERNS_PER_POLICY,
    CompiledPolicy,
)
from controller.policy.schema import validate_document
from controller.policy.store import PolicyStore
from controller.reference import parse

DAY_MAX = "36525d"
PY312 = "docker.io/library/python:3.12-slim"


def policy(spec: Any, *, name: str = "p", namespace: str | None = None) -> dict[str, Any]:
    kind = "BaseImagePolicy" if namespace else "ClusterBaseImagePolicy"
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "baseguard.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def errors(doc: dict[str, Any]) -> list[str]:
    return [str(e) for e in check_policy(doc)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("900000000d", "'900000000d' is longer than 100 years: at most 36525d, 876600h or 5217w"),
        ("99999999999d", "'99999999999d' is longer than 100 years: at most 36525d, 876600h or 5217w"),
        ("36526d", "'36526d' is longer than 100 years: at most 36525d, 876600h or 5217w"),
        ("876601h", "'876601h' is longer than 100 years: at most 36525d, 876600h or 5217w"),
        ("5218w", "'5218w' is longer than 100 years: at most 36525d, 876600h or 5217w"),
        ("0000000000000000001d", "is 20 characters long, more than the 16 allowed"),
    ],
)
def test_a_duration_past_100_years_is_refused_at_its_field(value: str, message: str) -> None:
    doc = policy({"lineage": {"maxBaseAge": value}})
    assert errors(doc) == [f"spec.lineage.maxBaseAge: {message}"]
    with pytest.raises(PolicyError) as raised:  # never OverflowError
        compile_policy(doc)
    assert raised.value.path == "spec.lineage.maxBaseAge"


@pytest.mark.parametrize("value", [DAY_MAX, "876600h", "5217w", "180d"])
def test_durations_up_to_100_years_compile_and_evaluate(value: str) -> None:
    """The longest allowed age is evaluated against a base of year 1 without overflowing."""
    compiled = compile_policy(policy({"lineage": {"maxBaseAge": value, "onUnknownBase": "Allow"}}))
    old = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    image = img("ghcr.io/acme/app:1.0.0", plat("linux/amd64", "ghcr.io/acme/app:1.0.0", lvl(PY312, created=old)))
    obj = ObjectFacts(kind="Deployment", name="api", namespace="shop")
    [result] = evaluate([compiled], obj, [image], now=NOW)
    assert [v.rule.value for v in result.violations] == ["stale-base"]
    assert "created 0001-01-01" in result.violations[0].message


@pytest.mark.parametrize(
    ("field", "value"),
    [("until", "9999-12-31"), ("until", "1969-12-31"), ("enforceAfter", "3000-01-01")],
)
def test_a_date_out_of_range_is_refused_at_its_field(field: str, value: str) -> None:
    if field == "until":
        doc, path = policy({"exceptions": [{"namespaces": ["a"], "until": value}]}), "spec.exceptions[0].until"
    else:
        doc = policy({"bases": {"deprecated": [{"image": "docker.io/library/python", field: value}]}})
        path = "spec.bases.deprecated[0].enforceAfter"
    assert errors(doc) == [
        f"{path}: {value!r} is out of range: a date must be between 1970-01-01 and 2999-12-31"
    ]


BRACKETS = (
    "globs support only * (any run of characters) and ? (one character), with no [...] classes; "
    "'[' and ']' are literal and may only enclose an IPv6 registry host at the start, e.g. [::1]:5000/*"
)


@pytest.mark.parametrize(
    ("spec", "path", "pattern"),
    [
        ({"registries": {"allowed": ["docker.io/library/[abc"]}}, "spec.registries.allowed[0]", "docker.io/library/[abc"),
        ({"registries": {"allowed": ["docker.io/library/[ab]c"]}}, "spec.registries.allowed[0]", "docker.io/library/[ab]c"),
        ({"exclude": {"images": ["docker.io/acme/app]"]}}, "spec.exclude.images[0]", "docker.io/acme/app]"),
        ({"bases": {"allowed": [{"image": "[::1/python"}]}}, "spec.bases.allowed[0].image", "[::1/python"),
    ],
)
def test_a_bracket_outside_an_ipv6_host_is_refused(spec: dict[str, Any], path: str, pattern: str) -> None:
    assert errors(policy(spec)) == [f"{path}: bad glob {pattern!r}: {BRACKETS}"]


def test_an_ipv6_registry_host_glob_is_literal_and_matches() -> None:
    compiled = compile_policy(policy({"registries": {"allowed": ["[::1]:5000/*"]}}))
    assert compiled.registries_allowed is not None
    assert compiled.registries_allowed.matches(parse("[::1]:5000/acme/app:1").name)
    assert not compiled.registries_allowed.matches(parse("docker.io/library/python:3").name)


def test_every_crd_list_has_max_items() -> None:
    """A 1 MB policy of 20,000 globs used to be accepted by the apiserver."""
    from controller.policy.schema import openapi_schema

    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "array" and "maxItems" not in node:
                missing.append(where)
            if node.get("type") == "object" and "additionalProperties" in node and "maxProperties" not in node:
                missing.append(where)
            for key, child in node.items():
                walk(child, f"{where}.{key}")

    from controller.policy.exceptions import exception_schema

    walk(openapi_schema(), "")
    walk(exception_schema(), "exception")
    assert missing == []
    doc = policy({"registries": {"allowed": [f"docker.io/acme/app{i}" for i in range(513)]}})
    assert [str(e) for e in validate_document(doc)] == [
        "spec.registries.allowed: has 513 entries, more than the 512 allowed"
    ]


def test_an_exceptions_lists_and_strings_are_bounded() -> None:
    """A team's exception is tried for every image of its namespace: its lists are short."""
    import datetime as dt

    from controller.policy.exceptions import check_exception

    doc = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "BaseImagePolicyException",
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": {
            "policy": {"kind": "ClusterBaseImagePolicy", "name": "p"},
            "images": [f"docker.io/acme/app{i}" for i in range(65)],
            "until": "2026-03-31",
            "reason": "r" * 1025,
        },
    }
    assert [str(e) for e in check_exception(doc, today=dt.date(2026, 3, 1))] == [
        "spec.images: has 65 entries, more than the 64 allowed",
        "spec.reason: is 1025 characters long, more than the 1024 allowed",
    ]


def _spread(count: int, start: int = 0) -> dict[str, Any]:
    """``count`` patterns in lists that each stay under their maxItems."""
    names = [f"docker.io/acme/app{i}" for i in range(start, start + count)]
    return {
        "registries": {"allowed": names[:500]},
        "exclude": {"images": names[500:1000]},
        "bases": {"deprecated": [{"image": n} for n in names[1000:]]},
    }


def test_a_policy_past_its_pattern_cap_is_refused_at_the_first_pattern_past_it() -> None:
    assert errors(policy(_spread(MAX_PATTERNS_PER_POLICY))) == []
    [error] = errors(policy(_spread(MAX_PATTERNS_PER_POLICY + 1)))
    assert error == (
        f"spec.bases.deprecated[0].image: the policy holds {MAX_PATTERNS_PER_POLICY + 1} patterns "
        f"(globs, digests and catalog entries together), more than the {MAX_PATTERNS_PER_POLICY} "
        "one policy may hold: every image is matched against them; use wider globs "
        "(docker.io/acme/*) or split the policy"
    )


def test_the_store_refuses_the_policy_that_crosses_its_namespace_cap() -> None:
    half = MAX_PATTERNS_PER_NAMESPACE // 2
    first = compile_policy(policy(_spread(half), name="one", namespace="team-a"))
    second = compile_policy(policy(_spread(half, half), name="two", namespace="team-a"))
    third = compile_policy(policy(_spread(10), name="three", namespace="team-a"))
    elsewhere = compile_policy(policy(_spread(half), name="one", namespace="team-b"))
    store = PolicyStore()
    for item in (first, second, elsewhere):
        store.upsert(f"BaseImagePolicy/{item.namespace}/{item.name}", item)
    snapshot = store.upsert("BaseImagePolicy/team-a/three", third)
    assert [p.key for p in snapshot.policies] == ["team-a/one", "team-a/two", "team-b/one"]
    assert snapshot.errors["BaseImagePolicy/team-a/three"] == (
        f"spec.registries.allowed[0]: the BaseImagePolicy objects of namespace team-a would hold "
        f"{MAX_PATTERNS_PER_NAMESPACE + 10} patterns together ({MAX_PATTERNS_PER_NAMESPACE} in the "
        f"others, 10 in this one), more than the {MAX_PATTERNS_PER_NAMESPACE} one namespace may hold; "
        "this policy is not applied: use wider globs, or merge and shorten the namespace's policies"
    )
    # Removing one makes room; the same replace() as serve's reload applies the same bound.
    store.remove("BaseImagePolicy/team-a/two")
    assert "team-a/three" in [p.key for p in store.upsert("BaseImagePolicy/team-a/three", third).policies]
    replaced = store.replace(
        {f"BaseImagePolicy/team-a/{p.name}": p for p in (first, second, third)} | {"x": elsewhere}
    )
    # In key order, whatever order they came in: "three" fits, "two" is the one that crosses.
    assert [p.key for p in replaced.policies] == ["team-a/one", "team-a/three", "team-b/one"]
    assert list(replaced.errors) == ["BaseImagePolicy/team-a/two"]


def test_a_glob_of_more_than_16_wildcards_is_refused() -> None:
    """Each ``*`` is a search per name matched, each ``?`` run an expression compiled."""
    many = "docker.io/" + "*a" * 17
    assert errors(policy({"registries": {"allowed": [many]}})) == [
        f"spec.registries.allowed[0]: bad glob {many!r}: 17 wildcards (* and ?), more than the 16 a glob may hold"
    ]
    assert errors(policy({"registries": {"allowed": ["docker.io/" + "*a" * 8 + "?" * 8]}})) == []


class Clock:
    """A CPU clock that advances by ``step`` each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(
    ("on_failure", "verdict"), [("Deny", "deny"), ("Warn", "warn"), ("Allow", "allow")]
)
def test_past_the_cpu_bound_the_policies_not_reached_say_not_evaluated(on_failure: str, verdict: str) -> None:
    from controller.lineage.budget import Bounds, ReviewBudget

    first = compile_policy(policy({"pinning": {"require": "Version"}}, name="a-pins"))
    second = compile_policy(
        policy({"registries": {"allowed": ["docker.io/acme/*"]}, "lineage": {"onLookupFailure": on_failure}}, name="b-regs")
    )
    account = ReviewBudget(Bounds(max_cpu_per_image=0.25, max_cpu_per_review=10.0))
    image = img("ghcr.io/acme/app:1.0.0")
    obj = ObjectFacts(kind="Deployment", name="api", namespace="shop")
    # Each read of the clock is 0.2 s: the first policy is judged, the second is past 0.25 s.
    [result] = evaluate([first, second], obj, [image], now=NOW, account=account, clock=Clock(0.2))
    assert result.verdict.value == verdict
    assert result.policies == ("a-pins", "b-regs")
    assert {r.value for r in result.not_evaluated} == {  # what b-regs judges (a lineage section)
        "registry-not-allowed", "tag-mismatch", "deprecated-base", "base-not-allowed",
        "unknown-base", "lineage-mismatch", "stale-base",
    }
    if on_failure == "Allow":
        assert result.violations == ()
    else:
        [violation] = result.violations
        assert (violation.policy, violation.rule.value) == ("b-regs", "lookup-failed")
        assert violation.message == (
            "image ghcr.io/acme/app:1.0.0 was not judged under this policy: judging this image took "
            "more than 0.25s of CPU (max_cpu_per_image = 0.25); not evaluated (lineage.onLookupFailure: "
            f"{on_failure}); shorten the policies' pattern lists (wider globs), or split the object "
            "into fewer images"
        )
    assert account.cpu == pytest.approx(0.6)  # charged: from the first read to the last


def test_once_the_review_is_spent_no_image_is_judged() -> None:
    from controller.lineage.budget import Bounds, ReviewBudget

    regs = compile_policy(policy({"registries": {"allowed": ["docker.io/acme/*"]}}))
    account = ReviewBudget(Bounds(max_cpu_per_review=1.0))
    account.charge_cpu(1.0)
    obj = ObjectFacts(kind="Deployment", name="api", namespace="shop")
    results = evaluate([regs], obj, [img("docker.io/acme/a:1"), img("ghcr.io/x/b:1")], now=NOW, account=account)
    assert [r.verdict.value for r in results] == ["deny", "deny"]
    assert all(
        "this review used its 1s of evaluation CPU (max_cpu_per_review = 1); not evaluated"
        in r.violations[0].message
        for r in results
    )


def test_the_operator_marks_the_policy_over_its_namespace_cap_not_ready() -> None:
    from controller.operator.policies import PolicyBook
    from controller.operator.status import desired_status

    book = PolicyBook(PolicyStore())
    half = MAX_PATTERNS_PER_NAMESPACE // 2
    for index, name in enumerate(("one", "two", "three")):
        body = policy(_spread(half, index * half), name=name, namespace="team-a")
        body["metadata"] |= {"uid": f"uid-{name}", "generation": 1}
        record, _ = book.apply(body)
    assert record.policy is None
    status = desired_status(record, now=NOW, in_force=book.in_force(record.key))
    [ready] = status["conditions"]
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        "spec.exclude.images[0]: the BaseImagePolicy objects of namespace team-a would hold 3000 patterns"
    )
    assert ready["message"].endswith("; not in force")
    assert [p.name for p in book.store.snapshot.policies] == ["one", "two"]


def _library() -> tuple[CompiledPolicy, ...]:
    root = Path(__file__).resolve().parents[2] / "policies"
    return tuple(
        compile_policy(doc)
        for path in sorted(root.glob("*/*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "ClusterBaseImagePolicy"
    )


async def test_cpu_is_counted_per_object_so_check_and_the_audit_judge_every_object() -> None:
    """``check`` and the audit judge many objects in one call; each gets a review's bound."""
    from controller.assess import Assessor
    from controller.lineage.budget import Bounds
    from controller.workloads import extract

    def pod(index: int) -> dict[str, Any]:
        containers = [{"name": f"c{j}", "image": f"docker.io/library/python:3.{j}.1-slim"} for j in range(10)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{index}", "namespace": "shop"},
                "spec": {"containers": containers}}

    library = _library()
    workloads = [w for i in range(150) for w in extract(pod(i))]
    assessor = Assessor(None, bounds=Bounds(max_cpu_per_review=0.25))  # each pod takes a few ms
    results = await assessor.assess(workloads, library, now=NOW)
    assert len(results) == 150
    cut = [v.message for r in results for i in r.results for v in i.violations if "evaluation CPU" in v.message]
    assert cut == []


def test_a_refused_policy_is_tried_again_on_its_next_event_once_there_is_room() -> None:
    from controller.operator.policies import PolicyBook

    book = PolicyBook(PolicyStore())
    half = MAX_PATTERNS_PER_NAMESPACE // 2
    bodies = {}
    for index, name in enumerate(("one", "two", "three")):
        bodies[name] = policy(_spread(half, index * half), name=name, namespace="team-a")
        bodies[name]["metadata"] |= {"uid": f"uid-{name}", "generation": 1}
        book.apply(bodies[name])
    book.remove(bodies["two"])
    record, compiled = book.apply(bodies["three"])  # same generation: a resync, say
    assert compiled and record.policy is not None and record.errors == ()
    assert [p.name for p in book.store.snapshot.policies] == ["one", "three"]
