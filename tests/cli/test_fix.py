"""``baseguard fix`` against the real registry: what a user sees (diff, files, exit codes, notes)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.images import Pushed, layer

from controller.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def python(registry: Any, unique_repo: str) -> dict[str, Pushed]:
    """A python repository: single images and a two-platform index, as Docker Hub has them."""
    repo = f"{unique_repo}/python"
    pushed: dict[str, Pushed] = {}
    for tag in ("3.8-slim", "3.8.10-slim", "3.8-alpine", "3.13.1-slim", "3.13-alpine", "3.14-slim", "3.13"):
        pushed[tag] = registry.push_image(repo, tag, [layer({"tag": tag})])
    for tag in ("3.12-slim", "3.13-slim"):
        amd = registry.push_image(repo, None, [layer({"tag": tag, "arch": "amd64"})])
        arm = registry.push_image(repo, None, [layer({"tag": tag, "arch": "arm64"})], arch="arm64")
        pushed[tag] = registry.push_index(repo, tag, [(amd, "linux/amd64"), (arm, "linux/arm64")])
        pushed[tag + "/amd64"] = amd
    return pushed


@pytest.fixture
def config(tmp_path: Path, registry: Any) -> str:
    path = tmp_path / "registries.yaml"
    path.write_text(f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    return str(path)


def policy(tmp_path: Path, registry: Any, unique_repo: str, extra: str = "") -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: baseguard.io/v1alpha1
            kind: ClusterBaseImagePolicy
            metadata: {{name: eol}}
            spec:
              pinning: {{require: Digest}}
              bases:
                deprecated:
                  - image: "{registry.host}/{unique_repo}/python"
                    tags: ["3.8*"]
                    reason: Python 3.8 is end of life{extra}
                  - image: "{registry.host}/{unique_repo}/python"
                    tags: ["3.14*"]
                    reason: not released yet
            """
        )
    )
    return str(path)


def test_pin_prints_a_diff_with_the_index_digest_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    image = f"{registry.host}/{unique_repo}/python:3.12-slim"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {image} AS build\nFROM build\n")
    code, out, err = run(capsys, "fix", str(dockerfile), "--pin", "--registry-config", config)
    assert code == 0
    assert f"-FROM {image} AS build\n+FROM {image}@{python['3.12-slim'].digest} AS build\n" in out
    assert python["3.12-slim/amd64"].digest not in out  # never one platform's manifest
    assert dockerfile.read_text() == f"FROM {image} AS build\nFROM build\n"
    assert "1 reference(s) to change in 1 file(s)" in err


def golden_repo(tmp_path: Path, host: str, repo: str) -> dict[str, Path]:
    base = f"{host}/{repo}/python"
    files = {
        "Dockerfile": (
            "# syntax=docker/dockerfile:1\r\n"
            f"ARG BASE={base}:3.12-slim\r\n"
            "# build on the team's base\r\n"
            f"FROM --platform=$BUILDPLATFORM {base}:3.13 AS build\r\n"
            "RUN make\r\n"
            "FROM ${BASE}\r\n"
            "COPY --from=build /out /out\r\n"
        ),
        "deploy/app.yaml": (
            "# the web tier\n"
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n"
            "      containers:\n"
            f"        - name: web  # serves\n          image: \"{base}:3.13-slim\"\n"
            "---\n"
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  template:\n    spec:\n"
            f"      initContainers: [{{name: wait, image: {base}:3.13-alpine}}]\n"
            f"      containers: [{{name: run, image: {base}:3.13.1-slim}}]\n"
        ),
        "deploy/kustomization.yaml": (
            "resources: [app.yaml]\nimages:\n"
            f"  - name: {base}\n    newTag: 3.12-slim  # the runtime\n"
        ),
    }
    out: dict[str, Path] = {}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        out[name] = path
    return out


