"""``spec.trust`` in the audit: running images that are unsigned or wrongly signed are listed with
their rule code and a message naming the authority, in ``baseguard audit``'s output and in the
operator's PolicyReports — judged as admission judges them, against the real registry with
signatures pushed as cosign does (test-made keys and a local Sigstore trust root)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from support import signing
from support.cosign_push import push_bundle_referrer, push_signature
from support.faulty_proxy import FaultyProxy
from support.images import layer
from support.kube_api import ApiDouble
from support.kube_objects import cluster_policy, pod
from support.registry import RegistryProcess
from support.replicas import StartReplica
from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore

from controller.cli.commands import audit as audit_cli
from controller.registry.config import RegistryConfig, RegistryHost
from controller.trust.roots import load_trusted_root

REPORTS = "wgpolicyk8s.io/v1alpha2"


def key_policy(key: signing.PrivateKey) -> dict[str, Any]:
    return cluster_policy(
        "signed",
        {
            "pinning": {"disallowedTags": []},
            "trust": {
                "authorities": [{"name": "platform", "keys": [{"publicKey": signing.public_pem(key)}]}]
            },
        },
    )


def keyless_policy() -> dict[str, Any]:
    release = {"issuer": GITHUB, "subject": WORKFLOW, "trustedRoot": "corp"}
    return cluster_policy(
        "released",
        {
            "pinning": {"disallowedTags": []},
            "trust": {"authorities": [{"name": "release", "keyless": release}]},
        },
    )


def audit_json(
    capsys: pytest.CaptureFixture[str], kubeconfig: Path, tmp_path: Path, host: str, *extra: str
) -> tuple[int, dict[str, Any]]:
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--kubeconfig", str(kubeconfig), "--registry-config", str(config), "--format", "json", *extra]
    )
    code = audit_cli.run(args)
    return code, json.loads(capsys.readouterr().out)


def violations(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Pod name → [(rule, message)] of the audit's JSON."""
    return {
        r["name"]: [(v["rule"], v["message"]) for v in r["violations"]] for r in doc["results"]
    }


def test_the_cli_audit_lists_the_unsigned_and_the_wrongly_signed_running_image(
    double: ApiDouble,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    registry: RegistryProcess,
    proxy: FaultyProxy,
    unique_repo: str,
) -> None:
    """Key-based: signed passes, unsigned is ``unsigned``, the wrong key's is ``signature-invalid``;
    an image whose signatures cannot be read is ``lookup-failed``, never passed in silence."""
    key = signing.new_key("p256")
    repo = f"{unique_repo}/app"
    signed = registry.push_image(repo, "signed", [layer({"app": "signed"})])
    push_signature(registry.pusher, repo, signed.digest, key)
    unsigned = registry.push_image(repo, "unsigned", [layer({"app": "unsigned"})])
    forged = registry.push_image(repo, "forged", [layer({"app": "forged"})])
    push_signature(registry.pusher, repo, forged.digest, signing.new_key("p256"))
    hidden_repo = f"{unique_repo}/hidden"
    hidden = registry.push_image(hidden_repo, "1", [layer({"app": "hidden"})])
    push_signature(registry.pusher, hidden_repo, hidden.digest, key)
    # the signatures (referrers and the .sig tag) of one repository cannot be read
    proxy.fault("status", rf"/{hidden_repo}/(referrers/|manifests/sha256-)", status=503)

    double.apply(key_policy(key))
    for name, image, path in (
        ("signed", signed, repo),
        ("unsigned", unsigned, repo),
        ("forged", forged, repo),
        ("hidden", hidden, hidden_repo),
    ):
        double.apply(pod(name, "team-a", f"{proxy.host}/{path}@{image.digest}"))

    code, doc = audit_json(capsys, kubeconfig, tmp_path, proxy.host, "--batch", "2")
    assert code == 1
    found = violations(doc)
    assert found["signed"] == []
    ((rule, message),) = found["unsigned"]
    assert rule == "unsigned"
    assert "authority platform" in message and f"no signature for {unsigned.digest}" in message
    ((rule, message),) = found["forged"]
    assert rule == "signature-invalid"
    assert "platform refused it (bad-signature)" in message
    ((rule, message),) = found["hidden"]
    assert rule == "lookup-failed"
    assert "could not be read" in message, message
    assert doc["policies"]["ClusterBaseImagePolicy//signed"] == {"objects": 4, "violations": 3}


