"""``baseguard test`` a policy author can trust: a bad test file is reported with field
paths and exit 2 while the other tests still run; a test that asserts nothing fails."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.cli.main import main

PIN = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec: {mode: Enforce, pinning: {require: Version}}
"""

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop}
spec: {containers: [{name: app, image: "python:3.12-slim"}]}
"""

GOOD = """\
policies: [../pins.yaml]
resources: [pod.yaml]
now: "2026-11-23"
results:
  - {resource: Pod/shop/api, container: app, verdict: deny, rules: [unpinned]}
"""


def suite(tmp_path: Path, tests: dict[str, str | bytes]) -> Path:
    (tmp_path / "pins.yaml").write_text(PIN)
    for name, body in {"a-good": GOOD, **tests, "z-good": GOOD}.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "pod.yaml").write_text(POD)
        target = folder / "baseguard-test.yaml"
        if isinstance(body, bytes):
            target.write_bytes(body)
        else:
            target.write_text(textwrap.dedent(body))
    return tmp_path


BAD = {
    "yaml-error": (
        GOOD.replace("results:", "results: [\n"),
        "invalid YAML at line",
    ),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "baseguard-test.yaml: not UTF-8 text (byte 0)"),
    "february-30": (
        GOOD.replace('"2026-11-23"', "2026-02-30"),
        "now: '2026-02-30' is not a calendar date (day is out of range for month)",
    ),
    "not-a-date": (GOOD.replace('"2026-11-23"', "next tuesday"), "now: 'next tuesday' is not a date: expected YYYY-MM-DD"),
    "misspelled-key": (
        GOOD.replace("policies:", "policy:"),
        "policies: required field is missing\n     policy: unknown field (did you mean 'policies'?)",
    ),
    "misspelled-result-key": (
        GOOD.replace("rules:", "rule:"),
        "results[0].rule: unknown field (did you mean 'rules'?)",
    ),
    "string-for-list": (
        GOOD.replace("rules: [unpinned]", "rules: unpinned"),
        "results[0].rules: expected a list, got a string",
    ),
    "bad-verdict": (
        GOOD.replace("verdict: deny", "verdict: denied"),
        "results[0].verdict: unsupported value 'denied': must be one of deny, warn, audit, allow",
    ),
    "empty-resources": (GOOD.replace("[pod.yaml]", "[]"), "resources: must not be empty: a test needs something to run"),
    "not-a-mapping": ("- just\n- a list\n", "a test file is a mapping with policies, resources and results; this one is a list"),
    "missing-resource": (GOOD.replace("pod.yaml]", "gone.yaml]"), "gone.yaml: no such file or directory"),
}


@pytest.mark.parametrize(("body", "message"), list(BAD.values()), ids=list(BAD))
def test_a_bad_test_file_is_an_error_with_field_paths_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str | bytes, message: str
) -> None:
    root = suite(tmp_path, {"m-bad": body})
    code = main(["test", str(root)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert f"PASS {root / 'a-good' / 'baseguard-test.yaml'}\n" in out
    assert f"ERROR {root / 'm-bad' / 'baseguard-test.yaml'}\n" in out
    assert f"PASS {root / 'z-good' / 'baseguard-test.yaml'}\n" in out
    assert message in out
    assert out.endswith("2 passed, 0 failed, 1 could not run (bad test file)\n")


def test_a_test_that_asserts_nothing_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = suite(tmp_path, {"m-empty": GOOD.split("results:")[0] + "results: []\n"})
    code = main(["test", str(root)])
    out, _ = capsys.readouterr()
    assert code == 1
    assert f"FAIL {root / 'm-empty' / 'baseguard-test.yaml'}\n" in out
    assert "asserts nothing: results is empty; list the verdicts you expect (found 1 image(s)" in out
    assert out.endswith("2 passed, 1 failed\n")


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = """\
        policy: [../pins.yaml]
        resources: pod.yaml
        now: 2026-13-01
        results:
          - {resource: Pod/shop/api, verdict: deny, rules: unpinned, containr: app}
        """
    root = suite(tmp_path, {"m-bad": body})
    assert main(["test", str(root / "m-bad")]) == 2
    out, _ = capsys.readouterr()
    assert out.splitlines()[1:7] == [
        f"     {root / 'm-bad' / 'baseguard-test.yaml'}: invalid test file:",
        "     policies: required field is missing",
        "     policy: unknown field (did you mean 'policies'?)",
        "     resources: expected a list, got a string",
        "     results[0].rules: expected a list, got a string",
        "     results[0].containr: unknown field (did you mean 'container'?)",
    ]
    assert "     now: '2026-13-01' is not a calendar date (month must be in 1..12)" in out


def test_the_docs_describe_every_key_of_the_test_file() -> None:
    from controller.cli.testfile import SCHEMA

    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy-tests.md").read_text()
    for key in SCHEMA["properties"]:
        assert f"\n{key}:" in docs or f"| `{key}` |" in docs, key
    for key in SCHEMA["properties"]["results"]["items"]["properties"]:
        assert f"  - {key}:" in docs or f"    {key}:" in docs, key
