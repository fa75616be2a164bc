"""The ``baseguard`` command line as a user runs it: exit codes, text, the JSON of docs/cli.md.

Offline cases run the CLI in-process through ``main(argv)``; the online ones
run it against the real registry fixture with images the test pushes.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.images import layer
from support.provenance import ARCHES, push_build, push_buildx_index, statement

from controller.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
NOW = ["--now", "2026-11-23"]
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


PIN_POLICY = """\
    apiVersion: baseguard.io/v1alpha1
    kind: ClusterBaseImagePolicy
    metadata: {name: pins}
    spec:
      mode: Enforce
      pinning: {require: Version}
    """

WARN_EOL = """\
    apiVersion: baseguard.io/v1alpha1
    kind: ClusterBaseImagePolicy
    metadata: {name: eol}
    spec:
      mode: Warn
      bases:
        deprecated:
          - image: docker.io/library/python
            tags: ["3.8", "3.8.*", "3.8-*"]
            reason: Python 3.8 reached end of life on 2024-10-07
            replacement: docker.io/library/python:3.12-slim
    """


def deployment(name: str, image: str, namespace: str = "shop") -> str:
    return f"""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: {name}, namespace: {namespace}}}
    spec:
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          containers:
            - {{name: app, image: "{image}"}}
    """


@pytest.mark.parametrize(
    ("image", "code", "verdict"),
    [
        ("python:3.12.7-slim", 0, "allow"),
        ("python:3.12-slim", 1, "deny"),
        ("python:3.8.20-slim", 0, "warn"),
    ],
    ids=["pinned-allow", "unpinned-deny", "deprecated-warn-exits-0"],
)
def test_check_exit_code_follows_the_most_severe_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], image: str, code: int, verdict: str
) -> None:
    manifest = write(tmp_path, "app.yaml", deployment("api", image))
    pins = write(tmp_path, "p/pins.yaml", PIN_POLICY)
    write(tmp_path, "p/eol.yaml", WARN_EOL)
    got, out, _ = run(
        capsys,
        "check",
        str(manifest),
        "-p",
        str(pins.parent),
        "--offline",
        "--allow-unevaluated",  # the ancestors' rules are not what this test is about
        "--format",
        "json",
        *NOW,
    )
    assert got == code
    result = json.loads(out)["results"][0]
    assert result["verdict"] == verdict


def test_check_json_follows_spec_section_8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(tmp_path, "app.yaml", deployment("legacy", "python:3.8-slim"))
    dockerfile = write(
        tmp_path,
        "Dockerfile",
        """\
        ARG PY=3.8
        FROM golang:1.22.4 AS build
        FROM python:${PY}-slim AS runtime
        COPY --from=build /out /app
        """,
    )
    write(tmp_path, "p/pins.yaml", PIN_POLICY)
    write(tmp_path, "p/eol.yaml", WARN_EOL)
    code, out, _ = run(
        capsys,
        "check",
        str(manifest),
        str(dockerfile),
        "-p",
        str(tmp_path / "p"),
        "--offline",
        "--allow-unevaluated",
        "--format",
        "json",
        *NOW,
    )
    doc = json.loads(out)
    assert code == 1
    assert set(doc) >= {"results", "summary"}
    assert doc["summary"] == {"deny": 2, "warn": 0, "audit": 0, "allow": 1, "notJudged": 0}
    keys = {
        "source",
        "kind",
        "namespace",
        "name",
        "container",
        "image",
        "normalized",
        "verdict",
        "violations",
        "lineage",
    }
    for result in doc["results"]:
        assert keys <= set(result)
        for v in result["violations"]:
            assert set(v) >= {"policy", "rule", "action", "message"}
    deployed = next(r for r in doc["results"] if r["kind"] == "Deployment")
    assert (deployed["namespace"], deployed["name"], deployed["container"]) == (
        "shop",
        "legacy",
        "app",
    )
    rules = {(v["policy"], v["rule"], v["action"]) for v in deployed["violations"]}
    assert rules == {("pins", "unpinned", "deny"), ("eol", "deprecated-base", "warn")}
    assert deployed["lineage"] == [
        {
            "reference": "docker.io/library/python:3.8-slim",
            "digest": None,
            "source": "image",
            "verified": None,
        }
    ]
    # The Dockerfile: ARG substituted, the final stage is a base, the builder only gets reference rules.
    stages = {r["container"]: r for r in doc["results"] if r["kind"] == "Dockerfile"}
    assert stages["runtime"]["normalized"] == "docker.io/library/python:3.8-slim"
    assert {v["rule"] for v in stages["runtime"]["violations"]} == {"deprecated-base", "unpinned"}
    assert (
        stages["build"]["verdict"] == "allow"
    )  # 1.22.4 is a full version, and builders are not base-checked
    assert "deprecated-base" not in deployed.get("notEvaluated", [])  # judged by its own reference


def test_check_text_says_what_was_not_evaluated_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(tmp_path, "app.yaml", deployment("api", "ghcr.io/acme/api:1.0.0"))
    policy = write(
        tmp_path,
        "allow.yaml",
        """\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {name: bases}
        spec:
          bases:
            allowed: [{image: docker.io/library/python, tags: ["3.12*"]}]
        """,
    )
    code, out, _ = run(capsys, "check", str(manifest), "-p", str(policy), "--offline", *NOW)
    assert code != 0  # not judged is not allowed (lineage.onLookupFailure: Deny)
    assert "DENY  app: ghcr.io/acme/api:1.0.0 (not judged: see lookup-failed)" in out
    assert "not evaluated (--offline" in out and "base-not-allowed" in out and "unknown-base" in out


def test_check_skips_and_counts_other_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(
        tmp_path,
        "all.yaml",
        textwrap.dedent(deployment("api", "python:3.12.7-slim"))
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    )
    code, out, _ = run(
        capsys,
        "check",
        str(manifest),
        "-p",
        str(write(tmp_path, "p.yaml", PIN_POLICY)),
        "--offline",
    )
    assert code == 0
    assert "1 image(s): 0 deny, 0 warn, 0 audit, 1 allow; 1 skipped\n" in out
    assert f"skipped (not judged):\n  {manifest}#2 ConfigMap/settings (not a workload: runs no containers)\n" in out


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"app.yaml": "kind: Deployment\nmetadata: {name: x\n"}, "invalid YAML at line"),
        ({"app.yaml": "metadata: {name: x}\n"}, "apiVersion"),
        (
            {
                "app.yaml": deployment("api", "python:3.12.7"),
                "p.yaml": PIN_POLICY.replace("require: Version", "require: Versions"),
            },
            "spec.pinning.require",
        ),
    ],
    ids=["malformed-yaml", "no-apiversion", "bad-policy-enum"],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], fragment: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    policy = tmp_path / "p.yaml"
    if not policy.exists():
        write(tmp_path, "p.yaml", PIN_POLICY)
    code, _, err = run(
        capsys, "check", str(tmp_path / "app.yaml"), "-p", str(policy), "--offline"
    )
    assert code == 2
    assert fragment in err and "Traceback" not in err
    assert str(tmp_path) in err


def test_invalid_image_is_a_violation_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write(tmp_path, "app.yaml", deployment("api", "Python:3.12"))
    code, out, _ = run(
        capsys,
        "check",
        str(manifest),
        "-p",
        str(write(tmp_path, "p.yaml", PIN_POLICY)),
        "--offline",
        "--format",
        "json",
    )
    assert code == 1
    (violation,) = json.loads(out)["results"][0]["violations"]
    assert violation["rule"] == "invalid-reference" and "lower case" in violation["message"]


def test_policy_validate_reports_field_paths(capsys: pytest.CaptureFixture[str]) -> None:
    bad = ROOT / "tests" / "data" / "policies" / "invalid" / "bad-globs.yaml"
    code, out, _ = run(capsys, "policy", "validate", str(bad))
    assert code == 2
    assert "spec.bases.allowed[0].tags[0]: bad glob '3.12/slim'" in out
    code, out, _ = run(capsys, "policy", "validate", str(POLICIES))
    assert code == 0 and ", 0 invalid" in out


def test_policy_crds_prints_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    code, out, _ = run(capsys, "policy", "crds")
    kinds = {d["spec"]["names"]["kind"] for d in yaml.safe_load_all(out)}
    assert code == 0 and kinds == {"ClusterBaseImagePolicy", "BaseImagePolicy", "BaseImagePolicyException"}


def test_policy_tests_pass_and_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "pins.yaml", PIN_POLICY)
    write(tmp_path, "t/app.yaml", deployment("api", "python:3.12-slim"))
    spec = """\
        policies: [../pins.yaml]
        resources: [app.yaml]
        now: "2026-11-23"
        results:
          - {resource: Deployment/shop/api, container: app, verdict: VERDICT, rules: [unpinned]}
        """
    write(tmp_path, "t/baseguard-test.yaml", spec.replace("VERDICT", "deny"))
    code, out, _ = run(capsys, "test", str(tmp_path))
    assert code == 0 and "1 passed, 0 failed" in out
    write(tmp_path, "t/baseguard-test.yaml", spec.replace("VERDICT", "allow"))
    code, out, _ = run(capsys, "test", str(tmp_path))
    assert code == 1 and "1 passed" not in out
    assert "expected allow ['unpinned'], got deny ['unpinned']" in out


def test_the_bundled_library_passes_its_own_tests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "test", str(POLICIES))
    assert code == 0, out
    assert out.strip().endswith(" failed") and ", 0 failed" in out


def test_the_examples_give_the_verdicts_the_readme_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "check", str(ROOT / "examples"), "-p", str(POLICIES), "--offline", *NOW
    )
    assert code == 1
    assert "DENY  Deployment/shop/legacy-api" in out
    assert (
        "deprecated-base [eol-python] warn: image docker.io/library/python:3.8-slim is deprecated"
        in out
    )
    assert "10 image(s): 3 deny, 6 warn, 0 audit, 1 allow" in out  # offline gaps warn (eol-*: Warn)


# --------------------------------------------------------------------------- online


def registry_config(tmp_path: Path, host: str) -> Path:
    return write(
        tmp_path, "registries.yaml", f'registries:\n  - {{host: "{host}", insecure: true}}\n'
    )


def test_check_and_lineage_against_the_real_registry(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os_layer = layer({"etc/os-release": "ID=debian\n"})
    py_layer = layer({"usr/bin/python3.8": "3.8\n"})
    base = registry.push_image(f"{unique_repo}/python", "3.8-slim", [os_layer, py_layer])
    claim = {BASE_NAME: f"{registry.host}/{unique_repo}/python:3.8-slim", BASE_DIGEST: base.digest}
    registry.push_image(
        f"{unique_repo}/app", "1.0.0", [os_layer, py_layer, layer({"app": "x"})], annotations=claim
    )
    image = f"{registry.host}/{unique_repo}/app:1.0.0"
    config = registry_config(tmp_path, registry.host)
    policy = write(
        tmp_path,
        "p.yaml",
        f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {{name: local}}
        spec:
          bases:
            deprecated:
              - image: "{registry.host}/{unique_repo}/python"
                tags: ["3.8*"]
                reason: Python 3.8 is end of life
                replacement: "{registry.host}/{unique_repo}/python:3.12-slim"
        """,
    )
    manifest = write(tmp_path, "app.yaml", deployment("app", image))

    code, out, _ = run(
        capsys,
        "check",
        str(manifest),
        "-p",
        str(policy),
        "--registry-config",
        str(config),
        "--format",
        "json",
    )
    assert code == 1
    (result,) = json.loads(out)["results"]
    assert [v["rule"] for v in result["violations"]] == ["deprecated-base"]
    assert (
        f"is built on {registry.host}/{unique_repo}/python:3.8-slim"
        in result["violations"][0]["message"]
    )
    levels = result["lineage"]
    assert levels[1]["source"] == "annotation" and levels[1]["verified"] is True
    assert levels[1]["digest"] == base.digest

    code, out, _ = run(capsys, "lineage", image, "--registry-config", str(config))
    assert code == 0
    assert "[annotation, verified]" in out and f"{unique_repo}/python:3.8-slim" in out

    code, out, _ = run(
        capsys,
        "lineage",
        f"{registry.host}/{unique_repo}/gone:1",
        "--registry-config",
        str(config),
        "--format",
        "json",
    )
    assert code == 1
    assert (
        "MANIFEST_UNKNOWN" in json.loads(out)["failure"]
        or "unknown" in json.loads(out)["failure"].lower()
    )


