"""Dockerfiles as real repositories write them: BuildKit's platform ARGs, the names BuildKit and
Podman users give them, images pulled only by ``COPY --from``, builder stages."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from controller.cli.loaders import is_dockerfile, load_inputs
from controller.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
MQTT = ROOT / "tests" / "data" / "dockerfiles" / "amd64-mqtt.dockerfile"

PINS = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec: {mode: Enforce, pinning: {}}
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def images(capsys: pytest.CaptureFixture[str], *argv: str) -> list[tuple[str | None, str]]:
    code, out, err = run(capsys, "check", *argv, "--offline", "--allow-unevaluated", "--format", "json")
    assert code in (0, 1), err
    return [(r["container"], r["image"]) for r in json.loads(out)["results"]]


# --- BuildKit's automatic platform ARGs -------------------------------------------------------


def test_a_stage_picked_by_targetos_is_not_an_undeclared_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`FROM build-$TARGETOS AS build` exited 2 ("TARGETOS has no value")."""
    policy = write(tmp_path / "pins.yaml", PINS)
    assert images(capsys, str(MQTT), "-p", policy) == [
        ("build-linux", "golang:1.22.4"),
        ("build-windows", "mcr.microsoft.com/windows/nanoserver:ltsc2022"),
        ("build (COPY --from)", "docker.io/tonistiigi/xx:1.4.0"),
        (None, "gcr.io/distroless/static-debian12:nonroot-amd64"),
        ("(COPY --from)", "docker.io/library/busybox:latest"),
    ]


def test_each_platform_the_policies_judge_gets_its_own_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = write(
        tmp_path / "Dockerfile",
        "FROM golang:1.22.4 AS build\n"
        "FROM ghcr.io/acme/runtime:1.0.0-${TARGETOS}-${TARGETARCH}${TARGETVARIANT}\n"
        "LABEL platform=$TARGETPLATFORM\n",
    )
    policy = write(
        tmp_path / "p.yaml",
        PINS.replace("pinning: {}", "lineage: {platforms: [linux/arm64, linux/arm/v7]}"),
    )
    assert images(capsys, dockerfile, "-p", policy) == [
        ("build", "golang:1.22.4"),
        ("(linux/arm64)", "ghcr.io/acme/runtime:1.0.0-linux-arm64"),
        ("(linux/arm/v7)", "ghcr.io/acme/runtime:1.0.0-linux-armv7"),
    ]
    # a policy that names no platform judges every one: the default, linux/amd64, is read too
    both = write(tmp_path / "pins.yaml", PINS)
    assert ("(linux/amd64)", "ghcr.io/acme/runtime:1.0.0-linux-amd64") in images(
        capsys, dockerfile, "-p", policy, "-p", both
    )
    # a build arg wins over the automatic value, as with docker build --build-arg
    assert images(capsys, dockerfile, "-p", both, "--build-arg", "TARGETARCH=s390x")[1] == (
        None,
        "ghcr.io/acme/runtime:1.0.0-linux-s390x",
    )


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["amd64-mqtt.dockerfile", "Containerfile", "Containerfile.arm64", "worker.containerfile", "containerfile"]
)
def test_the_names_buildkit_and_podman_users_use_are_dockerfiles(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert is_dockerfile(name)
    dockerfile = write(tmp_path / "repo" / name, "FROM python:3.12.7-slim\n")
    policy = write(tmp_path / "pins.yaml", PINS)
    assert images(capsys, dockerfile, "-p", policy) == [(None, "python:3.12.7-slim")]  # named
    assert images(capsys, str(tmp_path / "repo"), "-p", policy) == [(None, "python:3.12.7-slim")]  # walked
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert re.search(hook["files"], f"svc/{name}") and not re.search(hook["exclude"], f"svc/{name}")


def test_the_hook_leaves_dockerignore_files_alone() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert re.search(hook["exclude"], "Dockerfile.dockerignore")


# --- COPY --from=<image> ----------------------------------------------------------------------


def test_an_image_named_only_in_copy_from_is_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path / "pins.yaml", PINS)
    code, out, _ = run(capsys, "check", str(MQTT), "-p", policy, "--offline")
    assert code == 1
    assert "DENY  (COPY --from): docker.io/library/busybox:latest" in out
    assert 'disallowed-tag [pins] deny: image docker.io/library/busybox:latest uses the tag "latest"' in out
    _, out, _ = run(capsys, "check", str(MQTT), "-p", policy, "--offline", "--format", "sarif")
    lines = {
        r["properties"]["image"]: r["locations"][0]["physicalLocation"]["region"]["startLine"]
        for r in json.loads(out)["runs"][0]["results"]
    }
    assert lines["docker.io/library/busybox:latest"] == 14


def test_copy_from_with_an_unset_variable_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = write(tmp_path / "Dockerfile", "FROM alpine:3.20.3\nCOPY --from=${HELPER} /a /b\n")
    policy = write(tmp_path / "pins.yaml", PINS)
    code, _, err = run(capsys, "check", dockerfile, "-p", policy, "--offline")
    assert code == 2
    assert "line 2: the image of COPY --from=${HELPER} is unresolved: HELPER has no value" in err
    assert "--build-arg HELPER=VALUE" in err


def test_stage_references_are_not_images() -> None:
    loaded = load_inputs([str(MQTT)])
    [workload] = loaded.workloads
    assert [i.section for i in workload.images].count("COPY --from") == 2  # not `build`, not `0`


# --- builder stages ---------------------------------------------------------------------------


def test_builder_stages_get_the_reference_rules_as_the_docs_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A builder's output is copied into the image: where it comes from is checked, what it is
    built on is not (no lineage lookup for it)."""
    dockerfile = write(
        tmp_path / "Dockerfile",
        "FROM quay.io/acme/builder:1.0.0 AS build\nFROM docker.io/library/python:3.12.7-slim\n"
        "COPY --from=build /out /app\n",
    )
    policy = write(
        tmp_path / "p.yaml",
        PINS.replace(
            "pinning: {}",
            "registries: {allowed: [docker.io/*]}, bases: {allowed: [{image: docker.io/library/python}]}",
        ),
    )
    code, out, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--format", "json")
    assert code == 1
    by_image = {r["image"]: r for r in json.loads(out)["results"]}
    builder = by_image["quay.io/acme/builder:1.0.0"]
    assert [v["rule"] for v in builder["violations"]] == ["registry-not-allowed"]
    assert "notEvaluated" not in builder  # no base rule judges a builder
    docs = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert "a builder stage that only feeds `COPY --from`" in docs
    assert "is checked by the reference rules (`registry-not-allowed`, `disallowed-tag`, `unpinned`)" in docs
    assert "checked for pinning only" not in docs
