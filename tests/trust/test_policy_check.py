"""``spec.trust`` through ``baseguard check``, against the real registry with signatures pushed as cosign does.

Each refusal is asserted as a user sees it: the rule code, the verdict, and a
message naming the authority.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import signing
from support.cosign_push import push_attestation, push_bundle_referrer, push_signature
from support.images import layer

from controller.cli.main import main
from controller.registry import media

NOW = "2026-11-23"


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def indent(pem: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in pem.strip().splitlines())


def policy(
    tmp_path: Path,
    key: signing.PrivateKey,
    *,
    applies_to: str = "Image",
    window: str = "",
    extra: str = "",
    mode: str = "Enforce",
) -> str:
    text = f"""\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {{name: signed}}
spec:
  mode: {mode}
  trust:
    appliesTo: {applies_to}
    authorities:
      - name: platform
        keys:
          - publicKey: |
{indent(signing.public_pem(key), 14)}
{window}
{extra}
"""
    return write(tmp_path / "policy.yaml", text)


def pod(tmp_path: Path, image: str, name: str = "pod.yaml") -> str:
    return write(
        tmp_path / name,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\n"
        f"spec: {{containers: [{{name: app, image: '{image}'}}]}}\n",
    )


def check(capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, *argv: str) -> tuple[int, str]:
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    code = main(["check", *argv, "--registry-config", config, "--now", NOW])
    return code, capsys.readouterr().out


@pytest.fixture
def key() -> signing.PrivateKey:
    return signing.new_key("p256")


def test_a_signed_image_is_allowed_and_an_unsigned_one_denied(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    signed = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "signed"})])
    push_signature(registry.pusher, f"{unique_repo}/app", signed.digest, key)
    unsigned = registry.push_image(f"{unique_repo}/app", "2.0.0", [layer({"app": "unsigned"})])
    rules = policy(tmp_path, key)
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, signed.reference), "-p", rules)
    assert code == 0, out
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, unsigned.reference), "-p", rules)
    assert code == 1, out
    assert "unsigned [signed] deny" in out
    assert "authority platform (keys platform[0])" in out
    assert f"no signature for {unsigned.digest}" in out


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-key", "bad-signature"),
        ("tampered", "bad-signature"),
        ("other-image", "other-image"),
        ("expired", "outside-window"),
    ],
)
def test_each_bad_signature_is_refused_as_signature_invalid(
    registry: Any,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: Any,
    case: str,
    reason: str,
) -> None:
    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": case})])
    other = registry.push_image(repo, "other", [layer({"app": "other"})])
    window = ""
    if case == "wrong-key":
        push_signature(registry.pusher, repo, image.digest, signing.new_key("p256"))
    elif case == "tampered":
        push_signature(registry.pusher, repo, image.digest, key, tamper=True)
    elif case == "other-image":
        # other's valid signature, copied under this image's tag
        push_signature(registry.pusher, repo, image.digest, key, signed_digest=other.digest)
    else:
        push_signature(registry.pusher, repo, image.digest, key)
        window = "            notAfter: 2026-06-30T00:00:00Z"
    rules = policy(tmp_path, key, window=window)
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules, "--format", "json")
    assert code == 1, out
    found = json.loads(out)["results"][0]["violations"]
    assert [v["rule"] for v in found] == ["signature-invalid"], found
    assert f"platform refused it ({reason})" in found[0]["message"]
    assert "authority platform" in found[0]["message"]


def test_warn_mode_admits_with_a_warning_and_an_exception_waives(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "warn"})])
    rules = policy(tmp_path, key, mode="Warn")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules)
    assert code == 0, out
    assert "unsigned [signed] warn" in out
    waived = policy(
        tmp_path,
        key,
        extra=f'  exceptions:\n    - {{images: ["{registry.host}/{unique_repo}/*"], until: "2026-12-31", reason: legacy}}',
    )
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", waived)
    assert code == 0, out
    assert "waived until 2026-12-31" in out


def test_a_bundle_referrer_verifies_and_an_attestation_is_required(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": "bundle"})])
    bundle = signing.key_bundle(signing.message_signature(key, image.digest), hint="platform[0]")
    push_bundle_referrer(registry.pusher, repo, image.digest, image.size, bundle)
    attested = (
        "    attestations:\n      - predicateType: https://slsa.dev/provenance/v1\n"
        "        authorities: [platform]"
    )
    rules = policy(tmp_path, key, extra=attested)
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules)
    assert code == 1, out
    assert "unsigned" not in out and "signature-invalid" not in out
    assert "attestation-missing [signed] deny" in out
    push_attestation(registry.pusher, repo, image.digest, key, signing.SLSA_V1)
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules)
    assert code == 0, out


def test_a_base_signed_by_its_publisher_passes_and_its_unsigned_mirror_copy_is_denied(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    os_layer = layer({"etc/os-release": "golden"})
    base = registry.push_image(f"{unique_repo}/base", "1", [os_layer], annotations={media.BASE_NAME: "scratch"})
    push_signature(registry.pusher, f"{unique_repo}/base", base.digest, key)
    mirror = registry.push_image(
        f"{unique_repo}/mirror/base", "1", [os_layer], annotations={media.BASE_NAME: "scratch"}
    )
    app_layer = layer({"app": "x"})
    on_signed = registry.push_image(
        f"{unique_repo}/app", "1", [os_layer, app_layer],
        annotations={media.BASE_NAME: base.tagged, media.BASE_DIGEST: base.digest},
    )
    on_mirror = registry.push_image(
        f"{unique_repo}/app", "2", [os_layer, app_layer],
        annotations={media.BASE_NAME: mirror.tagged, media.BASE_DIGEST: mirror.digest},
    )
    rules = policy(tmp_path, key, applies_to="Bases")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, on_signed.reference), "-p", rules)
    assert code == 0, out
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, on_mirror.reference), "-p", rules)
    assert code == 1, out
    assert "unsigned [signed] deny" in out
    assert f"base {registry.host}/{unique_repo}/mirror/base:1" in out
    assert "authority platform" in out


def test_the_registry_failing_is_lookup_failed_never_an_allow(
    unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    rules = policy(tmp_path, key)
    image = "127.0.0.1:1/none/app@sha256:" + "a" * 64
    config = write(tmp_path / "r.yaml", 'registries:\n  - {host: "127.0.0.1:1", insecure: true}\n')
    code = main(["check", pod(tmp_path, image), "-p", rules, "--registry-config", config, "--now", NOW, "--budget", "3"])
    out = capsys.readouterr().out
    assert code == 3, out  # denied, and not judged: exit 3 says which
    assert "lookup-failed [signed] deny" in out


def test_a_policy_with_a_bad_trust_section_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        """\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {name: bad}
        spec:
          trust:
            authorities:
              - name: platform
                keys: [{publicKey: "not a key"}]
            attestations: [{predicateType: x, authorities: [nobody]}]
        """,
    )
    code = main(["policy", "validate", bad])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "spec.trust.authorities[0].keys[0].publicKey" in text
    assert "spec.trust.attestations[0].authorities[0]" in text


def test_a_keyless_authority_without_its_trusted_root_is_not_judged_and_a_bad_root_file_is_refused(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "keyless"})])
    rules = write(
        tmp_path / "keyless.yaml",
        """\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {name: keyless}
        spec:
          trust:
            authorities:
              - name: ci
                keyless: {issuer: "https://token.actions.githubusercontent.com", subject: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"}
        """,
    )
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules)
    assert code == 3, out
    assert "lookup-failed [keyless] deny" in out
    assert "no trusted root named 'default' is configured" in out
    bad = write(tmp_path / "root.json", "{not json")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", rules, "--trusted-root", bad)
    assert code == 2


def test_a_namespaced_policys_authorities_judge_only_its_namespace_and_an_exception_object_waives(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    """Isolation: shop's BaseImagePolicy requires signatures in shop; billing's pod is not its business."""
    image = registry.push_image(f"{unique_repo}/app", "1.0.0", [layer({"app": "ns"})])
    text = Path(policy(tmp_path, key)).read_text()
    text = text.replace("kind: ClusterBaseImagePolicy\nmetadata: {name: signed}", "kind: BaseImagePolicy\nmetadata: {name: signed, namespace: shop}")
    rules = write(tmp_path / "shop.yaml", text)
    shop = pod(tmp_path, image.reference, "pods/shop.yaml")
    billing = write(
        tmp_path / "pods/billing.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: billing}\n"
        f"spec: {{containers: [{{name: app, image: '{image.reference}'}}]}}\n",
    )
    code, out = check(capsys, tmp_path, registry, shop, billing, "-p", rules)
    assert code == 1, out
    assert "unsigned [shop/signed] deny" in out
    assert "ALLOW Pod/billing/a  (no policy applies" in out
    code, out = check(capsys, tmp_path, registry, billing, "-p", rules)
    assert code == 0, out
    waiver = write(
        tmp_path / "waiver.yaml",
        f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: BaseImagePolicyException
        metadata: {{name: unsigned-app, namespace: shop}}
        spec:
          policy: {{kind: BaseImagePolicy, name: signed}}
          rules: [unsigned]
          images: ["{registry.host}/{unique_repo}/app"]
          until: "2026-12-31"
          reason: SHOP-7 signing in CI next sprint
        """,
    )
    code, out = check(capsys, tmp_path, registry, shop, "-p", rules, "-p", waiver)
    assert code == 0, out
    assert "waived until 2026-12-31 by BaseImagePolicyException shop/unsigned-app" in out


