"""The registry package's modules meet at public names only.

A module that imports another's underscored name (or reaches into another
object's underscored attributes) depends on what that module is free to
change: the seam between them is then nowhere written down. Read from the
source (AST), so a new reach-in fails here, not in a refactoring later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "controller" / "registry"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def reach_ins(path: Path) -> list[str]:
    """``from x import _y`` and ``obj._y`` where ``obj`` is not ``self``/``cls`` (its own)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("controller"):
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls", "view"}:
                continue  # its own state (``view`` is a RegistryClient built by RegistryClient)
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_module_of_the_registry_package_uses_anothers_underscored_names(path: Path) -> None:
    assert reach_ins(path) == []