def test_lineage_of_a_provenance_only_image_prints_its_verified_base_per_platform(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = push_build(registry, unique_repo)
    push_buildx_index(
        registry.pusher,
        f"{unique_repo}/app",
        "1",
        [(build.app[a], p, [statement(build.app[a], build.materials(a))]) for a, p in ARCHES.items()],
    )
    image = f"{build.root}/app:1"
    config = registry_config(tmp_path, registry.host)

    code, out, _ = run(capsys, "lineage", image, "--registry-config", str(config))

    assert code == 0
    for arch, platform in (("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8")):
        section = out.split(f"  {platform}\n", 1)[1]
        base_line = section.splitlines()[1]
        assert f"└─ {build.root}/debian:12-slim@{build.debian_index.digest}" in base_line
        assert "[provenance, verified]" in base_line
        assert build.debian[arch].digest[:19] in base_line
    assert "golang" not in out and "dockerfile" not in out

    code, out, _ = run(capsys, "lineage", image, "--registry-config", str(config), "--format", "json")
    platforms = {p["platform"]: p["levels"] for p in json.loads(out)["platforms"]}
    assert {k: [(lv["source"], lv["verified"]) for lv in v] for k, v in platforms.items()} == {
        "linux/amd64": [("image", None), ("provenance", True)],
        "linux/arm64/v8": [("image", None), ("provenance", True)],
    }


@pytest.mark.parametrize(
    "argv",
    [["check", "examples", "-p", "policies", "--offline"], ["serve", "--help"], ["lineage", "--help"]],
    ids=["check", "serve", "lineage"],
)
def test_check_and_serve_never_load_kopf_or_the_kubernetes_client(argv: list[str]) -> None:
    """Start-up and memory are features: only `run` and `audit` may pay for kopf and kubernetes."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from controller.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes'))\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "LOADED []" in done.stdout, done.stdout[-500:] + done.stderr[-500:]


def test_policy_test_expectations_name_known_rule_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt rule code in an expectation is a bad test file (exit 2) with the reason,
    never a silent mismatch; ``tag-mismatch`` is a code like the others."""
    write(tmp_path, "pins.yaml", PIN_POLICY)
    write(tmp_path, "t/app.yaml", deployment("api", "python:3.12.7-slim"))
    spec = """\
        policies: [../pins.yaml]
        resources: [app.yaml]
        results:
          - {resource: Deployment/shop/api, verdict: allow, rules: [RULES]}
        """
    write(tmp_path, "t/baseguard-test.yaml", spec.replace("RULES", "tag-mistmatch"))
    code, out, _ = run(capsys, "test", str(tmp_path))
    assert code == 2
    assert "results[0].rules[0]: unsupported value 'tag-mistmatch'" in out
    assert "tag-mismatch, deprecated-base" in out


def test_check_refuses_a_max_base_age_that_would_overflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``maxBaseAge: 900000000d`` used to be accepted, then raise OverflowError while judging."""
    manifest = write(tmp_path, "app.yaml", deployment("api", "ghcr.io/acme/api:1.0.0"))
    policy = write(
        tmp_path,
        "age.yaml",
        """\
        apiVersion: baseguard.io/v1alpha1
        kind: ClusterBaseImagePolicy
        metadata: {name: age}
        spec:
          lineage: {maxBaseAge: 900000000d}
        """,
    )
    code, out, err = run(capsys, "check", str(manifest), "-p", str(policy), "--offline", *NOW)
    assert code == 2, out + err
    assert "spec.lineage.maxBaseAge: '900000000d' is longer than 100 years" in out + err
    assert "Traceback" not in out + err