def test_write_pins_every_reference_and_check_then_passes_the_pinning_rules(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    files = golden_repo(tmp_path / "repo", registry.host, unique_repo)
    before = {name: p.read_bytes() for name, p in files.items()}
    pol = policy(tmp_path, registry, unique_repo)
    code, out, err = run(capsys, "check", str(files["Dockerfile"]), str(files["deploy/app.yaml"]), "-p", pol, "--offline", "--allow-unevaluated")
    assert code == 1 and "unpinned" in out, err

    code, out, err = run(capsys, "fix", str(tmp_path / "repo"), "--pin", "--write", "--registry-config", config)
    assert (code, out) == (0, "")
    assert "6 reference(s) changed in 3 file(s)" in err
    d = {tag: python[tag].digest for tag in ("3.12-slim", "3.13", "3.13-slim", "3.13-alpine", "3.13.1-slim")}
    base = f"{registry.host}/{unique_repo}/python"
    assert files["Dockerfile"].read_bytes() == before["Dockerfile"].replace(
        f"BASE={base}:3.12-slim\r\n".encode(), f"BASE={base}:3.12-slim@{d['3.12-slim']}\r\n".encode()
    ).replace(f"{base}:3.13 AS".encode(), f"{base}:3.13@{d['3.13']} AS".encode())
    assert files["deploy/app.yaml"].read_text() == before["deploy/app.yaml"].decode().replace(
        f'{base}:3.13-slim"', f'{base}:3.13-slim@{d["3.13-slim"]}"'
    ).replace(f"{base}:3.13-alpine}}", f"{base}:3.13-alpine@{d['3.13-alpine']}}}").replace(
        f"{base}:3.13.1-slim}}", f"{base}:3.13.1-slim@{d['3.13.1-slim']}}}"
    )
    assert files["deploy/kustomization.yaml"].read_text() == before["deploy/kustomization.yaml"].decode() + (
        f"    digest: {d['3.12-slim']}\n"
    )

    code, out, _ = run(capsys, "check", str(files["Dockerfile"]), str(files["deploy/app.yaml"]), "-p", pol, "--offline", "--allow-unevaluated")
    assert "unpinned" not in out and code == 0, out

    pinned = {name: p.read_bytes() for name, p in files.items()}
    code, out, err = run(capsys, "fix", str(tmp_path / "repo"), "--pin", "--check", "--registry-config", config)
    assert (code, out) == (0, "") and "0 reference(s) to change" in err  # fix twice = fix once
    run(capsys, "fix", str(tmp_path / "repo"), "--pin", "--refresh", "--write", "--registry-config", config)
    assert {name: p.read_bytes() for name, p in files.items()} == pinned


def test_check_exits_1_when_something_would_change_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    files = golden_repo(tmp_path, registry.host, unique_repo)
    before = files["Dockerfile"].read_bytes()
    code, out, _ = run(capsys, "fix", str(files["Dockerfile"]), "--pin", "--check", "--registry-config", config)
    assert code == 1
    assert out.startswith(f"--- a/{files['Dockerfile']}\n+++ b/{files['Dockerfile']}\n")
    assert files["Dockerfile"].read_bytes() == before


def test_refresh_moves_a_pinned_digest_to_what_the_same_tag_names_now(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    repo = f"{unique_repo}/python"
    old = python["3.8-slim"].digest
    new = registry.push_image(repo, "3.8-slim", [layer({"rebuilt": "yes"})]).digest
    image = f"{registry.host}/{repo}:3.8-slim"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {image}@{old}\n")
    code, _, _ = run(capsys, "fix", str(dockerfile), "--refresh", "--write", "--registry-config", config)
    assert code == 0 and dockerfile.read_text() == f"FROM {image}@{new}\n"


def test_update_stays_within_variant_and_precision_and_never_picks_a_deprecated_tag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    base = f"{registry.host}/{unique_repo}/python"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {base}:3.8-slim AS a\nFROM {base}:3.8.10-slim AS b\nFROM {base}:3.8-alpine AS c\n"
        f"FROM {base}:3.8-slim@{python['3.8-slim'].digest}\n"
    )
    pol = policy(tmp_path, registry, unique_repo)
    code, _, err = run(capsys, "fix", str(dockerfile), "--update", "--write", "-p", pol, "--registry-config", config)
    assert code == 0, err
    assert dockerfile.read_text() == (  # 3.14-slim is newer, and deprecated
        f"FROM {base}:3.13-slim AS a\nFROM {base}:3.13.1-slim AS b\nFROM {base}:3.13-alpine AS c\n"
        f"FROM {base}:3.13-slim@{python['3.13-slim'].digest}\n"  # the digest follows the tag
    )


def test_update_uses_the_policys_replacement_even_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
) -> None:
    base = f"{registry.host}/{unique_repo}/python"
    pol = policy(tmp_path, registry, unique_repo, extra=f'\n                    replacement: "{base}:3.12-slim"')
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: a\n    image: {base}:3.8-slim # old\n")
    code, out, err = run(capsys, "fix", str(manifest), "--update", "--offline", "-p", pol)
    assert code == 0, err
    assert f"-    image: {base}:3.8-slim # old\n+    image: {base}:3.12-slim # old\n" in out


def test_offline_says_what_it_could_not_resolve_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
) -> None:
    files = golden_repo(tmp_path, registry.host, unique_repo)
    before = files["Dockerfile"].read_bytes()
    code, out, err = run(capsys, "fix", str(files["Dockerfile"]), "--pin", "--write", "--offline")
    assert (code, out) == (0, "")
    assert (
        f"Dockerfile:2: ARG BASE (line 2, the FROM of line 6): could not resolve the digest of "
        f"{registry.host}/{unique_repo}/python:3.12-slim (offline): not edited" in err
    )
    assert "0 reference(s) changed in 0 file(s); 2 could not be resolved" in err
    assert files["Dockerfile"].read_bytes() == before
    code, _, _ = run(capsys, "fix", str(files["Dockerfile"]), "--pin", "--check", "--offline")
    assert code == 3  # nothing would change, but nothing says it is compliant either


