"""Hostile files handed to ``check``, ``policy validate`` and ``baseguard test``:
alias bombs and deep nesting are refused at load with exit 2 and a message.

Each case runs the real command in a subprocess with a timeout, because what it
guards against is time and memory (minutes and gigabytes before the bound).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.documents import MAX_ALIAS_NODES, json_data, yaml_documents
from controller.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def policy_bomb() -> str:
    """A 0.7 KB policy whose tag list expands to 10^9 strings through nested aliases."""
    lines = [
        "apiVersion: baseguard.io/v1alpha1",
        "kind: ClusterBaseImagePolicy",
        "metadata: {name: bomb}",
        'x0: &x0 ["a", "a", "a", "a", "a", "a", "a", "a", "a", "a"]',
    ]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines.append("spec: {mode: Enforce, bases: {allowed: [{image: '*', tags: *x8}]}}")
    return "\n".join(lines) + "\n"


def list_bomb() -> str:
    """4.7 KB of Lists (three deep, as Lists may nest) of aliases: 27 million pods expanded."""
    pod = "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: 'python:3.8'}]}}"
    lines = ["apiVersion: v1", "kind: List", "x0: &l0 " + pod]
    for i in (1, 2):
        lines.append(f"x{i}: &l{i} {{apiVersion: v1, kind: List, items: [" + ",".join([f"*l{i - 1}"] * 300) + "]}")
    lines.append("items: [" + ",".join(["*l2"] * 300) + "]")
    return "\n".join(lines) + "\n"


def baseguard(*argv: str, cwd: Path) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "controller", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


PIN = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec: {mode: Enforce, pinning: {require: Version}}
"""


@pytest.mark.parametrize(
    ("name", "text", "argv"),
    [
        ("bomb-policy.yaml", policy_bomb(), ["policy", "validate", "bomb-policy.yaml"]),
        ("bomb-policy.yaml", policy_bomb(), ["check", "good.yaml", "-p", "bomb-policy.yaml", "--offline"]),
        ("bomb-list.yaml", list_bomb(), ["check", "bomb-list.yaml", "-p", "pins.yaml", "--offline"]),
    ],
    ids=["policy-validate", "check-p", "check-manifest-of-lists"],
)
def test_an_alias_bomb_is_refused_quickly_with_exit_2(
    tmp_path: Path, name: str, text: str, argv: list[str]
) -> None:
    (tmp_path / name).write_text(text)
    (tmp_path / "pins.yaml").write_text(PIN)
    (tmp_path / "good.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n"
    )
    assert len(text) < 5000
    code, output, took = baseguard(*argv, cwd=tmp_path)
    assert code == 2, output
    assert f"{name}: document 1: YAML aliases expand it by more than 100,000 nodes" in output
    assert "alias bomb" in output and "Traceback" not in output
    assert took < 10


@pytest.mark.parametrize(
    "argv",
    [["policy", "validate", "deep.json"], ["check", "deep.json", "-p", "pins.yaml", "--offline"]],
    ids=["policy-validate", "check"],
)
def test_json_nested_20000_deep_is_exit_2_not_a_recursion_error(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "deep.json").write_text("[" * 20_000 + "]" * 20_000)
    (tmp_path / "pins.yaml").write_text(PIN)
    code, output, _ = baseguard(*argv, cwd=tmp_path)
    assert code == 2, output
    assert "deep.json: nested more than 100 levels deep (lists and mappings); refused" in output
    assert "RecursionError" not in output


def test_yaml_nested_5000_deep_is_refused() -> None:
    """Whichever libyaml is installed: 0.2.5 and later refuse at their own limit (1,000
    levels, "exceeded maximum nesting depth"), older builds compose it (in quadratic time:
    20,000 deep takes ~7 s; 5,000 deep, 0.4 s) and our bound refuses it. Both read as ours."""
    with pytest.raises(InputError, match=r"^x.yaml: document 1: nested more than 100 levels deep"):
        list(yaml_documents("[" * 5_000 + "]" * 5_000, source="x.yaml"))


@pytest.mark.parametrize(
    "text",
    ["[" * 101 + "]" * 101, "".join(f"{'  ' * i}- \n" for i in range(101)) + "  " * 101 + "- x\n"],
    ids=["flow", "block"],
)
def test_yaml_nested_past_our_bound_but_within_libyamls_is_refused_by_ours(text: str) -> None:
    """101 levels is far inside every libyaml's own limit: only our bound can refuse it."""
    with pytest.raises(InputError, match=r"^x.yaml: document 1: nested more than 100 levels deep"):
        list(yaml_documents(text, source="x.yaml"))


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(InputError, match=r"a YAML alias refers to a node that contains it \(line 1\)"):
        list(yaml_documents("&a [1, *a]\n", source="x.yaml"))


def test_ordinary_aliases_and_nesting_still_load() -> None:
    """Anchors for shared env lists are common in hand-written manifests; they stay fine,
    and a JSON document 100 deep (deeper than any Kubernetes object) loads."""
    env = ", ".join(f"{{name: V{i}, value: x}}" for i in range(50))
    text = f"a: &env [{env}]\nb: *env\nc: *env\n"
    [(_, _, data)] = yaml_documents(text, source="x.yaml")
    assert isinstance(data, dict) and data["b"] == data["a"]
    assert json_data("[" * 100 + "]" * 100, source="x.json") is not None
    width = MAX_ALIAS_NODES // 1000  # just under the bound: 1,000 aliases of a ~100-node list
    big = "x: &x [" + ", ".join("1" for _ in range(width - 1)) + "]\ny: [" + ", ".join(["*x"] * 990) + "]\n"
    assert len(list(yaml_documents(big, source="x.yaml"))) == 1
