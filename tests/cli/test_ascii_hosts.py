"""A registry host is shown as the image names it: punycode stays ASCII in every output.

``xn--80ak6aa92e`` decodes to Cyrillic letters that read as "apple"; the
registry client used to print the decoded form (``cannot resolve registry host
<lookalike>.invalid``), so a user read a host the image does not name. The
``.invalid`` top-level domain never resolves, so the lookups fail at once, on
any machine, without asking the network anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli.main import main
from controller.errors import ExitCode

HOST = "xn--80ak6aa92e.invalid"
IMAGE = f"{HOST}/shop/app:1.0.0"
SAID = f"cannot resolve registry host {HOST}: "

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: bases}
spec:
  mode: Enforce
  pinning: {disallowedTags: []}
  bases:
    allowed: [{image: docker.io/library/python, tags: ["3.12*"]}]
  lineage: {onLookupFailure: Deny}
"""


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop}\n"
        f"spec:\n  containers:\n    - name: app\n      image: {IMAGE}\n"
    )
    return str(pod), str(policy)


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_shows_a_punycode_host_in_ascii(
    inputs: tuple[str, str], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    pod, policy = inputs
    code = main(["check", pod, "-p", policy, "--format", fmt])
    out = capsys.readouterr().out
    assert code == ExitCode.UNJUDGED  # denied by onLookupFailure: Deny, the host never answered
    text = out if fmt == "text" else json.dumps(json.loads(out), ensure_ascii=False)
    assert SAID in text, text
    assert text.isascii(), text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_lineage_shows_a_punycode_host_in_ascii(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    main(["lineage", IMAGE, "--format", fmt])
    out = capsys.readouterr().out
    text = out if fmt == "text" else json.dumps(json.loads(out), ensure_ascii=False)
    assert SAID in text and text.isascii(), text