def test_the_cli_audit_judges_keyless_signatures_against_its_trusted_root(
    double: ApiDouble,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    registry: RegistryProcess,
    unique_repo: str,
) -> None:
    """``--trusted-root`` reaches the audit as it reaches ``check``: a keyless bundle by the
    release workflow passes, a fork's is ``signature-invalid``, none at all is ``unsigned``."""
    sigstore = LocalSigstore(tmp_path)
    repo = f"{unique_repo}/app"
    released = registry.push_image(repo, "released", [layer({"app": "released"})])
    bundle = sigstore.bundle(sigstore.sign_message(released.digest))
    push_bundle_referrer(registry.pusher, repo, released.digest, released.size, bundle)
    fork = "https://github.com/mallory/fork/.github/workflows/x.yml@refs/heads/main"
    forked = registry.push_image(repo, "forked", [layer({"app": "forked"})])
    bundle = sigstore.bundle(sigstore.sign_message(forked.digest, identity=fork))
    push_bundle_referrer(registry.pusher, repo, forked.digest, forked.size, bundle)
    bare = registry.push_image(repo, "bare", [layer({"app": "bare"})])

    double.apply(keyless_policy())
    for name, image in (("released", released), ("forked", forked), ("bare", bare)):
        double.apply(pod(name, "team-b", image.reference))
    today = sigstore.now.date().isoformat()
    code, doc = audit_json(
        capsys, kubeconfig, tmp_path, registry.host,
        "--trusted-root", f"corp={sigstore.path}", "--now", today,
    )  # fmt: skip
    assert code == 1
    found = violations(doc)
    assert found["released"] == []
    ((rule, message),) = found["forked"]
    assert rule == "signature-invalid" and "release refused it (wrong-identity)" in message
    ((rule, message),) = found["bare"]
    assert rule == "unsigned" and "authority release" in message


def test_a_bad_trusted_root_file_is_a_usage_error(
    double: ApiDouble, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "root.json"
    bad.write_text("{not json")
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    args = parser.parse_args(["--kubeconfig", str(kubeconfig), "--trusted-root", str(bad)])
    assert audit_cli.run(args) == 2
    assert "Traceback" not in capsys.readouterr().err


async def test_the_operators_reports_list_unsigned_running_images_by_rule(
    double: ApiDouble,
    start_replica: StartReplica,
    tmp_path: Path,
    registry: RegistryProcess,
    unique_repo: str,
) -> None:
    """The leader's audit judges with the server's trusted roots: its PolicyReport passes the
    released image and fails the others by rule, naming the authority."""
    sigstore = LocalSigstore(tmp_path)
    repo = f"{unique_repo}/app"
    released = registry.push_image(repo, "released", [layer({"app": "released"})])
    bundle = sigstore.bundle(sigstore.sign_message(released.digest))
    push_bundle_referrer(registry.pusher, repo, released.digest, released.size, bundle)
    forked = registry.push_image(repo, "forked", [layer({"app": "forked"})])
    fork = "https://github.com/mallory/fork/.github/workflows/x.yml@refs/heads/main"
    bundle = sigstore.bundle(sigstore.sign_message(forked.digest, identity=fork))
    push_bundle_referrer(registry.pusher, repo, forked.digest, forked.size, bundle)
    bare = registry.push_image(repo, "bare", [layer({"app": "bare"})])
    double.apply(keyless_policy())
    for name, image in (("released", released), ("forked", forked), ("bare", bare)):
        double.apply(pod(name, "team-a", image.reference))

    await start_replica(
        registry_config=RegistryConfig.of(RegistryHost(registry.host, insecure=True)),
        roots={"corp": load_trusted_root(str(sigstore.path))},
        audit_interval=0.3,
    )
    report = await double.wait_for(
        lambda: double.get(REPORTS, "PolicyReport", "baseguard-audit", "team-a"),
        what="team-a's PolicyReport",
    )
    by_pod = {
        (r["resources"][0]["name"], r["rule"]): r for r in report["results"]
    }
    assert by_pod[("released", "all-rules")]["result"] == "pass"
    bare_result = by_pod[("bare", "unsigned")]
    assert bare_result["result"] == "fail" and "authority release" in bare_result["message"]
    assert bare_result["properties"]["images"] == bare.reference
    forked_result = by_pod[("forked", "signature-invalid")]
    assert forked_result["result"] == "fail"
    assert "release refused it (wrong-identity)" in forked_result["message"]
    assert not [r for r in report["results"] if r["rule"] == "lookup-failed"], report["results"]
    assert report["summary"]["fail"] == 2 and report["summary"]["pass"] == 1
