"""The text of ``check`` fits the terminal: wrapped at its width (or ``--width N``), continuation
lines indented under their line, words never broken; not wrapped in a pipe or a CI log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

from controller.cli.main import main

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec:
  mode: Enforce
  pinning: {require: Version}
  bases: {allowed: [{image: docker.io/library/python, tags: ["3.12*-slim"]}]}
"""
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: storefront, namespace: web}
spec:
  template:
    spec:
      containers: [{name: checkout-api-server, image: 'registry.example.com/shop/checkout-api:latest'}]
"""
IMAGE = "registry.example.com/shop/checkout-api:latest"
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    (tmp_path / "pins.yaml").write_text(POLICY)
    (tmp_path / "app.yaml").write_text(APP)
    return [str(tmp_path / "app.yaml"), "-p", str(tmp_path / "pins.yaml"), "--offline"]


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_width_wraps_every_line_and_indents_what_continues(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, whole, _ = check(capsys, *files)
    assert code == 1
    assert max(len(line) for line in whole.splitlines()) > 150  # a finding is one long line
    code, wrapped, _ = check(capsys, *files, "--width", "60")
    assert code == 1
    lines = wrapped.splitlines()
    # every line fits, but a word longer than the line, which is never broken
    assert all(len(line) <= 60 or " " not in line.strip() for line in lines), wrapped
    assert f"    {IMAGE}" in lines  # the image line goes on under the container's name
    finding = next(i for i, line in enumerate(lines) if line.startswith("      disallowed-tag [pins] deny:"))
    assert lines[finding + 1].startswith("        " + IMAGE), wrapped  # continued 2 deeper
    assert lines[finding + 1][8] != " "
    note = next(i for i, line in enumerate(lines) if line.startswith("not evaluated (--offline"))
    assert lines[note + 1].startswith("  ") and lines[note + 1][2] != " ", wrapped
    # nothing lost and nothing broken: the same words in the same order
    assert wrapped.split() == whole.split()


def test_a_pipe_or_ci_log_is_not_wrapped_even_with_columns_set(
    files: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    _, out, _ = check(capsys, *files)
    assert any(line.startswith("      disallowed-tag") and line.endswith("@sha256:<digest>") for line in out.splitlines())
    _, unwrapped, _ = check(capsys, *files, "--width", "0")
    assert unwrapped == out


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--width", "12"], "12 columns is too narrow: use 40 or more, or 0"),
        (["--width", "wide"], "'wide' is not a number of columns"),
    ],
)
def test_a_width_too_narrow_or_not_a_number_is_a_usage_error(
    files: list[str], capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", *files, *extra])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_width_with_another_format_is_refused(files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, *files, "--width", "80", "--format", "json")
    assert (code, out) == (2, "")
    assert "--width shapes the text output; --format json is never wrapped" in err


def on_a_terminal(argv: list[str], columns: int, *, env: dict[str, str]) -> str:
    """What ``baseguard check`` prints on a real terminal (a pseudo-terminal) of ``columns``."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(follower)
    attrs[1] &= ~termios.ONLCR  # "\n" as written, not "\r\n"
    termios.tcsetattr(follower, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "check", *argv],
        stdout=follower, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 1, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode()


def test_on_a_terminal_the_lines_fit_its_width_in_colour(files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    shown = on_a_terminal(files, 64, env=env)
    assert "\x1b[31mDENY \x1b[0m" in shown  # colour: it is a terminal
    plain = ESCAPE.sub("", shown)
    assert all(len(line) <= 64 or " " not in line.strip() for line in plain.splitlines()), plain
    for line in shown.splitlines():  # every escape opened on a line is closed on it
        assert line.count("\x1b[0m") == len(ESCAPE.findall(line)) - line.count("\x1b[0m"), repr(line)
    _, whole, _ = check(capsys, *files)
    assert plain.split() == whole.split()
    assert max(len(line) for line in plain.splitlines() if " " in line.strip()) > 50
    # --width 0 on a terminal: not wrapped
    unwrapped = ESCAPE.sub("", on_a_terminal([*files, "--width", "0"], 64, env=env))
    assert textwrap.dedent(unwrapped).splitlines() == textwrap.dedent(whole).splitlines()
