"""``baseguard test`` knows the trust rules: a test's described images carry no signatures, so a
policy requiring them finds them ``unsigned`` (offline, through the real assessor), and a test
may expect that; an expectation naming a trust rule that does not fire fails with a diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import signing

from controller.cli.main import main


def files(tmp_path: Path, rules: str) -> str:
    pem = "\n".join("              " + line for line in signing.public_pem(signing.new_key("p256")).splitlines())
    (tmp_path / "policy.yaml").write_text(
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: signed}\n"
        "spec:\n  trust:\n    authorities:\n      - name: platform\n        keys:\n"
        f"          - publicKey: |\n{pem}\n"
    )
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop}\n"
        "spec: {containers: [{name: app, image: 'ghcr.io/acme/app:1'}]}\n"
    )
    (tmp_path / "baseguard-test.yaml").write_text(
        'policies: [policy.yaml]\nresources: [pod.yaml]\nnow: "2026-11-23"\n'
        "images:\n  - {name: 'ghcr.io/acme/app:1', layers: [app]}\n"
        f"results:\n  - {{resource: Pod/shop/api, container: app, verdict: deny, rules: [{rules}]}}\n"
    )
    return str(tmp_path)


def test_a_described_image_is_unsigned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", files(tmp_path, "unsigned")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out


def test_a_wrong_trust_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", files(tmp_path, "signature-invalid")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "unsigned" in out and "signature-invalid" in out
