"""``evidence.authorities``: only scan and VEX documents signed by a named authority count.

Real docker-registry, keys made here, envelopes written by tests/support/signing.py
from the DSSE spec (not by the verifier). What is asserted is what ``baseguard
check`` prints and returns. The policy's ``spec.trust.images`` matches nothing,
so the image's own signature is not judged: only its evidence.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from textwrap import indent

import pytest
from support import signing
from support.registry import RegistryProcess
from support.scans import (
    TRIVY,
    cosign_attest,
    findings,
    openvex,
    push_app,
    push_artifact,
    trivy_report,
    vex_statement,
    vuln_statement,
)

from controller.cli.main import main

NOW = "2026-12-07"
OLD, NEW = "2026-12-01T10:00:00Z", "2026-12-06T10:00:00Z"


def policy(key: signing.PrivateKey, evidence: str, *, names: str = "[platform]") -> str:
    return f"""\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {{name: patched}}
spec:
  mode: Enforce
  trust:
    images: ["registry.invalid/nothing"]
    authorities:
      - name: platform
        keys:
          - publicKey: |
{indent(signing.public_pem(key), " " * 14)}
  evidence: {{authorities: {names}, {evidence}}}
"""


def check(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    registry: RegistryProcess,
    image: str,
    text: str,
) -> tuple[int, list[dict[str, object]]]:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: shop, namespace: shop}\n"
        f"spec: {{containers: [{{name: app, image: '{image}'}}]}}\n"
    )
    (tmp_path / "policy.yaml").write_text(text)
    (tmp_path / "r.yaml").write_text(
        f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n'
    )
    code = main([
        "check", str(tmp_path / "pod.yaml"), "-p", str(tmp_path / "policy.yaml"),
        "--registry-config", str(tmp_path / "r.yaml"), "--now", NOW, "--format", "json",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert out, err
    (result,) = json.loads(out)["results"]
    return code, result["violations"]


def rules(violations: list[dict[str, object]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in violations:
        out.setdefault(str(v["rule"]), []).append(str(v["message"]))
    return out


def test_a_newer_unsigned_clean_scan_does_not_hide_the_signed_one(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.new_key()
    _, app = push_app(registry, unique_repo)
    dirty = vuln_statement(
        app, trivy_report(app.reference, findings(app), created=OLD), finished=OLD
    )
    clean = vuln_statement(app, trivy_report(app.reference, [], created=NEW), finished=NEW)
    # the signed scan, and beside it a newer clean one in an envelope no key signed
    cosign_attest(registry.pusher, app, [dirty, clean], keys=[key, None])
    # and a newer clean Trivy JSON report pushed as an artifact (never signed)
    report = json.dumps(trivy_report(app.reference, [], created=NEW)).encode()
    push_artifact(
        registry.pusher, app, [(TRIVY, report, {"org.opencontainers.image.created": NEW})]
    )
    code, violations = check(
        capsys, tmp_path, registry, app.reference, policy(key, "denyFixable: [CRITICAL]")
    )
    found = rules(violations)
    assert code == 1, violations
    (fixable,) = found["fixable-vulnerabilities"]
    assert "CVE-2024-5535 libssl3" in fixable and "in its base's layers" in fixable
    assert "scan-missing" not in found

    # Without authorities the newest scan, unsigned and clean, is what counts (unchanged).
    unsigned_ok = policy(key, "denyFixable: [CRITICAL]").replace("{authorities: [platform], ", "{")
    code, violations = check(capsys, tmp_path, registry, app.reference, unsigned_ok)
    assert "fixable-vulnerabilities" not in rules(violations), violations


def test_a_scan_signed_by_another_key_is_ignored_and_scan_missing_says_so(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, theirs = signing.new_key(), signing.new_key()
    _, app = push_app(registry, unique_repo)
    scan = vuln_statement(
        app, trivy_report(app.reference, findings(app), created=NEW), finished=NEW
    )
    cosign_attest(registry.pusher, app, [scan], keys=[theirs])
    report = json.dumps(trivy_report(app.reference, [], created=NEW)).encode()
    push_artifact(registry.pusher, app, [(TRIVY, report, {})])
    code, violations = check(
        capsys, tmp_path, registry, app.reference, policy(ours, "denyFixable: [CRITICAL]")
    )
    found = rules(violations)
    assert code == 1, violations
    (missing,) = found["scan-missing"]
    assert "has no vulnerability scan signed by platform attached" in missing
    assert "2 scan/VEX documents ignored: not signed by evidence.authorities (platform)" in missing
    assert "fixable-vulnerabilities" not in found  # the other key's scan is not evidence

    # signed by ours, the same scan is judged
    cosign_attest(registry.pusher, app, [scan], keys=[ours])
    code, violations = check(
        capsys, tmp_path, registry, app.reference, policy(ours, "denyFixable: [CRITICAL]")
    )
    assert set(rules(violations)) == {"fixable-vulnerabilities"}, violations


def test_a_signed_vex_suppresses_and_an_unsigned_one_does_not(
    registry: RegistryProcess, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing.new_key()
    _, app = push_app(registry, unique_repo)
    scan = vuln_statement(
        app, trivy_report(app.reference, findings(app), created=NEW), finished=NEW
    )
    vex = vex_statement(app, openvex(app, ["CVE-2024-5535"]))
    # an unsigned VEX attestation, and an unsigned OpenVEX artifact: neither suppresses
    cosign_attest(registry.pusher, app, [scan, vex], keys=[key, None])
    push_artifact(
        registry.pusher,
        app,
        [("application/vnd.openvex+json", openvex(app, ["CVE-2024-5535"]), {})],
    )
    text = policy(key, "denyFixable: [CRITICAL]")
    code, violations = check(capsys, tmp_path, registry, app.reference, text)
    assert code == 1 and "CVE-2024-5535" in " ".join(rules(violations)["fixable-vulnerabilities"])
    # the same VEX signed by the authority suppresses the only fixable CRITICAL
    cosign_attest(registry.pusher, app, [scan, vex], keys=[key, key])
    code, violations = check(capsys, tmp_path, registry, app.reference, text)
    assert code == 0 and "fixable-vulnerabilities" not in rules(violations), violations


def test_an_unknown_authority_is_refused_with_its_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy(signing.new_key(), "requireScan: true", names="[platform, release]"))
    code = main(["policy", "validate", str(path)])
    out, err = capsys.readouterr()
    assert code not in (0, 1)
    text = out + err
    assert "spec.evidence.authorities[1]" in text and "unknown authority 'release'" in text, text


def test_more_authorities_than_the_bound_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    names = "[platform, platform, platform, platform, platform]"
    path.write_text(policy(signing.new_key(), "requireScan: true", names=names))
    code = main(["policy", "validate", str(path)])
    out, err = capsys.readouterr()
    assert code not in (0, 1)
    assert "spec.evidence.authorities" in out + err and "more than the 4 allowed" in out + err, (
        out + err
    )


async def test_more_authorities_per_image_than_the_bound_is_a_named_failure() -> None:
    from controller.errors import LookupFailed
    from controller.evidence import gather
    from controller.reference import parse

    signers = gather.Signers(
        tuple(
            gather.Signer(f"fp{i}", f"a{i}", "unused") for i in range(gather.MAX_AUTHORITIES + 1)
        ),
        dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
    )
    with pytest.raises(LookupFailed, match="MAX_AUTHORITIES"):
        # refused before the registry is asked anything: the client is never called
        await gather.read(
            None, parse("registry.test/shop/app:1"), ["sha256:" + "0" * 64], signers=signers
        )  # type: ignore[arg-type]


async def test_verification_past_the_reviews_cpu_is_a_failure_never_unsigned(
    registry: RegistryProcess, unique_repo: str, registry_client: object
) -> None:
    """A signed scan read once the review's CPU is spent is not verified: the read fails
    (``lookup-failed``), it is never taken as signed, nor silently as unsigned."""
    from controller.errors import LookupFailed
    from controller.evidence import gather
    from controller.lineage.budget import Bounds, ReviewBudget
    from controller.reference import parse
    from controller.trust.authorities import KeyAuthority
    from controller.trust.keys import load_key

    key = signing.new_key()
    _, app = push_app(registry, unique_repo)
    scan = vuln_statement(
        app, trivy_report(app.reference, findings(app), created=NEW), finished=NEW
    )
    cosign_attest(registry.pusher, app, [scan], keys=[key])
    authority = KeyAuthority("platform", (load_key("platform[0]", signing.public_pem(key)),))
    signers = gather.Signers(
        (gather.Signer("fp", "platform", authority),), dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    )
    ref = parse(app.reference)
    scans, *_ = await gather.read(registry_client, ref, [app.digest], signers=signers)  # type: ignore[arg-type]
    assert [s.signers for s in scans] == [frozenset({"fp"})]  # with CPU left: verified
    spent = ReviewBudget(Bounds(max_cpu_per_review=0.001))
    spent.charge_cpu(1.0)
    with pytest.raises(LookupFailed, match="max_cpu_per_review"):
        await gather.read(registry_client, ref, [app.digest], signers=signers, account=spent)  # type: ignore[arg-type]
