"""The audit's decisions (pure): what is audited, counts, Events, PolicyReports, who uses a base."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from support.kube_objects import cluster_policy, ns_policy

from controller.assess import Assessor, WorkloadResult
from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source
from controller.operator.audit import events, plan, reports, uses
from controller.operator.audit.events import EventLedger
from controller.operator.audit.plan import AUDITED, Audited, ObjectRef, Pair
from controller.operator.audit.uses import UsesPattern
from controller.policy.compile import compile_policy
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.model import Action, RuleCode
from controller.policy.verdict import ImageResult, Violation
from controller.reference import parse
from controller.workloads import ContainerImage, Workload

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
RESOURCES = {r.kind: r for r in AUDITED}


def owner(kind: str, api_version: str = "apps/v1", *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": "x",
        "uid": "o",
        "controller": controller,
    }


def item(
    name: str,
    ns: str,
    image: str,
    *,
    owners: list[dict[str, Any]] | None = None,
    template: bool = True,
) -> dict[str, Any]:
    """A list item as the API sends it: no kind, no apiVersion."""
    spec = {"containers": [{"name": "app", "image": image}]}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}"}
    if owners:
        meta["ownerReferences"] = owners
    return {"metadata": meta, "spec": {"template": {"spec": spec}} if template else spec}


@pytest.mark.parametrize(
    ("owners", "skipped"),
    [
        (None, False),
        ([owner("Deployment")], True),
        ([owner("CronJob", "batch/v1")], True),
        ([owner("Rollout", "argoproj.io/v1alpha1")], False),
        ([owner("Deployment", controller=False)], False),
    ],
    ids=[
        "unowned",
        "deployment-owned",
        "cronjob-owned",
        "foreign-controller",
        "owner-not-controller",
    ],
)
def test_objects_controlled_by_an_audited_kind_are_judged_there(
    owners: list[dict[str, Any]] | None, skipped: bool
) -> None:
    assert plan.controlled_by_audited(item("rs", "a", "x", owners=owners)) is skipped


def test_audited_objects_fill_in_kind_and_keep_the_pod_spec() -> None:
    found = plan.audited_objects(
        RESOURCES["Pod"],
        [
            item("lone", "team-a", "nginx:1.27.0", template=False),
            item("child", "team-a", "nginx", owners=[owner("ReplicaSet")], template=False),
        ],
    )
    assert [a.ref for a in found] == [ObjectRef("v1", "Pod", "team-a", "lone", "uid-lone")]
    assert found[0].workload.images[0].image == "nginx:1.27.0"
    assert found[0].pod_spec["containers"][0]["name"] == "app"


POLICIES = [
    compile_policy(cluster_policy("no-latest", {"pinning": {"disallowedTags": ["latest"]}})),
    compile_policy(
        cluster_policy("hub-only", {"mode": "Warn", "registries": {"allowed": ["docker.io/*"]}})
    ),
    compile_policy(
        ns_policy(
            "waived",
            "team-b",
            {
                "registries": {"allowed": ["docker.io/*"]},
                "exceptions": [{"images": ["ghcr.io/*"], "until": "2026-12-31", "reason": "PAY-1"}],
            },
        )
    ),
]


async def pairs_of(*objects: tuple[str, dict[str, Any]]) -> list[Pair]:
    audited = [a for kind, obj in objects for a in plan.audited_objects(RESOURCES[kind], [obj])]
    results = await Assessor(None).assess([a.workload for a in audited], POLICIES, now=NOW)
    return list(zip(audited, results, strict=True))


@pytest.fixture
async def pairs() -> list[Pair]:
    return await pairs_of(
        ("Deployment", item("web", "team-a", "nginx:latest")),
        ("Deployment", item("api", "team-a", "ghcr.io/acme/api:1.0.0")),
        ("Deployment", item("ok", "team-a", "nginx:1.27.0")),
        ("StatefulSet", item("db", "team-b", "ghcr.io/acme/db:2.0.0")),
    )


def test_policy_counts(pairs: list[Pair]) -> None:
    counts = plan.policy_counts(pairs, POLICIES)
    assert {k: (c.objects, c.violations) for k, c in counts.items()} == {
        "ClusterBaseImagePolicy//no-latest": (4, 1),
        "ClusterBaseImagePolicy//hub-only": (4, 2),
        "BaseImagePolicy/team-b/waived": (1, 0),  # waived: applies, breaks nothing
    }


def test_one_event_per_finding_on_the_offending_object(pairs: list[Pair]) -> None:
    found = events.event_findings(pairs)
    assert sorted((f.ref.name, f.violation.policy, f.violation.rule.value) for f in found) == [
        ("api", "hub-only", "registry-not-allowed"),
        ("db", "hub-only", "registry-not-allowed"),
        ("web", "no-latest", "disallowed-tag"),
    ]
    web = next(f for f in found if f.ref.name == "web")
    body = events.event_body(web, now=NOW, first=NOW, count=1, instance="pod-a")
    assert body["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "team-a",
        "uid": "uid-web",
    }
    assert body["metadata"]["name"] == events.event_name(web)
    assert body["metadata"]["namespace"] == "team-a"
    assert (body["type"], body["reason"], body["count"]) == ("Warning", "PolicyViolation", 1)
    assert body["message"].startswith(
        "no-latest disallowed-tag (deny): container app nginx:latest: "
    )
    again = next(f for f in events.event_findings(pairs) if f.ref.name == "web")
    assert events.event_name(again) == events.event_name(web)  # the same finding, the same Event


def test_the_ledger_repeats_a_persisting_finding_only_after_the_interval() -> None:
    ledger = EventLedger(dt.timedelta(hours=1))
    assert ledger.due("k", NOW)
    assert ledger.next_count("k", NOW) == (NOW, 1)
    ledger.posted("k", first=NOW, now=NOW, count=1)
    assert not ledger.due("k", NOW + dt.timedelta(minutes=59))
    later = NOW + dt.timedelta(hours=1)
    assert ledger.due("k", later)
    assert ledger.next_count("k", later) == (NOW, 2)
    ledger.keep_only([])
    assert ledger.due("k", NOW)  # fixed, then broken again: told at once


def test_report_results_by_namespace(pairs: list[Pair]) -> None:
    results = reports.report_results(pairs, now=NOW)
    summary = {
        ns: sorted(
            (r["resources"][0]["name"], r["policy"], r["rule"], r["result"]) for r in entries
        )
        for ns, entries in results.items()
    }
    assert summary == {
        "team-a": [
            ("api", "hub-only", "registry-not-allowed", "warn"),
            ("api", "no-latest", "all-rules", "pass"),
            ("ok", "hub-only", "all-rules", "pass"),
            ("ok", "no-latest", "all-rules", "pass"),
            ("web", "hub-only", "all-rules", "pass"),
            ("web", "no-latest", "disallowed-tag", "fail"),
        ],
        "team-b": [
            ("db", "hub-only", "registry-not-allowed", "warn"),
            ("db", "no-latest", "all-rules", "pass"),
            ("db", "team-b/waived", "registry-not-allowed", "skip"),
        ],
    }
    fail = next(r for r in results["team-a"] if r["result"] == "fail")
    assert fail["source"] == "baseguard" and fail["scored"] is True and fail["severity"] == "high"
    assert fail["timestamp"] == {"seconds": int(NOW.timestamp()), "nanos": 0}
    assert fail["message"].startswith("app: ")
    assert fail["properties"] == {"containers": "app", "images": "nginx:latest", "action": "deny"}
    skip = next(r for r in results["team-b"] if r["result"] == "skip")
    assert skip["properties"]["waived"].startswith("waived until 2026-12-31: PAY-1")


def test_a_failed_lookup_is_an_error_result() -> None:
    ref = ObjectRef("v1", "Pod", "team-a", "p")
    facts = ImageFacts(
        image="reg.example.com/app:1", container="app", reference=parse("reg.example.com/app:1")
    )
    result = ImageResult(
        facts,
        (Violation("bases", RuleCode.LOOKUP_FAILED, Action.DENY, "registry did not answer"),),
        policies=("bases",),
    )
    image = ContainerImage("app", "reg.example.com/app:1", "/spec/containers/0/image")
    workload = Workload("Pod", "p", "team-a", images=(image,))
    pair = (
        Audited(ref, workload),
        WorkloadResult(workload, ObjectFacts("Pod", "p", "team-a"), (result,)),
    )
    (entry,) = reports.report_results([pair], now=NOW)["team-a"]
    assert (entry["rule"], entry["result"]) == ("lookup-failed", "error")


def entry(
    name: str, result: str, *, policy: str = "p", message: str = "m", seconds: int = 1
) -> dict[str, Any]:
    """A report result as :func:`reports.report_results` makes it (the fields the split reads)."""
    return {
        "policy": policy,
        "rule": "disallowed-tag" if result != "pass" else "all-rules",
        "result": result,
        "message": message,
        "resources": [{"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": "team-a"}],
        "timestamp": {"seconds": seconds, "nanos": 0},
    }


def big_namespace(objects: int, *, seconds: int = 1) -> list[dict[str, Any]]:
    out = []
    for i in range(objects):
        out.append(entry(f"pod-{i:05d}", "fail", message="x" * 300, seconds=seconds))
        out.append(entry(f"pod-{i:05d}", "pass", policy="q", seconds=seconds))
    return out


def test_a_large_namespace_is_split_into_bounded_parts() -> None:
    results = big_namespace(1200)
    bodies = reports.report_bodies("team-a", results)
    assert [b["metadata"]["name"] for b in bodies] == [
        "baseguard-audit",
        *(f"baseguard-audit-{i}" for i in range(2, len(bodies) + 1)),
    ]
    assert len(bodies) >= 3
    for body in bodies:
        assert (body["apiVersion"], body["kind"]) == ("wgpolicyk8s.io/v1alpha2", "PolicyReport")
        assert body["metadata"]["namespace"] == "team-a"
        assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "baseguard"}
        assert len(body["results"]) <= reports.MAX_REPORT_RESULTS
        assert len(json.dumps(body)) <= reports.MAX_REPORT_BYTES
        assert body["summary"]["fail"] + body["summary"]["pass"] == len(body["results"])
    # Nothing lost, every object's results in one part, the parts' summaries add up.
    assert sorted(json.dumps(r, sort_keys=True) for b in bodies for r in b["results"]) == sorted(
        json.dumps(r, sort_keys=True) for r in results
    )
    where = {}
    for i, body in enumerate(bodies):
        for r in body["results"]:
            assert where.setdefault(r["resources"][0]["name"], i) == i
    assert sum(b["summary"]["fail"] for b in bodies) == 1200
    assert reports.DROPPED_ANNOTATION not in bodies[0]["metadata"]["annotations"]
    assert reports.report_bodies(None, results[:2])[0]["kind"] == "ClusterPolicyReport"
    assert reports.report_bodies("team-a", []) == []


def test_the_content_digest_ignores_timestamps_and_nothing_else() -> None:
    first = reports.report_bodies("team-a", big_namespace(10, seconds=1))
    later = reports.report_bodies("team-a", big_namespace(10, seconds=999))
    digest = reports.DIGEST_ANNOTATION
    assert [b["metadata"]["annotations"][digest] for b in first] == [
        b["metadata"]["annotations"][digest] for b in later
    ]
    changed = big_namespace(10)
    changed[3]["result"] = "warn"
    assert (
        reports.report_bodies("team-a", changed)[0]["metadata"]["annotations"][digest]
        != first[0]["metadata"]["annotations"][digest]
    )
    other_api = reports.report_bodies("team-a", big_namespace(10), api=reports.OPENREPORTS)
    assert other_api[0]["kind"] == "Report"


def test_past_the_last_part_passes_go_first_and_the_loss_is_said() -> None:
    objects = reports.MAX_REPORT_PARTS * reports.MAX_REPORT_RESULTS // 2 + 10
    bodies = reports.report_bodies("team-a", big_namespace(objects))
    assert len(bodies) <= reports.MAX_REPORT_PARTS
    kept = [r for b in bodies for r in b["results"]]
    assert all(r["result"] == "fail" for r in kept)
    dropped = int(bodies[0]["metadata"]["annotations"][reports.DROPPED_ANNOTATION])
    assert dropped == 2 * objects - len(kept) and dropped >= objects


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("baseguard-audit", True),
        ("baseguard-audit-2", True),
        ("baseguard-audit-17", True),
        ("baseguard-audit-1", False),
        ("baseguard-audit-02", False),
        ("baseguard-audit-x", False),
        ("baseguard-audits", False),
        ("team-report", False),
        (None, False),
    ],
)
def test_only_part_names_are_ours(name: str | None, ours: bool) -> None:
    assert reports.is_part_name(name) is ours


@pytest.mark.parametrize(
    ("pattern", "reference", "matches"),
    [
        ("debian:buster", "docker.io/library/debian:buster", True),
        ("debian:buster", "docker.io/library/debian:bookworm", False),
        ("debian", "docker.io/library/debian:bookworm", True),
        ("python:3.8*", "docker.io/library/python:3.8.18-slim", True),
        ("bitnami/redis", "docker.io/bitnami/redis:7", True),
        ("index.docker.io/library/alpine:3.18", "docker.io/library/alpine:3.18", True),
        ("ghcr.io/acme/*", "ghcr.io/acme/base:1", True),
        ("ghcr.io/acme/*", "ghcr.io/other/base:1", False),
        ("localhost:5000/base", "localhost:5000/base:1", True),
        ("debian@sha256:" + "a" * 64, "docker.io/library/debian@sha256:" + "a" * 64, True),
        ("debian@sha256:" + "a" * 64, "docker.io/library/debian:buster", False),
    ],
    ids=[
        "tag",
        "other-tag",
        "any-tag",
        "tag-glob",
        "hub-user",
        "hub-alias",
        "glob",
        "glob-miss",
        "localhost",
        "digest",
        "digest-miss",
    ],
)
def test_uses_patterns_normalize_like_image_names(
    pattern: str, reference: str, matches: bool
) -> None:
    assert UsesPattern(pattern).matches(parse(reference)) is matches


def test_uses_finds_the_base_at_any_depth_on_any_platform() -> None:
    app, py, deb = parse("ghcr.io/acme/app:1"), parse("python:3.12"), parse("debian:buster")
    lineage = Lineage(
        app,
        "sha256:" + "1" * 64,
        (
            PlatformLineage(
                "linux/amd64",
                (
                    Level(app, None, Source.IMAGE, None),
                    Level(py, None, Source.ANNOTATION, True),
                    Level(deb, None, Source.LABEL, None),
                ),
                End.SCRATCH,
            ),
            PlatformLineage("linux/arm64", (Level(app, None, Source.IMAGE, None),), End.UNCLAIMED),
        ),
    )
    ref = ObjectRef("apps/v1", "Deployment", "team-a", "web")
    facts = ImageFacts(image="ghcr.io/acme/app:1", container="app", reference=app, lineage=lineage)
    workload = Workload("Deployment", "web", "team-a")
    pair = (
        Audited(ref, workload),
        WorkloadResult(workload, ObjectFacts("Deployment", "web", "team-a"), (ImageResult(facts),)),
    )
    (use,) = uses.uses([pair], UsesPattern("debian:buster"))
    assert (use.ref, use.container, use.depth, use.matched) == (
        ref,
        "app",
        2,
        ("docker.io/library/debian:buster (linux/amd64)",),
    )
    assert uses.uses([pair], UsesPattern("alpine")) == []
    (itself,) = uses.uses([pair], UsesPattern("ghcr.io/acme/app"))
    assert itself.depth == 0


def test_an_empty_uses_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="--uses needs"):
        UsesPattern("  ")


def test_audited_kinds_have_their_api_paths() -> None:
    assert RESOURCES["Deployment"].path("team-a") == "/apis/apps/v1/namespaces/team-a/deployments"
    assert RESOURCES["Pod"].path() == "/api/v1/pods"