def test_more_signatures_than_the_bound_none_verifying_is_not_evaluated_never_passed(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    import json as _json

    from support.cosign_push import OCI_MANIFEST, SIMPLE_SIGNING, tag_of

    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": "flood"})])
    mallory = signing.new_key("p256")
    layers = []
    for i in range(20):
        body = signing.simple_signing_payload(image.digest, f"copy-{i}")
        blob = registry.pusher.push_blob(repo, body)
        layers.append({
            "mediaType": SIMPLE_SIGNING, **blob,
            "annotations": {"dev.cosignproject.cosign/signature": signing.b64(signing.sign(mallory, body))},
        })  # fmt: skip
    # the one good signature comes last, past the bound: never read, so never a pass by luck
    good = signing.simple_signing_payload(image.digest)
    blob = registry.pusher.push_blob(repo, good)
    layers.append({
        "mediaType": SIMPLE_SIGNING, **blob,
        "annotations": {"dev.cosignproject.cosign/signature": signing.b64(signing.sign(key, good))},
    })  # fmt: skip
    config = registry.pusher.push_blob(repo, b"{}")
    manifest = _json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **config}, "layers": layers,
    }).encode()  # fmt: skip
    registry.pusher.push_manifest(repo, tag_of(image.digest, ".sig"), manifest, OCI_MANIFEST)
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", policy(tmp_path, key))
    assert code == 3, out  # denied, and not judged
    assert "lookup-failed [signed] deny" in out
    assert "more than 16 signatures and attestations" in out
    assert "remove stale signatures" in out


