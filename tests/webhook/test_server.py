"""The real webhook over real HTTPS: every kind, every answer shape, bad requests, TLS, metrics.

Offline (no registry): the policies of ``tests/data/admission/policies`` judge
references only. Registry-backed cases are in ``test_lineage.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from support.webhook import Certs, StartWebhook, Webhook, fixture, policy_doc, set_images

from controller.assess import Assessor, WorkloadResult
from controller.policy.model import CompiledPolicy
from controller.tls.serving import self_signed
from controller.webhook.metrics import Metrics
from controller.webhook.settings import Settings
from controller.workloads import Workload

KINDS = [
    "pod-create.json",
    "pod-create-generated.json",
    "deployment-create.json",
    "replicaset-create.json",
    "statefulset-create.json",
    "daemonset-create.json",
    "job-create.json",
    "cronjob-create.json",
    "replicationcontroller-create.json",
    "podtemplate-create.json",
]
DENIED_PROXY = (
    'container "proxy" image "nginx:latest": policy enforce-pinning, rule disallowed-tag: '
    'image docker.io/library/nginx:latest uses the tag "latest", which the policy disallows '
    "(a moving tag: what runs can change without a deploy); pin a version tag or a digest, "
    "e.g. docker.io/library/nginx@sha256:<digest>"
)


@pytest.mark.parametrize("name", KINDS)
async def test_every_kind_is_denied_for_its_bad_image(webhook: Webhook, name: str) -> None:
    response = await webhook.response(name)
    assert response["uid"] == fixture(name)["request"]["uid"]
    assert response["allowed"] is False
    assert response["status"] == {"code": 403, "reason": "Forbidden", "message": DENIED_PROXY}
    assert response["warnings"][0].startswith('unpinned, container "proxy": uses the tag "latest"')


@pytest.mark.parametrize("name", KINDS)
async def test_every_kind_is_allowed_with_good_images(webhook: Webhook, name: str) -> None:
    review = set_images(
        fixture(name), {"proxy": "nginx:1.25.3", "models": "docker.io/library/models:1.0.0"}
    )
    response = await webhook.response(review)
    assert response == {"uid": review["request"]["uid"], "allowed": True}


@pytest.mark.parametrize(
    ("proxy", "allowed", "warnings", "audit"),
    [
        ("nginx:1.25", True, ['unpinned, container "proxy": uses the tag "1.25", which...; pin a full version tag or a digest (nginx@sha256:<digest>)'], None),
        ("ghcr.io/acme/proxy:2.0.1", True, None, {"audit-docker-hub": 'registry-not-allowed: container "proxy" ghcr.io/acme/proxy:2.0.1'}),
        ("quay.io/evil/miner:1.0.0", False, None, {"audit-docker-hub": 'registry-not-allowed: container "proxy" quay.io/evil/miner:1.0.0'}),
    ],
    ids=["warn", "audit", "deny-and-audit"],
)  # fmt: skip
async def test_warn_and_audit_modes_answer_as_the_apiserver_expects(
    webhook: Webhook,
    proxy: str,
    allowed: bool,
    warnings: list[str] | None,
    audit: dict[str, str] | None,
) -> None:
    response = await webhook.response(
        set_images(fixture("deployment-create.json"), {"proxy": proxy})
    )
    assert response["allowed"] is allowed
    assert response.get("warnings") == warnings
    assert response.get("auditAnnotations") == audit
    if not allowed:
        assert response["status"]["code"] == 403
        assert "policy enforce-pinning, rule registry-not-allowed" in response["status"]["message"]


async def test_an_unrelated_update_of_an_old_deployment_is_allowed(webhook: Webhook) -> None:
    response = await webhook.response("deployment-update-scale.json")
    assert response == {
        "uid": fixture("deployment-update-scale.json")["request"]["uid"],
        "allowed": True,
    }


async def test_an_update_that_changes_an_image_is_judged(webhook: Webhook) -> None:
    response = await webhook.response("deployment-update-image.json")
    assert response["allowed"] is False
    assert response["status"]["message"] == DENIED_PROXY


async def test_kubectl_debug_judges_only_the_new_ephemeral_container(webhook: Webhook) -> None:
    response = await webhook.response("pod-ephemeralcontainers.json")
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith('ephemeral container "debugger-x7k2p" image "busybox:latest": ')
    assert "proxy" not in message  # the pod's own nginx:latest was admitted before
    fine = set_images(fixture("pod-ephemeralcontainers.json"), {"debugger-x7k2p": "busybox:1.36.1"})
    assert (await webhook.response(fine))["allowed"] is True


@pytest.mark.parametrize("name", ["deployment-delete.json", "configmap-create.json"])
async def test_nothing_to_judge_is_allowed(webhook: Webhook, name: str) -> None:
    assert (await webhook.response(name))["allowed"] is True


async def test_a_dry_run_gets_the_same_answer_and_leaves_no_violation_counts(
    webhook: Webhook,
) -> None:
    dry = await webhook.response("pod-create-dryrun.json")
    real = await webhook.response("pod-create.json")
    assert {k: v for k, v in dry.items() if k != "uid"} == {
        k: v for k, v in real.items() if k != "uid"
    }
    assert real["auditAnnotations"] == {
        "audit-docker-hub": 'registry-not-allowed: image volume "models" ghcr.io/acme/models:1.0.0'
    }
    violations = {"policy": "enforce-pinning", "rule": "disallowed-tag", "action": "deny"}
    assert webhook.metrics.sample("baseguard_admission_violations_total", violations) == 1.0
    requests = {"endpoint": "validate", "kind": "Pod", "verdict": "deny"}
    assert webhook.metrics.sample("baseguard_admission_requests_total", requests) == 2.0


async def test_many_warnings_stay_within_the_apiservers_limits(webhook: Webhook) -> None:
    review = fixture("deployment-create.json")
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    spec["containers"] = [
        {
            "name": f"worker-with-a-rather-long-name-{i:03}",
            "image": f"docker.io/library/tool-{i}:1.{i}",
        }
        for i in range(150)
    ]
    response = await webhook.response(review)
    warnings = response["warnings"]
    assert response["allowed"] is True
    assert all(len(w) <= 120 for w in warnings)
    assert sum(len(w) for w in warnings) <= 2048 < 4096
    assert re.fullmatch(r"\.\.\. and \d+ more \(see the baseguard log\)", warnings[-1])
    shown, more = len(warnings) - 1, int(warnings[-1].split()[2])
    assert shown + more == 150


async def test_audit_annotation_keys_are_valid_for_namespaced_policies(
    start_webhook: StartWebhook,
) -> None:
    doc = policy_doc("audit-docker-hub.yaml")
    doc["kind"] = "BaseImagePolicy"
    doc["metadata"] = {"name": "x" * 70, "namespace": "prod"}
    hook = await start_webhook(docs=[doc])
    response = await hook.response(
        set_images(fixture("deployment-create.json"), {"proxy": "ghcr.io/a/b:1.0.0"})
    )
    (key,) = response["auditAnnotations"]
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key) and len(key) <= 63
    assert key.startswith("prod.xxxx")


# --------------------------------------------------------------------------- mutation (offline)


async def test_mutate_never_denies_and_patches_nothing_offline(webhook: Webhook) -> None:
    response = await webhook.response("pod-create.json", endpoint="mutate")
    assert response == {"uid": fixture("pod-create.json")["request"]["uid"], "allowed": True}


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{oops", "bad AdmissionReview: the body is not JSON"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "bad AdmissionReview: the AdmissionReview has no request object"),
        (json.dumps({**fixture("pod-create.json"), "apiVersion": "admission.k8s.io/v1beta1"}), "bad AdmissionReview: apiVersion must be admission.k8s.io/v1"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {"kind": "Pod"}}}), "bad AdmissionReview: request.uid is missing"),
    ],
    ids=["not-json", "no-request", "v1beta1", "no-uid"],
)  # fmt: skip
@pytest.mark.parametrize("endpoint", ["validate", "mutate"])
async def test_a_request_that_is_not_a_review_gets_400_with_a_reason(
    webhook: Webhook, body: bytes | str, reason: str, endpoint: str
) -> None:
    status, answer = await webhook.review(body, endpoint=endpoint)
    assert status == 400
    assert answer["kind"] == "Status" and answer["code"] == 400 and answer["reason"] == "BadRequest"
    assert answer["message"].startswith(reason)
    labels = {"endpoint": endpoint, "kind": "", "verdict": "invalid"}
    assert webhook.metrics.sample("baseguard_admission_requests_total", labels) == 1.0


async def test_a_body_over_the_cap_gets_413(start_webhook: StartWebhook) -> None:
    hook = await start_webhook(settings=Settings(host="127.0.0.1", port=0, max_body=64 * 1024))
    review = fixture("deployment-create.json")
    review["request"]["object"]["metadata"]["annotations"] = {"blob": "x" * 100_000}
    status, answer = await hook.review(review)
    assert status == 413
    assert answer["message"].startswith("the AdmissionReview is ")
    assert answer["message"].endswith("the limit is 65536")
    # ... and the connection still serves the next review
    assert (await hook.response("deployment-update-scale.json"))["allowed"] is True


async def test_a_chunked_body_over_the_cap_gets_413(start_webhook: StartWebhook) -> None:
    hook = await start_webhook(settings=Settings(host="127.0.0.1", port=0, max_body=64 * 1024))

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    async with hook.session.post(f"{hook.url}/validate", data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())[
            "message"
        ] == "the AdmissionReview is over the limit of 65536 bytes"


async def test_the_default_cap_takes_a_review_with_a_big_object_and_old_object(
    webhook: Webhook,
) -> None:
    review = fixture("deployment-update-scale.json")
    for key in ("object", "oldObject"):
        review["request"][key]["metadata"]["annotations"] = {"config": "y" * 1_000_000}
    assert (await webhook.response(review))["allowed"] is True


async def test_wrong_methods_and_paths_are_not_500(webhook: Webhook) -> None:
    assert (await webhook.get("/validate"))[0] == 405
    assert (await webhook.get("/nope"))[0] == 404


class Exploding(Assessor):
    async def assess(
        self, workloads: Sequence[Workload], policies: Sequence[CompiledPolicy], **kw: Any
    ) -> list[WorkloadResult]:
        raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("docs", "allowed"),
    [(["enforce-pinning.yaml", "warn-versions.yaml"], False), (["warn-versions.yaml"], True)],
    ids=["enforce-in-force-refuses", "warn-only-allows"],
)
async def test_a_bug_is_answered_in_the_review_never_as_http_500(
    start_webhook: StartWebhook, caplog: pytest.LogCaptureFixture, docs: list[str], allowed: bool
) -> None:
    hook = await start_webhook(assessor=Exploding(None), docs=[policy_doc(d) for d in docs])
    review = fixture("deployment-create.json")
    response = await hook.response(review)
    uid = review["request"]["uid"]
    text = f"baseguard could not check this object (internal error; see its log for uid {uid})"
    if allowed:
        assert response == {"uid": uid, "allowed": True, "warnings": [text]}
    else:
        assert response["allowed"] is False
        assert response["status"]["code"] == 500
        assert response["status"]["message"].startswith(text)
    assert "RuntimeError: a bug" in caplog.text
    mutated = await hook.response(review, endpoint="mutate")
    assert mutated == {"uid": uid, "allowed": True}
    assert (
        hook.metrics.sample(
            "baseguard_admission_requests_total",
            {"endpoint": "validate", "kind": "Deployment", "verdict": "error"},
        )
        == 1.0
    )


async def test_a_reviewer_that_raises_is_a_logged_503(
    start_webhook: StartWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    """Reviewers never raise; if one does anyway, the apiserver still gets a readable Status."""

    async def broken(review: Any, *, endpoint: Any, budget: float, started: float) -> Any:
        raise RuntimeError("a reviewer bug")

    hook = await start_webhook(reviewer=broken)
    status, body = await hook.review("deployment-create.json")
    assert status == 503
    assert (body["kind"], body["code"], body["message"]) == (
        "Status", 503, "baseguard internal error; see its log",
    )  # fmt: skip
    assert "RuntimeError: a reviewer bug" in caplog.text
    assert (await hook.get("/healthz")) == (200, "ok\n")


# --------------------------------------------------------------------------- probes and metrics


async def test_readyz_waits_for_policies(start_webhook: StartWebhook) -> None:
    hook = await start_webhook(loaded=False)
    status, text = await hook.get("/readyz")
    assert status == 503
    assert json.loads(text)["message"] == "policies are not loaded yet"
    assert (await hook.get("/healthz")) == (200, "ok\n")
    response = await hook.response("deployment-create.json")
    assert response["allowed"] is False and response["status"]["code"] == 503
    assert (await hook.response("deployment-create.json", endpoint="mutate"))["allowed"] is True
    hook.store.upsert("ClusterBaseImagePolicy//broken", "spec.mode: bad")
    hook.store.mark_loaded()
    status, text = await hook.get("/readyz")
    assert status == 200
    assert json.loads(text) == {
        "ready": True,
        "policies": 0,
        "generation": 2,
        "errors": {"ClusterBaseImagePolicy//broken": "spec.mode: bad"},
        "message": "0 policies in force, 1 with errors",
    }


async def test_metrics_after_reviews(webhook: Webhook) -> None:
    await webhook.response("deployment-create.json")
    await webhook.response(set_images(fixture("deployment-create.json"), {"proxy": "nginx:1.25"}))
    await webhook.review(b"nope")
    status, text = await webhook.get("/metrics")
    assert status == 200
    for line in [
        'baseguard_admission_requests_total{endpoint="validate",kind="Deployment",verdict="deny"} 1.0',
        'baseguard_admission_requests_total{endpoint="validate",kind="Deployment",verdict="warn"} 1.0',
        'baseguard_admission_requests_total{endpoint="validate",kind="",verdict="invalid"} 1.0',
        'baseguard_admission_violations_total{action="deny",policy="enforce-pinning",rule="disallowed-tag"} 1.0',
        'baseguard_admission_violations_total{action="warn",policy="warn-versions",rule="unpinned"} 2.0',
        'baseguard_admission_duration_seconds_bucket{endpoint="validate",le="0.0005"}',
        'baseguard_admission_duration_seconds_count{endpoint="validate"} 2.0',
        'baseguard_policies{state="ready"} 3.0',
        'baseguard_policies{state="error"} 0.0',
    ]:
        assert line in text, line


@pytest.mark.parametrize(
    ("seconds", "le", "below"),
    [(0.0001, "0.0005", None), (0.0005, "0.0005", None), (0.0006, "0.001", "0.0005"),
     (30.0, "30.0", "10.0"), (31.0, "+Inf", "30.0")],
    ids=["fast", "on-a-bound", "just-above", "longest-bound", "beyond"],
)  # fmt: skip
def test_latency_is_counted_in_the_first_bucket_that_holds_it(
    seconds: float, le: str, below: str | None
) -> None:
    metrics = Metrics()
    metrics.answered("validate", "Pod", "allow", seconds)
    metrics.answered("validate", "Pod", "allow", seconds)

    def bucket(bound: str) -> float | None:
        labels = {"endpoint": "validate", "le": bound}
        return metrics.sample("baseguard_admission_duration_seconds_bucket", labels)

    assert bucket(le) == 2.0 and bucket("+Inf") == 2.0
    assert below is None or bucket(below) == 0.0
    total = {"endpoint": "validate"}
    assert metrics.sample("baseguard_admission_duration_seconds_sum", total) == 2 * seconds
    assert metrics.sample("baseguard_admission_duration_seconds_count", total) == 2.0


async def test_the_budget_comes_from_the_apiservers_timeout(start_webhook: StartWebhook) -> None:
    seen: list[float | None] = []

    class Recording(Assessor):
        async def assess(
            self, workloads: Sequence[Workload], policies: Sequence[CompiledPolicy], **kw: Any
        ) -> list[WorkloadResult]:
            seen.append(kw.get("budget"))
            return await super().assess(workloads, policies, **kw)

    hook = await start_webhook(
        assessor=Recording(None),
        settings=Settings(host="127.0.0.1", port=0, budget=8.0, safety_margin=1.5),
    )
    for query in ("?timeout=5s", "?timeout=30s", "", "?timeout=bogus", "?timeout=1s"):
        await hook.response("deployment-create.json", query=query)
    assert [round(b or 0, 1) for b in seen] == [3.5, 8.0, 8.0, 8.0, 0.2]
    assert all(
        b is not None and b <= cap for b, cap in zip(seen, [3.5, 8.0, 8.0, 8.0, 0.25], strict=True)
    )


# --------------------------------------------------------------------------- concurrency


async def test_hundreds_of_concurrent_mixed_reviews_are_all_answered_right(
    webhook: Webhook,
) -> None:
    cases = [
        ("deployment-create.json", {"proxy": "nginx:1.25.3"}, True, None),
        ("deployment-create.json", {"proxy": "nginx:latest"}, False, None),
        ("pod-create.json", {"proxy": "nginx:1.25"}, True, "warn"),
        ("cronjob-create.json", {"proxy": "ghcr.io/acme/p:1.0.0"}, True, "audit"),
        ("deployment-update-scale.json", {}, True, None),
        ("pod-ephemeralcontainers.json", {}, False, None),
    ]
    reviews = []
    for i in range(300):
        name, images, allowed, extra = cases[i % len(cases)]
        review = set_images(fixture(name), images)
        review["request"]["uid"] = f"uid-{i:04}"
        reviews.append((review, allowed, extra))
    answers = await asyncio.gather(*(webhook.response(r) for r, _, _ in reviews))
    for (review, allowed, extra), response in zip(reviews, answers, strict=True):
        assert response["uid"] == review["request"]["uid"]
        assert response["allowed"] is allowed, response
        assert ("warnings" in response) == (extra == "warn" or not allowed)
        assert ("auditAnnotations" in response) == (
            extra == "audit"
            or (
                # the image volume is audited when the Pod is judged whole (not when only
                # ephemeral containers are added: the recorded `kubectl debug` Pod has it too)
                review["request"]["kind"]["kind"] == "Pod"
                and not review["request"].get("subResource")
                and "models" in json.dumps(review)
            )
        )


# --------------------------------------------------------------------------- TLS


def client_context(certs: Certs, *, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL offer the old protocol at all
    context.minimum_version = version
    context.maximum_version = version
    return context


async def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLObject | Any:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        return writer.get_extra_info("peercert"), writer.get_extra_info("ssl_object").version()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls_below_1_2_is_refused(webhook: Webhook, certs: Certs) -> None:
    port = webhook.runner.addresses[0][1]
    assert (await handshake(port, client_context(certs, version=ssl.TLSVersion.TLSv1_2)))[
        1
    ] == "TLSv1.2"
    # the same client can speak TLS 1.1 (to a server that allows it) ...
    lenient = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    lenient.minimum_version = ssl.TLSVersion.TLSv1
    lenient.load_cert_chain(certs.cert, certs.key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=lenient)
    try:
        old_port = server.sockets[0].getsockname()[1]
        try:
            _, version = await handshake(
                old_port, client_context(certs, version=ssl.TLSVersion.TLSv1_1)
            )
        except ssl.SSLError as exc:  # this OpenSSL build cannot speak 1.1 at all: nothing to prove
            pytest.skip(f"TLS 1.1 unavailable in this OpenSSL: {exc}")
        assert version == "TLSv1.1"
    finally:
        server.close()
        await server.wait_closed()
    # ... but not to the webhook
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await handshake(port, client_context(certs, version=ssl.TLSVersion.TLSv1_1))


async def test_a_replaced_certificate_is_served_to_new_connections(
    start_webhook: StartWebhook, certs: Certs, tmp_path: Any
) -> None:
    # a private copy of the files, so the module's certificates stay as they are
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(certs.directory / name, tmp_path / name)
    private = Certs(
        certs.pair, tmp_path, tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key"
    )
    hook = await start_webhook()
    from controller.tls.serving import CertReloader

    reloader = CertReloader(private.cert, private.key)
    site = aiohttp.web.TCPSite(hook.runner, "127.0.0.1", 0, ssl_context=reloader.context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def serial(pem: bytes) -> int:
        from cryptography import x509

        return x509.load_pem_x509_certificate(pem).serial_number

    trust_both = ssl.create_default_context(cafile=str(private.ca))
    first, _ = await handshake(port, trust_both)
    assert int(first["serialNumber"], 16) == serial(certs.pair.cert_pem)
    assert reloader.check() is False  # nothing changed

    fresh = self_signed(["localhost", "127.0.0.1"], now=dt.datetime.now(dt.UTC))
    (tmp_path / "tls.crt").write_bytes(fresh.cert_pem)
    assert reloader.check() is False  # the key does not match yet: the old pair stays
    second, _ = await handshake(port, trust_both)
    assert int(second["serialNumber"], 16) == serial(certs.pair.cert_pem)

    (tmp_path / "tls.key").write_bytes(fresh.key_pem)
    trust_both.load_verify_locations(cadata=fresh.ca_pem.decode())
    assert reloader.check() is True
    third, _ = await handshake(port, trust_both)
    assert int(third["serialNumber"], 16) == serial(fresh.cert_pem)
    await site.stop()


async def test_a_lone_surrogate_in_an_image_is_a_clean_denial(webhook: Webhook) -> None:
    """``"\\ud800"`` is valid JSON but no character: UTF-8 cannot carry it. It used to
    raise UnicodeEncodeError while the denial was written (a 500-class answer)."""
    review = set_images(fixture("deployment-create.json"), {"app": "python\ud800:3.12"})
    review["request"]["uid"] = "uid-\udfff"
    text = json.dumps(review)  # ASCII: the surrogates travel as \ud800 and \udfff escapes
    assert "\\ud800" in text
    answer = await webhook.response(text)
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    assert answer["uid"] == "uid-\udfff"  # echoed back exactly
    first = answer["status"]["message"].splitlines()[0]
    assert first.startswith('container "app" image "python\\ud800:3.12": policies ')
    assert "enforce-pinning" in first and "rule invalid-reference: " in first
    assert all("\\ud800" in w or "python" not in w for w in answer["warnings"])
