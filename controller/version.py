"""What ``baseguard --version`` says: the release, the commit it was built from, the CRD API version.

A bug report or an incident needs the exact build, and a cluster operator needs
to know which CRD version the binary speaks before applying its CRDs. The
commit is found, in order:

1. ``controller/commit.txt``, written when the package is built from a
   checkout (the image build writes it from ``--build-arg BASEGUARD_COMMIT``,
   since its build context holds no ``.git``);
2. the git checkout the package is run from, when this package *is* the
   source tree (an editable install, or ``python -m controller`` in a clone): ``HEAD`` read from the ``.git`` folder or
   worktree file, without running ``git`` (which may not be installed);
3. otherwise ``unknown``. Nothing here raises: ``--version`` never prints a
   traceback, whatever state the tree is in.
"""

from __future__ import annotations

import re
from pathlib import Path

from controller import __version__
from controller.policy.model import API_VERSION

#: Written beside this module by a build that knows its commit.
COMMIT_FILE = "commit.txt"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _sha(text: str) -> str | None:
    text = text.strip()
    return text if _SHA.match(text) else None


def _git_dir(start: Path) -> Path | None:
    """The git directory of the checkout holding ``start``: ``.git`` itself, or a worktree's."""
    for folder in (start, *start.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            line = dot.read_text(encoding="utf-8", errors="replace").strip()
            if line.startswith("gitdir:"):
                target = Path(line.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (folder / target).resolve()
            return None
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    """A ref's commit: a loose ref file, else ``packed-refs``; a worktree shares its main's refs."""
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        target = Path(commondir.read_text(encoding="utf-8", errors="replace").strip())
        common = target if target.is_absolute() else (git_dir / target).resolve()
    for folder in dict.fromkeys((git_dir, common)):
        loose = folder / ref
        if loose.is_file():
            return _sha(loose.read_text(encoding="utf-8", errors="replace"))
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return _sha(sha)
    return None


def checkout_commit(start: Path) -> str | None:
    """The commit ``HEAD`` names in the checkout holding ``start``; ``None`` when not known."""
    try:
        git_dir = _git_dir(start)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8", errors="replace").strip()
        if head.startswith("ref:"):
            return _resolve_ref(git_dir, head.removeprefix("ref:").strip())
        return _sha(head)  # a detached HEAD
    except (OSError, ValueError):
        return None


def commit() -> tuple[str, str]:
    """``(commit, where it was read)``; ``("unknown", …)`` when neither source knows it."""
    here = Path(__file__).resolve().parent
    try:
        recorded = _sha((here / COMMIT_FILE).read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        recorded = None
    if recorded is not None:
        return recorded, "recorded at build"
    # Only the source tree itself: a package installed into a virtualenv that happens to
    # live inside some checkout must not report that checkout's HEAD.
    found = checkout_commit(here) if (here.parent / "pyproject.toml").is_file() else None
    if found is not None:
        return found, "from the checkout"
    return "unknown", "not recorded at build, not run from a git checkout"


def version_text() -> str:
    """The lines ``baseguard --version`` prints."""
    sha, where = commit()
    return f"baseguard {__version__}\ncommit: {sha} ({where})\nCRD API version: {API_VERSION}"
