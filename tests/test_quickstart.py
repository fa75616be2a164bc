"""The README's two commands on a fresh machine: what `make` runs, and a second
`make demo` that finds the first one running.

The Makefile is read with ``make -n`` (what it would run), because installing
for real takes minutes and a network; the note of issue 13 records a real
``make install`` on Debian 12's own Python.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.preconditions import unavailable

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def needs_make() -> None:
    """``make`` is what the README's two commands run: a laptop without it skips, CI fails."""
    if shutil.which("make") is None:
        unavailable("make is not installed (apt-get install make): the README's commands need it")


def dry_run(*argv: str) -> list[str]:
    """The commands ``make -n -B`` prints (as if nothing had been made before)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}  # not make's child
    proc = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.usefixtures("needs_make")
def test_make_test_creates_a_venv_and_runs_every_tool_through_its_python() -> None:
    """A distribution's Python refuses `pip install` outside a venv (PEP 668), and a tool
    called by bare name is not on PATH in a venv nobody activated."""
    lines = dry_run("test")
    assert lines[0] == "python3 -m venv --system-site-packages .venv"
    assert ".venv/bin/python -m pip install -q -e '.[test]'" in lines
    for line in lines[1:]:
        assert line.startswith((".venv/bin/python ", "touch .venv/")), line


@pytest.mark.usefixtures("needs_make")
def test_make_test_with_an_explicit_python_uses_it_as_it_is() -> None:
    lines = dry_run("test", "PYTHON=/opt/py/bin/python3")
    assert not any("venv" in line for line in lines)
    assert all(line.startswith("/opt/py/bin/python3 ") for line in lines), lines


@pytest.mark.usefixtures("needs_make")
def test_make_demo_installs_only_what_the_demo_needs() -> None:
    lines = dry_run("demo")
    assert ".venv/bin/python -m pip install -q -e ." in lines
    assert not any("[test]" in line for line in lines)
    assert lines[-1] == ".venv/bin/python demo/run.py"


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A demo folder as a running demo leaves it: registry data and certificates."""
    work = tmp_path / "demo"
    (work / "registry").mkdir(parents=True)
    (work / "registry" / "blob").write_text("the first demo's data")
    (work / "tls").mkdir()
    (work / "tls" / "ca.crt").write_text("the first demo's CA")
    return work


def _occupy(port: int) -> Iterator[None]:
    """Listen on 127.0.0.1:port; if someone already does, the port is taken all the same."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            pass
        yield


@pytest.mark.parametrize("port", [5055, 8443], ids=["registry-port", "webhook-port"])
def test_a_second_demo_says_the_port_is_taken_and_touches_nothing(demo_dir: Path, port: int) -> None:
    occupied = _occupy(port)
    next(occupied)
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "demo" / "run.py")],
            cwd=ROOT,
            env={**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_EXIT": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        next(occupied, None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"127.0.0.1:{port} already in use -- is another `make demo` running?" in proc.stderr
    assert "Nothing was changed." in proc.stderr
    assert (demo_dir / "registry" / "blob").read_text() == "the first demo's data"
    assert (demo_dir / "tls" / "ca.crt").read_text() == "the first demo's CA"
    assert "1. registry" not in proc.stdout


README = (ROOT / "README.md").read_text()
#: The system packages the README tells a fresh machine to install (its ``apt-get`` line).
SYSTEM_PACKAGES = {"make", "python3-venv", "docker-registry", "apache2-utils", "redis-server"}
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def apt_packages(text: str) -> set[str]:
    """The packages of the first ``apt-get install -y`` line in ``text`` (options dropped)."""
    line = next(line for line in text.splitlines() if "apt-get install -y" in line)
    words = line.split("apt-get install", 1)[1].split(">", 1)[0].split()
    return {w for w in words if not w.startswith("-")}


def test_the_readme_opens_with_the_two_commands_and_what_they_need() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make demo", "make test"]
    assert apt_packages(README) >= SYSTEM_PACKAGES
    assert "htpasswd" in README and "DEMO_EXIT=1 make demo" in README
    assert "pipx install" in README and "pip install" in README
    assert "[docs/policy-tests.md](docs/policy-tests.md)" in README


def test_the_ci_script_installs_what_the_readme_lists_and_runs_its_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert apt_packages(README) <= apt_packages(ci)  # CI has nothing the README does not say
    assert "make test" in ci and "pip install" not in ci  # no pip outside a venv (PEP 668)


def test_docs_install_into_one_namespace() -> None:
    """Copying a command from the README and the next from docs/ must hit the same namespace."""
    import re

    found = {
        (page.name, ns)
        for page in DOCS
        for ns in re.findall(r"(?:-n|--namespace) (baseguard[\w-]*)", page.read_text())
    }
    assert {ns for _, ns in found} == {"baseguard-system"}, sorted(found)


def test_the_pre_commit_hook_runs_check_on_the_files_it_selects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    import shlex

    import yaml

    from controller.cli.main import main

    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "baseguard-check" and hook["language"] == "python"
    selects = re.compile(hook["files"])
    excluded = re.compile(hook["exclude"])
    chosen = [
        name
        for name in ("k8s/app.yaml", "deploy.yml", "pod.json", "Dockerfile", "svc/Dockerfile.prod",
                     "api.Dockerfile", "README.md", "setup.py", "policies/tests/x/baseguard-test.yaml")
        if selects.search(name) and not excluded.search(name)
    ]
    assert chosen == ["k8s/app.yaml", "deploy.yml", "pod.json", "Dockerfile", "svc/Dockerfile.prod", "api.Dockerfile"]
    program, *entry = shlex.split(hook["entry"])
    assert program == "baseguard"
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: pins}\n"
        "spec: {mode: Enforce, pinning: {require: Version}}\n"
    )
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.12-slim\n")
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services: {web: {image: nginx}}\n")
    args = ["-p", str(policy), "--offline"]
    assert main([*entry, *args, str(dockerfile)]) == 1  # pre-commit appends the file names
    assert "unpinned [pins] deny" in capsys.readouterr().out
    assert main([*entry, *args, str(compose)]) == 0  # a commit of other YAML passes


def test_the_repository_stands_alone_citing_no_outside_spec() -> None:
    """Docs and code cite pages a reader has (docs/…), never a specification that is not in
    the repository, nor read files from outside it."""
    import re

    cited = re.compile("SP" + r"EC\s*(§|section\s*\d)|\.\./sha" + "red/")
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".yaml", ".yml", ".tpl", ".txt", ".toml", ".json"} and path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if cited.search(line):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
