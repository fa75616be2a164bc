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


# --- exit codes: denied (1), could not judge (3), warned (--warn-exit-code) -----------------


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_registry_is_exit_3_not_a_denial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An allowed, pinned image whose registry does not answer: could not judge, not denied."""
    host = f"127.0.0.1:{closed_port()}"
    config = write(tmp_path / "registries.yaml", f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    policy = write(
        tmp_path / "p.yaml",
        ALLOWLIST.replace("docker.io/library/python", f"{host}/shop/python"),
    )
    manifest = write(
        tmp_path / "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\n"
        f"spec: {{containers: [{{name: app, image: '{host}/shop/python:3.12-slim'}}]}}\n",
    )
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "--registry-config", config, "--budget", "5", *NOW)
    assert code == 3, out
    assert "lookup-failed [allowed-bases] deny" in out
    assert "(1 of them not judged)" in out


def test_a_real_denial_wins_over_could_not_judge(
    ubuntu: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile, policy = ubuntu
    assert run(capsys, "check", dockerfile, "-p", policy, "--offline", *NOW)[0] == 3
    latest = write(tmp_path / "latest.Dockerfile", "FROM python:latest\n")
    pins = write(
        tmp_path / "pins.yaml",
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: pins}\n"
        "spec: {mode: Enforce, pinning: {}}\n",
    )
    code, _, _ = run(capsys, "check", dockerfile, latest, "-p", policy, "-p", pins, "--offline", *NOW)
    assert code == 1


def test_warn_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = write(tmp_path / "Dockerfile", "FROM python:latest\n")
    warn = write(
        tmp_path / "warn.yaml",
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: w}\n"
        "spec: {mode: Warn, pinning: {}}\n",
    )
    assert run(capsys, "check", dockerfile, "-p", warn, "--offline", *NOW)[0] == 0
    assert run(capsys, "check", dockerfile, "-p", warn, "--offline", "--warn-exit-code", "78", *NOW)[0] == 78
    assert run(capsys, "check", dockerfile, "-p", warn, "--offline", "--warn-exit-code", "1", *NOW)[0] == 1
    with pytest.raises(SystemExit) as exited:
        main(["check", dockerfile, "-p", warn, "--warn-exit-code", "3"])
    assert exited.value.code == 2
    assert "3 already means could not judge" in capsys.readouterr().err


def test_help_and_docs_state_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "3 nothing denied, but an image could not be judged" in out
    assert "--warn-exit-code N" in out
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "| 3 | `check`: nothing was denied, but an image could not be judged" in docs
