"""``--help`` of the long-running and cluster commands says what they do and their exit codes;
``--version`` says the release, the commit and the CRD API version; ``lineage --format json``
keeps the platform of every entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main
from controller.version import checkout_commit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "description", "codes"),
    [
        ("serve", "Run the admission webhook", ["0 stopped by SIGTERM/SIGINT", "2 bad arguments"]),
        ("run", "Run in the cluster: the operator", ["0 stopped", "1 the operator failed", "2 bad arguments"]),
        ("audit", "Judge the workloads that already run", ["0 nothing would be denied", "1 something would be denied", "2 bad arguments"]),
        ("lineage", "Resolve an image as the webhook does", ["0 resolved", "1 the lookup failed", "2 bad input"]),
    ],
)
def test_help_has_a_description_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str], command: str, description: str, codes: list[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    usage, _, rest = text.partition(description)
    assert usage.startswith("usage: baseguard " + command) and rest, text
    assert "Exit codes: " in text
    for code in codes:
        assert code in text, code


def test_version_prints_the_release_the_commit_and_the_crd_api_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from controller import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert lines[0] == f"baseguard {__version__}"
    if head:  # run from a checkout (a worktree's .git is a file: followed too)
        assert lines[1] == f"commit: {head} (from the checkout)"
    assert lines[2] == "CRD API version: baseguard.io/v1alpha1"


def run_version(package: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package)}
    return subprocess.run(
        [sys.executable, "-m", "controller", "--version"],
        capture_output=True, text=True, env=env, cwd=package, check=False,
    )


def copy_package(target: Path) -> Path:
    import shutil

    shutil.copytree(ROOT / "controller", target / "controller", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_version_outside_a_checkout_says_unknown_never_a_traceback(tmp_path: Path) -> None:
    """An installed package (no .git, nothing recorded): ``unknown``, exit 0."""
    done = run_version(copy_package(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[1] == "commit: unknown (not recorded at build, not run from a git checkout)"


def test_version_reads_the_commit_recorded_at_build(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    (package / "controller" / "commit.txt").write_text("0123456789abcdef0123456789abcdef01234567\n")
    done = run_version(package)
    assert done.stdout.splitlines()[1] == "commit: 0123456789abcdef0123456789abcdef01234567 (recorded at build)"


def test_a_package_installed_inside_some_checkout_does_not_report_that_checkout(tmp_path: Path) -> None:
    """A virtualenv inside a clone holds an installed copy: the clone's HEAD is not its commit."""
    sha = "89abcdef" * 5
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text(f"{sha}\n")
    site = tmp_path / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    done = run_version(copy_package(site))
    assert "commit: unknown" in done.stdout
    assert checkout_commit(site) == sha  # (it is found, and deliberately not used)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"HEAD": "ref: refs/heads/main\n", "refs/heads/main": "a" * 40 + "\n"}, "a" * 40),
        ({"HEAD": "ref: refs/heads/main\n", "packed-refs": f"# pack-refs\n{'b' * 40} refs/heads/main\n"}, "b" * 40),
        ({"HEAD": "c" * 40 + "\n"}, "c" * 40),  # detached
        ({"HEAD": "ref: refs/heads/gone\n"}, None),  # an unborn branch
        ({"HEAD": "garbage"}, None),
        ({}, None),  # no HEAD at all
    ],
)
def test_the_checkout_commit_is_read_without_git(tmp_path: Path, files: dict[str, str], expected: str | None) -> None:
    git = tmp_path / ".git"
    git.mkdir()
    for name, body in files.items():
        (git / name).parent.mkdir(parents=True, exist_ok=True)
        (git / name).write_text(body)
    assert checkout_commit(tmp_path / "controller") == expected


def test_a_worktree_checkout_reads_its_own_head_and_the_shared_refs(tmp_path: Path) -> None:
    main_git = tmp_path / "main" / ".git"
    wt_git = main_git / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (main_git / "refs" / "heads").mkdir(parents=True)
    (main_git / "refs" / "heads" / "feature").write_text("d" * 40 + "\n")
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {wt_git}\n")
    assert checkout_commit(tree) == "d" * 40


def test_lineage_json_keeps_the_platform_of_every_entry(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.images import layer

    amd = registry.push_image(f"{unique_repo}/app", None, [layer({"a": "amd64"})], arch="amd64")
    arm = registry.push_image(f"{unique_repo}/app", None, [layer({"a": "arm64"})], arch="arm64")
    registry.push_index(f"{unique_repo}/app", "1.0", [(amd, "linux/amd64"), (arm, "linux/arm64")])
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    code = main(
        ["lineage", f"{registry.host}/{unique_repo}/app:1.0", "--format", "json", "--registry-config", str(config)]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    flat = [level for p in doc["platforms"] for level in p["levels"]]
    assert [(lv["platform"], lv["digest"]) for lv in flat] == [
        ("linux/amd64", amd.digest),
        ("linux/arm64", arm.digest),
    ]
