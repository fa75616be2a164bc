"""The pure parts of the webhook: parsing, what an UPDATE judges, how answers are shaped."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.webhook import fixture

from controller.assess import WorkloadResult
from controller.errors import BadReview
from controller.findings import Finding, grouped_findings
from controller.lineage.model import Lineage
from controller.policy.compile import compile_policy
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.model import Action, RuleCode
from controller.policy.store import PolicyStore, Snapshot
from controller.policy.verdict import ImageResult, Violation
from controller.reference import parse
from controller.webhook import messages, patches
from controller.webhook import review as rv
from controller.webhook.app import parse_timeout
from controller.webhook.review import parse_review, workloads_of
from controller.webhook.settings import Settings
from controller.workloads import ContainerImage, Workload

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
# What the apiserver checks an audit annotation key against, once prefixed with the webhook name.
QUALIFIED_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def envelope(request: Any, **top: Any) -> bytes:
    doc = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    doc.update(top)
    return json.dumps(doc).encode()


GOOD_REQUEST = {
    "uid": "u-1",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "operation": "CREATE",
}


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "an AdmissionReview is a JSON object, not list"),
        (
            envelope(GOOD_REQUEST, apiVersion="admission.k8s.io/v1beta1"),
            "apiVersion must be admission.k8s.io/v1, not 'admission.k8s.io/v1beta1': "
            "set admissionReviewVersions: [v1]",
        ),
        (envelope(GOOD_REQUEST, kind="Pod"), "kind must be AdmissionReview, not 'Pod'"),
        (envelope(None), "the AdmissionReview has no request object"),
        (envelope("yes"), "the AdmissionReview has no request object"),
        (envelope({**GOOD_REQUEST, "uid": ""}), "request.uid is missing"),
        (envelope({k: v for k, v in GOOD_REQUEST.items() if k != "uid"}), "request.uid is missing"),
        (envelope({**GOOD_REQUEST, "uid": 7}), "request.uid must be a string, not int"),
        (envelope({**GOOD_REQUEST, "kind": "Pod"}), "request.kind must be an object, not str"),
        (envelope({**GOOD_REQUEST, "kind": {}}), "request.kind.kind is missing"),
        (envelope({**GOOD_REQUEST, "operation": None}), "request.operation is missing"),
        (envelope({**GOOD_REQUEST, "object": [1]}), "request.object must be an object, not list"),
        (envelope({**GOOD_REQUEST, "dryRun": "yes"}), "request.dryRun must be a boolean"),
    ],
    ids=[
        "not-json", "empty", "not-utf8", "array", "v1beta1", "wrong-kind", "request-null",
        "request-string", "uid-empty", "uid-missing", "uid-number", "kind-string", "kind-empty",
        "operation-missing", "object-list", "dryrun-string",
    ],
)  # fmt: skip
def test_bad_reviews_say_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(BadReview) as caught:
        parse_review(body)
    assert caught.value.message.startswith(reason)


def test_a_real_review_is_parsed() -> None:
    review = parse_review(json.dumps(fixture("pod-ephemeralcontainers.json")))
    assert review.uid == fixture("pod-ephemeralcontainers.json")["request"]["uid"]
    assert (review.kind, review.group, review.resource, review.sub_resource) == (
        "Pod", "", "pods", "ephemeralcontainers",
    )  # fmt: skip
    assert (review.operation, review.namespace, review.name) == ("UPDATE", "prod", "web")
    assert review.user == "kubernetes-admin"
    assert review.object is not None and review.old_object is not None
    assert review.dry_run is False
    assert parse_review(json.dumps(fixture("pod-create-dryrun.json"))).dry_run is True


# A full, valid request; the property test below spoils some of its fields.
FULL_REQUEST: dict[str, Any] = {
    "uid": "u-1",
    "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
    "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
    "subResource": "scale",
    "name": "web",
    "namespace": "prod",
    "operation": "UPDATE",
    "userInfo": {"username": "alice"},
    "object": {"kind": "Deployment"},
    "oldObject": {"kind": "Deployment"},
    "dryRun": True,
}
FIELDS = [(k,) for k in FULL_REQUEST] + [
    ("kind", "kind"), ("kind", "group"), ("kind", "version"), ("resource", "resource"),
    ("userInfo", "username"),
]  # fmt: skip
_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=3), st.just(""),
    st.builds(dict),  # a new dict each time: st.just({}) would share one that a spoil mutates
    st.lists(st.integers(), max_size=1), st.just("__missing__"),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(spoiled=st.lists(st.tuples(st.sampled_from(FIELDS), _ANY), max_size=3))
def test_the_quick_parse_agrees_with_the_field_by_field_one(
    spoiled: list[tuple[tuple[str, ...], Any]],
) -> None:
    """Every review takes the quick path; it must accept exactly what the checked one accepts."""
    request = json.loads(json.dumps(FULL_REQUEST))
    for path, value in spoiled:
        node = request
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value == "__missing__":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    try:
        expected: Any = rv._checked(request)
    except BadReview as exc:
        expected = exc.message
    quick = rv._well_formed(request)
    if isinstance(expected, str):
        assert quick is None
        with pytest.raises(BadReview, match=re.escape(expected)):
            parse_review(envelope(request))
    else:
        assert quick is None or quick == expected
        assert parse_review(envelope(request)) == expected


# --------------------------------------------------------------------------- what is judged


def images(name: str) -> list[tuple[str | None, str, str]]:
    review = parse_review(json.dumps(fixture(name)))
    return [(i.container, i.image, i.section) for w in workloads_of(review) for i in w.images]


TWO = [
    ("app", "docker.io/library/python:3.12.3-slim", "containers"),
    ("proxy", "nginx:latest", "containers"),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "pod-create.json",
            [
                *TWO,
                ("setup", "busybox:1.36.1", "initContainers"),
                ("models", "ghcr.io/acme/models:1.0.0", "volumes"),
            ],
        ),
        ("deployment-create.json", TWO),
        ("replicaset-create.json", TWO),
        ("statefulset-create.json", TWO),
        ("daemonset-create.json", TWO),
        ("job-create.json", TWO),
        ("cronjob-create.json", TWO),
        ("replicationcontroller-create.json", TWO),
        ("podtemplate-create.json", TWO),
        ("deployment-update-scale.json", []),
        ("deployment-update-image.json", [("proxy", "nginx:latest", "containers")]),
        ("deployment-delete.json", []),
        (
            "pod-ephemeralcontainers.json",
            [("debugger-x7k2p", "busybox:latest", "ephemeralContainers")],
        ),
        ("configmap-create.json", []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_which_images_a_review_judges(name: str, expected: list[tuple[str, str, str]]) -> None:
    assert images(name) == expected


def test_paths_point_at_the_image_in_the_object() -> None:
    review = parse_review(json.dumps(fixture("cronjob-create.json")))
    (workload,) = workloads_of(review)
    assert [i.path for i in workload.images] == [
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
        "/spec/jobTemplate/spec/template/spec/containers/1/image",
    ]
    assert (workload.kind, workload.namespace, workload.name) == (
        "CronJob",
        "prod",
        "nightly-report",
    )


def test_a_generated_pod_is_named_by_its_generate_name() -> None:
    """kube-apiserver 1.37 generates the name before admission: the review carries both."""
    doc = fixture("pod-create-generated.json")
    meta = doc["request"]["object"]["metadata"]
    (workload,) = workloads_of(parse_review(json.dumps(doc)))
    assert workload.name == meta["name"] and workload.name.startswith(meta["generateName"])
    assert workload.labels["pod-template-hash"] == meta["generateName"].split("-")[-2]


def test_an_update_that_moves_an_image_to_another_container_judges_it() -> None:
    doc = fixture("deployment-update-scale.json")
    containers = doc["request"]["object"]["spec"]["template"]["spec"]["containers"]
    containers.reverse()  # same images, other positions: a real change of what runs where
    review = parse_review(json.dumps(doc))
    assert [i.container for w in workloads_of(review) for i in w.images] == ["proxy", "app"]


def test_an_update_with_no_old_object_judges_everything() -> None:
    doc = fixture("deployment-update-scale.json")
    doc["request"]["oldObject"] = None
    assert len(images_of(doc)) == 2


def images_of(doc: dict[str, Any]) -> list[ContainerImage]:
    return [i for w in workloads_of(parse_review(json.dumps(doc))) for i in w.images]


@pytest.mark.parametrize(
    ("group", "sub_resource", "judged"),
    [("batch", "", 2), ("example.com", "", 0), ("batch", "status", 0)],
    ids=["batch-job", "a-crd-called-job", "status-subresource"],
)
def test_only_real_workloads_and_no_other_subresources(
    group: str, sub_resource: str, judged: int
) -> None:
    doc = fixture("job-create.json")
    doc["request"]["kind"]["group"] = group
    if sub_resource:
        doc["request"]["subResource"] = sub_resource
    assert len(images_of(doc)) == judged


def test_the_pre_1_22_ephemeral_containers_body_is_understood() -> None:
    doc = fixture("pod-ephemeralcontainers.json")
    doc["request"]["object"] = {
        "apiVersion": "v1",
        "kind": "EphemeralContainers",
        "metadata": {"name": "web", "namespace": "prod"},
        "ephemeralContainers": [{"name": "debugger", "image": "busybox:latest"}],
    }
    doc["request"]["oldObject"] = {
        "apiVersion": "v1",
        "kind": "EphemeralContainers",
        "metadata": {"name": "web", "namespace": "prod"},
        "ephemeralContainers": [],
    }
    (image,) = images_of(doc)
    assert (image.container, image.image, image.path) == (
        "debugger", "busybox:latest", "/ephemeralContainers/0/image",
    )  # fmt: skip


# --------------------------------------------------------------------------- answers


def finding(
    action: Action,
    *,
    container: str = "app",
    image: str = "python:3.8",
    policy: str = "prod-bases",
    rule: RuleCode = RuleCode.DEPRECATED_BASE,
    message: str = "image docker.io/library/python:3.8 is deprecated (EOL); use docker.io/library/python:3.12-slim",
    section: str = "containers",
    waived: str | None = None,
) -> Finding:
    return Finding(
        ContainerImage(container, image, "/spec/containers/0/image", section=section),
        Violation(policy, rule, action, message, waived=waived),
    )


def test_a_denial_names_container_image_policy_rule_and_fix() -> None:
    message = messages.deny_message(
        grouped_findings([finding(Action.DENY), finding(Action.WARN, container="side")])
    )
    assert message == (
        'container "app" image "python:3.8": policy prod-bases, rule deprecated-base: '
        "image docker.io/library/python:3.8 is deprecated (EOL); use docker.io/library/python:3.12-slim"
    )


def test_a_denial_with_many_problems_is_capped_and_points_at_the_log() -> None:
    found = [finding(Action.DENY, container=f"c{i}", message="x" * 2000) for i in range(25)]
    message = messages.deny_message(grouped_findings(found), uid="u-9")
    lines = message.split("\n")
    assert len(lines) == messages.MESSAGE_LINES_MAX + 1
    assert all(len(line) <= messages.MESSAGE_LINE_MAX for line in lines)
    assert lines[0].endswith("...")
    assert lines[-1] == "... and 15 more in the baseguard log (uid u-9)"


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("containers", 'container "app"'),
        ("initContainers", 'init container "app"'),
        ("ephemeralContainers", 'ephemeral container "app"'),
        ("volumes", 'image volume "app"'),
    ],
    ids=["container", "init", "ephemeral", "volume"],
)
def test_where_an_image_sits_is_said_in_words(section: str, where: str) -> None:
    assert finding(Action.DENY, section=section).where == where


def test_warnings_are_short_and_their_total_bounded() -> None:
    found = [
        finding(Action.WARN, container=f"container-{i}", message=f"problem {i} " + "é" * 300)
        for i in range(200)
    ]
    warnings = messages.warning_lines(grouped_findings(found))
    assert all(len(w.encode()) <= messages.WARNING_MAX for w in warnings)
    assert all(w.isascii() and w.isprintable() for w in warnings)
    assert sum(len(w) for w in warnings) <= messages.WARNINGS_TOTAL_MAX
    shown = len(warnings) - 1
    assert warnings[-1] == f"... and {200 - shown} more (see the baseguard log)"
    assert warnings[0].startswith(
        'deprecated-base (prod-bases), container "container-0": problem 0 '
    )


def test_warnings_include_waivers_and_are_not_repeated() -> None:
    found = [
        finding(Action.WARN),
        finding(Action.WARN),
        finding(Action.ALLOW, waived="waived until 2026-03-31: PAY-123 (exception #0)"),
        finding(Action.DENY, rule=RuleCode.UNPINNED, message="unpinned"),
    ]
    assert messages.warning_lines(grouped_findings(found), extra=["a note"]) == [
        'deprecated-base (prod-bases), container "app": image python:3.8 is deprecated (EOL); '
        "use python:3.12-slim",
        'deprecated-base (prod-bases), container "app": waived until 2026-03-31: PAY-123 (exception #0)',
        "a note",
    ]


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ("prod-bases", "prod-bases"),
        ("payments/legacy", "payments.legacy"),
        ("a" * 80, "a" * 54 + "-"),
        ("-weird_name-", "weird_name"),
    ],
    ids=["cluster", "namespaced", "long", "edges"],
)
def test_audit_keys_are_valid_qualified_name_parts(policy: str, key: str) -> None:
    made = messages.audit_key(policy)
    assert made.startswith(key)
    assert len(made) <= 63
    assert QUALIFIED_NAME_PART.match(made)
    assert "/" not in made  # the apiserver adds "<webhook name>/" itself


def test_long_audit_keys_stay_distinct() -> None:
    assert messages.audit_key("x" * 70 + "a") != messages.audit_key("x" * 70 + "b")


def test_audit_annotations_group_by_policy() -> None:
    found = [
        finding(Action.AUDIT, policy="ns/audit-all", rule=RuleCode.UNPINNED),
        finding(
            Action.AUDIT, policy="ns/audit-all", rule=RuleCode.UNPINNED, container="b", image="x:1"
        ),
        finding(Action.WARN, policy="other"),
    ]
    assert messages.audit_annotations(found) == {
        "ns.audit-all": 'unpinned: container "app" python:3.8; unpinned: container "b" x:1'
    }


def test_a_response_echoes_the_uid_and_carries_what_was_given() -> None:
    body = rv.build_response(
        "u-1",
        allowed=False,
        message="no",
        warnings=["w"],
        audit={"k": "v"},
        patch=[{"op": "remove", "path": "/x"}],
    )
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u-1",
            "allowed": False,
            "status": {"code": 403, "reason": "Forbidden", "message": "no"},
            "warnings": ["w"],
            "auditAnnotations": {"k": "v"},
            "patchType": "JSONPatch",
            "patch": base64.b64encode(b'[{"op":"remove","path":"/x"}]').decode(),
        },
    }
    assert rv.build_response("u-2", allowed=True) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u-2", "allowed": True},
    }


# --------------------------------------------------------------------------- mutation


def pinning_policy(name: str, *, mutate: bool) -> Any:
    return compile_policy(
        {
            "apiVersion": "baseguard.io/v1alpha1",
            "kind": "ClusterBaseImagePolicy",
            "metadata": {"name": name},
            "spec": {"pinning": {"mutateToDigest": mutate}},
        }
    )


def result_for(
    items: list[tuple[ContainerImage, str | None, tuple[str, ...]]], *, kind: str = "Pod"
) -> WorkloadResult:
    """A WorkloadResult whose images were looked up at the given digests."""
    results = []
    for item, digest, policies in items:
        ref = parse(item.image)
        lineage = Lineage(ref, digest) if digest else Lineage(ref, None, failure="timed out")
        facts = ImageFacts(
            image=item.image, container=item.container, reference=ref, lineage=lineage
        )
        results.append(ImageResult(facts, policies=policies))
    workload = Workload(kind, "web", "prod", images=tuple(i for i, _, _ in items))
    return WorkloadResult(workload, ObjectFacts(kind, "web", "prod"), tuple(results))


APP = ContainerImage("app", "python:3.12", "/spec/containers/0/image")
PINNED = ContainerImage("side", f"ghcr.io/acme/side:1.0@{OTHER}", "/spec/containers/1/image")
FAILED = ContainerImage("job", "ghcr.io/acme/job:2", "/spec/containers/2/image")
VOLUME = ContainerImage(
    "models", "ghcr.io/acme/models:1", "/spec/volumes/0/image/reference", section="volumes"
)


def test_pinning_rewrites_to_the_checked_digest_in_normalized_form() -> None:
    policies = {
        "pin": pinning_policy("pin", mutate=True),
        "keep": pinning_policy("keep", mutate=False),
    }
    result = result_for(
        [
            (APP, DIGEST, ("pin",)),
            (PINNED, OTHER, ("pin",)),
            (FAILED, None, ("pin",)),
            (VOLUME, DIGEST, ("keep",)),
        ]
    )
    assert patches.pin_operations([result], policies) == [
        {
            "op": "replace",
            "path": "/spec/containers/0/image",
            "value": f"docker.io/library/python:3.12@{DIGEST}",
        }
    ]


def test_latest_is_pinned_as_latest_at_its_digest() -> None:
    image = ContainerImage("app", "nginx", "/spec/containers/0/image")
    ops = patches.pin_operations(
        [result_for([(image, DIGEST, ("pin",))])], {"pin": pinning_policy("pin", mutate=True)}
    )
    assert ops[0]["value"] == f"docker.io/library/nginx:latest@{DIGEST}"


def review_of(obj: dict[str, Any], *, kind: str = "Pod", sub: str = "") -> rv.Review:
    return rv.Review(uid="u", kind=kind, sub_resource=sub, object=obj)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            None,
            [
                {
                    "op": "add",
                    "path": "/metadata",
                    "value": {"annotations": {patches.CHECKED_DIGESTS: "{X}"}},
                }
            ],
        ),
        (
            {"name": "web"},
            [{"op": "add", "path": "/metadata/annotations", "value": {patches.CHECKED_DIGESTS: "{X}"}}],
        ),
        (
            {"name": "web", "annotations": {"a": "b"}},
            [
                {
                    "op": "add",
                    "path": "/metadata/annotations/baseguard.io~1checked-digests",
                    "value": "{X}",
                }
            ],
        ),
    ],
    ids=["no-metadata", "no-annotations", "annotations"],
)
def test_the_default_records_checked_digests_on_a_pod(metadata: Any, expected: Any) -> None:
    obj: dict[str, Any] = {"kind": "Pod"}
    if metadata is not None:
        obj["metadata"] = metadata
    result = result_for([(APP, DIGEST, ()), (FAILED, None, ()), (VOLUME, OTHER, ())])
    value = json.dumps({"app": DIGEST, "volume:models": OTHER}, separators=(",", ":"))
    want = json.loads(json.dumps(expected).replace('"{X}"', json.dumps(value)))
    assert patches.digest_annotation_operations(review_of(obj), [result]) == want


def test_the_annotation_merges_with_what_an_update_already_recorded() -> None:
    old = json.dumps({"side": OTHER})
    obj = {"kind": "Pod", "metadata": {"annotations": {patches.CHECKED_DIGESTS: old}}}
    (op,) = patches.digest_annotation_operations(review_of(obj), [result_for([(APP, DIGEST, ())])])
    assert json.loads(op["value"]) == {"app": DIGEST, "side": OTHER}
    same = {
        "kind": "Pod",
        "metadata": {"annotations": {patches.CHECKED_DIGESTS: json.dumps({"app": DIGEST})}},
    }
    assert patches.digest_annotation_operations(review_of(same), [result_for([(APP, DIGEST, ())])]) == []


@pytest.mark.parametrize(
    ("kind", "sub"),
    [("Deployment", ""), ("Pod", "ephemeralcontainers")],
    ids=["workload", "subresource"],
)
def test_no_annotation_on_workloads_or_subresources(kind: str, sub: str) -> None:
    result = result_for([(APP, DIGEST, ())], kind=kind)
    assert (
        patches.digest_annotation_operations(review_of({"kind": kind}, kind=kind, sub=sub), [result])
        == []
    )


# --------------------------------------------------------------------------- budget, settings, store


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0), ("30s", 30.0), ("1m0s", 60.0), ("2.5s", 2.5), ("1500ms", 1.5), ("1m30s", 90.0),
        (None, None), ("", None), ("10", None), ("ten", None), ("10s5", None), ("s", None),
    ],
    ids=lambda v: repr(v),
)  # fmt: skip
def test_the_apiservers_timeout_is_read_as_a_go_duration(
    text: str | None, seconds: float | None
) -> None:
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize(
    ("timeout", "budget"),
    [(None, 8.0), (10.0, 8.0), (30.0, 8.0), (5.0, 3.5), (2.0, 0.5), (1.0, 0.25), (0.3, 0.15)],
    ids=["absent", "10s", "30s-capped", "5s", "2s", "1s-floor", "tiny"],
)
def test_the_budget_stays_below_the_apiservers_timeout(
    timeout: float | None, budget: float
) -> None:
    assert Settings().budget_for(timeout) == pytest.approx(budget)


def test_the_store_swaps_whole_snapshots_and_keeps_the_last_good_policy() -> None:
    store = PolicyStore()
    first = store.snapshot
    assert first == Snapshot() and not first.loaded
    good = pinning_policy("p", mutate=False)
    store.upsert("ClusterBaseImagePolicy//p", good)
    assert not store.snapshot.loaded
    store.mark_loaded()
    store.upsert("ClusterBaseImagePolicy//p", "spec.mode: must be one of Enforce, Warn, Audit")
    snap = store.snapshot
    assert snap.policies == (good,) and snap.loaded
    assert snap.errors == {
        "ClusterBaseImagePolicy//p": "spec.mode: must be one of Enforce, Warn, Audit"
    }
    assert snap.summary() == "1 policy in force, 1 with errors"
    store.upsert("ClusterBaseImagePolicy//p", good)
    assert store.snapshot.errors == {}
    store.remove("ClusterBaseImagePolicy//p")
    assert store.snapshot.policies == () and store.snapshot.generation == 5
    assert first.policies == () and first.generation == 0  # an old snapshot never changes


def _finding(container: str, policy: str, rule: RuleCode, message: str, action: Action) -> Finding:
    image = ContainerImage(
        container=container, image="python:3.8-slim", section="containers",
        path=f"/spec/containers/{container}/image",
    )  # fmt: skip
    return Finding(image, Violation(policy=policy, rule=rule, action=action, message=message))


EOL = (
    "image docker.io/library/python:3.8-slim is deprecated (Python 3.8: end of life 2024-10-07; "
    "source: endoflife.date, snapshot 2026-08-22); use docker.io/library/python:3.13-slim"
)


def test_a_warning_keeps_the_base_and_the_fix_and_merges_policies() -> None:
    found = [
        _finding("app", f"eol-{i}", RuleCode.DEPRECATED_BASE, EOL, Action.WARN) for i in range(3)
    ]
    (line,) = messages.warning_lines(grouped_findings(found))
    assert line == (  # the container names the image; the reason stays
        'deprecated-base, container "app": is deprecated (Python 3.8: end of life 2024-10-07); '
        "use python:3.13-slim"
    )
    assert len(line) <= messages.WARNING_MAX


def test_a_long_warning_is_cut_in_its_middle_never_in_its_fix() -> None:
    what = "image registry.example/" + "a" * 150 + ":1.0 is deprecated"
    found = [_finding("app", "p", RuleCode.DEPRECATED_BASE, f"{what}; use python:3.13", Action.WARN)]
    (line,) = messages.warning_lines(grouped_findings(found))
    assert line.startswith('deprecated-base, container "app": image registry.example/')
    assert line.endswith("...; use python:3.13") and len(line) <= messages.WARNING_MAX


def test_a_denial_names_every_policy_once() -> None:
    found = [
        _finding("app", f"eol-{i}", RuleCode.DEPRECATED_BASE, EOL, Action.DENY) for i in range(2)
    ]
    assert messages.deny_message(grouped_findings(found)) == (
        'container "app" image "python:3.8-slim": policies eol-0, eol-1, rule deprecated-base: '
        + EOL
    )