def test_a_tag_the_registry_does_not_have_is_named_and_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {registry.host}/{unique_repo}/python:9.9\n")
    code, out, err = run(capsys, "fix", str(dockerfile), "--pin", "--registry-config", config)
    assert (code, out) == (0, "")
    assert "Dockerfile:1: FROM (line 1): " in err and "python:9.9" in err and "not edited" in err


@pytest.mark.parametrize(
    ("paths", "flags", "message"),
    [
        (["Dockerfile"], ["--write"], "say what to fix: --pin, --refresh and/or --update"),
        (["-"], ["--pin"], "fix edits files"),
        (["missing.yaml"], ["--pin"], "missing.yaml: no such file or directory"),
        (["bad.yaml"], ["--pin"], "bad.yaml: document 1: invalid YAML at line 2"),
        (["notes.txt"], ["--pin"], "not a Dockerfile, a manifest"),
        (["Dockerfile"], ["--pin", "--offline", "--registry-config", "r.yaml"],
         "--registry-config does nothing with --offline"),
        (["Dockerfile"], ["--pin", "--write", "--check"], "--check: not allowed with argument --write"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    paths: list[str], flags: list[str], message: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [\n")
    (tmp_path / "notes.txt").write_text("x\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.12\n")
    try:
        code, _, err = run(capsys, "fix", *flags, "--", *paths)
    except SystemExit as exc:
        code, err = exc.code, capsys.readouterr().err  # type: ignore[assignment]
    assert code == 2
    assert message is None or message in err
    assert "Traceback" not in err


def test_yaml_bombs_are_refused_by_the_bounded_reader_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pod = "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: 'python:3.8'}]}}"
    lines = ["apiVersion: v1", "kind: List", "x0: &l0 " + pod]
    for i in (1, 2):
        lines.append(f"x{i}: &l{i} {{apiVersion: v1, kind: List, items: [" + ",".join([f"*l{i - 1}"] * 300) + "]}")
    lines.append("items: [" + ",".join(["*l2"] * 300) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")  # 27 million pods, expanded
    (tmp_path / "deep.json").write_text("[" * 20_000 + "]" * 20_000)
    code, _, err = run(capsys, "fix", str(tmp_path / "bomb.yaml"), "--pin", "--offline")
    assert code == 2 and "YAML aliases expand it by more than 100,000 nodes" in err
    code, _, err = run(capsys, "fix", str(tmp_path / "deep.json"), "--pin", "--offline")
    assert code == 2 and "nested more than 100 levels deep" in err


def test_a_registry_slower_than_the_budget_is_exit_2_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    proxy: Any,
) -> None:
    registry.push_image(f"{unique_repo}/python", "3.12", [layer({"t": "x"})])
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{proxy.host}", insecure: true}}\n')
    proxy.fault("delay", "/manifests/", seconds=3)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {proxy.host}/{unique_repo}/python:3.12\n")
    code, out, err = run(
        capsys, "fix", str(dockerfile), "--pin", "--write", "--budget", "0.5", "--registry-config", str(config)
    )
    assert (code, out) == (2, "")
    assert "the registry lookups did not finish within --budget 0.5s" in err
    assert dockerfile.read_text() == f"FROM {proxy.host}/{unique_repo}/python:3.12\n"


def test_a_namespaces_policy_shapes_the_update_of_its_own_manifests_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registry: Any, unique_repo: str,
    python: dict[str, Pushed], config: str,
) -> None:
    base = f"{registry.host}/{unique_repo}/python"
    (tmp_path / "team-a.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: baseguard.io/v1alpha1
        kind: BaseImagePolicy
        metadata: {{name: no-313, namespace: team-a}}
        spec:
          bases:
            deprecated: [{{image: "{base}", tags: ["3.13*", "3.14*"], reason: not yet}}]
        """))
    pods = tmp_path / "pods.yaml"
    pod = "kind: Pod\nmetadata: {{name: p, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n"
    pods.write_text(pod.format(ns="team-a", image=f"{base}:3.8-slim") + "---\n" + pod.format(ns="team-b", image=f"{base}:3.8-slim"))
    code, _, err = run(
        capsys, "fix", str(pods), "--update", "--write", "-p", str(tmp_path / "team-a.yaml"), "--registry-config", config
    )
    assert code == 0, err
    assert pods.read_text() == pod.format(ns="team-a", image=f"{base}:3.12-slim") + "---\n" + pod.format(
        ns="team-b", image=f"{base}:3.14-slim"  # team-a's policy says nothing about team-b
    )


def test_helm_templates_are_skipped_with_a_note_and_a_charts_dockerfile_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "pod.yaml").write_text("image: {{ .Values.image }}\n")
    (chart / "Dockerfile").write_text("FROM python:3.12\n")
    code, _, err = run(capsys, "fix", str(chart), "--pin", "--offline")
    assert code == 0, err
    assert f"{chart / 'templates' / 'pod.yaml'}: in the Helm chart {chart}: templates are YAML only once rendered" in err
    assert "Dockerfile:1: FROM (line 1): could not resolve the digest of python:3.12 (offline)" in err
