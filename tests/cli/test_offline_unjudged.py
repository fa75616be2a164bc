"""``check --offline``: an image whose rules could not be evaluated is never reported as allowed.

A CI job without registry access used to print ``ALLOW`` (exit 0) for ``FROM ubuntu:22.04``
under an allowlist of python slim and distroless: the allowlist enforced nothing.
"""

from __future__ import annotations

import io
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.cli.main import main

NOW = ["--now", "2026-11-23"]

ALLOWLIST = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: allowed-bases}
spec:
  mode: Enforce
  bases:
    allowed:
      - image: docker.io/library/python
        tags: ["*-slim"]
      - image: gcr.io/distroless/*
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def ubuntu(tmp_path: Path) -> tuple[str, str]:
    return write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n"), write(tmp_path / "allowed-bases.yaml", ALLOWLIST)


def test_an_allowlist_offline_does_not_pass_what_it_could_not_judge(
    ubuntu: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile, policy = ubuntu
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", *NOW)
    assert code != 0
    assert "ALLOW" not in out
    assert "DENY  -: docker.io/library/ubuntu:22.04 (not judged: see lookup-failed)" in out
    assert (
        "lookup-failed [allowed-bases] deny: base image docker.io/library/ubuntu:22.04 was not judged "
        "by the rules that need the registry: this run is --offline (lineage.onLookupFailure: Deny); "
        "run with registry access, or pass --allow-unevaluated" in out
    )
    assert "1 image(s): 1 deny, 0 warn, 0 audit, 0 allow" in out


def test_the_unjudged_verdict_in_json_sarif_and_junit(
    ubuntu: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile, policy = ubuntu
    _, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "json", *NOW)
    result = json.loads(out)["results"][0]
    assert (result["verdict"], result["judged"]) == ("deny", False)
    assert [(v["rule"], v["action"]) for v in result["violations"]] == [("lookup-failed", "deny")]
    assert "base-not-allowed" in result["notEvaluated"]

    _, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "sarif", *NOW)
    found = json.loads(out)["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in found] == [("lookup-failed", "error")]
    assert "was not judged" in found[0]["message"]["text"]

    _, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "junit", *NOW)
    failure = ET.parse(io.StringIO(out)).getroot().find(".//testcase/failure")
    assert failure is not None and failure.get("type") == "lookup-failed"


def test_the_permissive_reading_is_an_explicit_flag(
    ubuntu: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile, policy = ubuntu
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--allow-unevaluated", *NOW)
    assert code == 0
    assert "ALLOW -: docker.io/library/ubuntu:22.04" in out
    assert "base-not-allowed judged the image names only" in out  # still listed, never silent


def test_allow_unevaluated_without_offline_is_refused(
    ubuntu: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile, policy = ubuntu
    code, _, err = run(capsys, "check", dockerfile, "-p", policy, "--allow-unevaluated", *NOW)
    assert code == 2
    assert "--allow-unevaluated needs --offline" in err


def test_on_lookup_failure_decides_and_a_gap_weighs_no_more_than_it_hides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warn warns, Allow allows; an allowed image whose only open rule is stale-base (staleBase:
    Warn) is a warning even under onLookupFailure: Deny."""
    dockerfile = write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n")
    allowed = write(tmp_path / "allowed.Dockerfile", "FROM python:3.12-slim\n")
    for outcome, want in (("Warn", "warn"), ("Allow", "allow")):
        policy = write(
            tmp_path / f"{outcome}.yaml",
            ALLOWLIST + f"  lineage: {{onLookupFailure: {outcome}}}\n",
        )
        _, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "json", *NOW)
        assert json.loads(out)["results"][0]["verdict"] == want
    stale_only = write(
        tmp_path / "stale.yaml", ALLOWLIST + "  lineage: {verify: Annotations, staleBase: Warn}\n"
    )
    _, out, _ = run(capsys, "check", allowed, "-p", stale_only, "--offline", "--format", "json", *NOW)
    result = json.loads(out)["results"][0]
    assert result["notEvaluated"] == ["stale-base"]
    assert (result["verdict"], result["judged"]) == ("warn", False)
    assert "a warn here: the most the rules not evaluated give under mode: Enforce" in (
        result["violations"][0]["message"]
    )


def test_an_exception_waives_the_offline_gap_as_it_waives_a_failed_lookup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = write(tmp_path / "Dockerfile", "FROM ubuntu:22.04\n")
    policy = write(
        tmp_path / "p.yaml",
        ALLOWLIST
        + '  exceptions: [{images: ["docker.io/library/ubuntu*"], until: "2026-12-31", reason: "moving off"}]\n',
    )
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "json", *NOW)
    assert code == 0
    violation = json.loads(out)["results"][0]["violations"][0]
    assert violation["rule"] == "lookup-failed" and violation["waived"].startswith("waived until 2026-12-31")


def test_reference_rules_still_deny_offline_and_an_allowed_judged_image_stays_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy without lineage rules leaves nothing open: nothing is added."""
    manifest = write(
        tmp_path / "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\n"
        "spec: {containers: [{name: app, image: 'python:3.12.7-slim'}]}\n",
    )
    pins = write(
        tmp_path / "pins.yaml",
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: pins}\n"
        "spec: {mode: Enforce, pinning: {require: Version}}\n",
    )
    code, out, _ = run(capsys, "check", manifest, "-p", pins, "--offline", *NOW)
    assert code == 0
    assert "ALLOW app: docker.io/library/python:3.12.7-slim" in out.replace("  ", " ")
