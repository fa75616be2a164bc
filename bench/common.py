"""What the bench scripts share: the load line, a module as it was at a revision, and a
real registry behind the counting proxy.

Figures from a busy machine are not comparable, so every script prints :func:`load`
with its figures; the registry benches count requests where the registry sees them
(the test suite's faulty proxy, used without faults, in front of Debian's
``docker-registry``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    """The load average, as ``uptime`` prints it."""
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def module_at(rev: str, path: str) -> ModuleType:
    """The module at ``path`` (from the checkout's root) as it was at ``rev``, imported
    under another name, so a bench can time the old code beside the new in one run."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    name = "baseline_" + Path(path).stem
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@dataclass
class CountedRegistry:
    """A scratch folder, the registry started in it, and the counting proxy in front."""

    workdir: Path
    registry: Any
    proxy: Any


@contextmanager
def counted_registry(bench: str) -> Iterator[CountedRegistry]:
    """Start ``docker-registry`` and the proxy for ``bench/<bench>.py``; stop and clean up
    after. Without ``docker-registry`` the script exits 2 with how to install it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.faulty_proxy import FaultyProxy
    from support.registry import INSTALL_HINT, registry_binary, start_registry

    if registry_binary() is None:
        print(f"bench/{bench}.py needs docker-registry: {INSTALL_HINT}", file=sys.stderr)
        raise SystemExit(2)
    workdir = Path(tempfile.mkdtemp(prefix=f"baseguard-bench-{bench}-"))
    registry = proxy = None
    try:
        registry = start_registry(workdir / "registry")
        proxy = FaultyProxy(registry.url).start()
        yield CountedRegistry(workdir, registry, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