@pytest.mark.parametrize(("subject", "admitted"), [("WORKFLOW", True), ("https://github.com/mallory/fork/.github/workflows/x.yml@refs/heads/main", False)])
def test_a_keyless_bundle_referrer_is_judged_against_the_trusted_root_file(
    registry: Any,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    subject: str,
    admitted: bool,
) -> None:
    """The real ``sigstore`` verifier, the local test root written as trusted_root.json, through
    check; and nothing but the registry is reached (a guard refuses any other connection)."""
    import socket

    from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore

    host, port = registry.host.rsplit(":", 1)
    reached: list[Any] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def only_the_registry(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[:2] != (host, int(port)):
            reached.append(address)
            raise OSError(f"the test allows only the registry, not {address!r}")
        return connect(sock, address)

    def no_lookups(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name not in (host, None):
            reached.append(name)
            raise OSError(f"the test allows no name lookups, not {name!r}")
        return getaddrinfo(name, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", only_the_registry)
    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)

    sigstore = LocalSigstore(tmp_path)
    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": "keyless"})])
    push_bundle_referrer(registry.pusher, repo, image.digest, image.size, sigstore.bundle(sigstore.sign_message(image.digest)))
    wanted = WORKFLOW if subject == "WORKFLOW" else subject
    rules = write(
        tmp_path / "keyless.yaml",
        f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {{name: keyless}}
        spec:
          trust:
            authorities:
              - name: release
                keyless: {{issuer: "{GITHUB}", subject: "{wanted}", trustedRoot: corp}}
        """,
    )
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    today = sigstore.now.date().isoformat()
    code = main([
        "check", pod(tmp_path, image.reference), "-p", rules, "--registry-config", config, "--now", today,
        "--trusted-root", f"corp={sigstore.path}", "--format", "json",
    ])  # fmt: skip
    out = capsys.readouterr().out
    found = json.loads(out)["results"][0]["violations"]
    assert reached == []  # no TUF, no Rekor, no Fulcio: the registry alone
    if admitted:
        assert code == 0 and found == [], out
    else:
        assert code == 1, out
        assert [v["rule"] for v in found] == ["signature-invalid"]
        assert "release refused it (wrong-identity)" in found[0]["message"]


def test_a_base_that_cannot_be_looked_up_is_not_passed_unsigned_or_silently(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    """A trust-only policy (no bases, no lineage section) still says when a base it must judge was not reached."""
    gone = f"{registry.host}/{unique_repo}/gone:1"
    image = registry.push_image(
        f"{unique_repo}/app", "1", [layer({"app": "orphan"})],
        annotations={media.BASE_NAME: gone, media.BASE_DIGEST: "sha256:" + "e" * 64},
    )  # fmt: skip
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", policy(tmp_path, key, applies_to="Bases"))
    assert code == 3, out
    assert "lookup-failed [signed] deny" in out
    assert f"the signatures of base {gone}" in out and "it is gone from the registry" in out
    assert "unsigned [signed]" not in out


def test_cosigns_keyless_sig_tag_is_judged_with_its_certificate_and_log_promise(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cosign 2's keyless signature (the .sig layer's certificate, chain and signed entry timestamp)."""
    from support.cosign_push import push_keyless_signature
    from support.sigstore_root import GITHUB, WORKFLOW, LocalSigstore, simple_signing_keyless

    sigstore = LocalSigstore(tmp_path)
    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": "cosign-keyless"})])
    other = registry.push_image(repo, "2.0.0", [layer({"app": "replayed"})])
    push_keyless_signature(registry.pusher, repo, image.digest, simple_signing_keyless(sigstore, image.digest))
    # another image's valid keyless signature, copied under this one's tag
    push_keyless_signature(registry.pusher, repo, other.digest, simple_signing_keyless(sigstore, image.digest))
    rules = write(
        tmp_path / "keyless.yaml",
        f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {{name: keyless}}
        spec:
          trust:
            authorities:
              - name: release
                keyless: {{issuer: "{GITHUB}", subjectRegExp: "^https://github.com/corp/.*@refs/heads/main$"}}
        """,
    )
    config = write(tmp_path / "r.yaml", f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    today = sigstore.now.date().isoformat()
    base = ["-p", rules, "--registry-config", config, "--now", today, "--trusted-root", str(sigstore.path)]
    code = main(["check", pod(tmp_path, image.reference), *base])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"by {WORKFLOW} (authority release)" in out
    code = main(["check", pod(tmp_path, other.reference), *base, "--format", "json"])
    out = capsys.readouterr().out
    [violation] = json.loads(out)["results"][0]["violations"]
    assert violation["rule"] == "signature-invalid", out
    assert "release refused it (other-image)" in violation["message"]


def test_an_attestation_about_another_image_or_of_another_type_is_missing(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: Any
) -> None:
    repo = f"{unique_repo}/app"
    image = registry.push_image(repo, "1.0.0", [layer({"app": "att"})])
    other = registry.push_image(repo, "2.0.0", [layer({"app": "att-other"})])
    push_signature(registry.pusher, repo, image.digest, key)
    push_attestation(registry.pusher, repo, image.digest, key, signing.SLSA_V1, about=other.digest)
    attested = "    attestations:\n      - predicateType: https://slsa.dev/provenance/v1"
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", policy(tmp_path, key, extra=attested), "--format", "json")
    [violation] = json.loads(out)["results"][0]["violations"]
    assert code == 1 and violation["rule"] == "attestation-missing", out
    assert "(other-image)" in violation["message"] and other.digest in violation["message"]
    push_attestation(registry.pusher, repo, image.digest, key, "https://spdx.dev/Document")
    code, out = check(capsys, tmp_path, registry, pod(tmp_path, image.reference), "-p", policy(tmp_path, key, extra=attested), "--format", "json")
    [violation] = json.loads(out)["results"][0]["violations"]
    assert violation["rule"] == "attestation-missing" and "(other-predicate)" in violation["message"], out
