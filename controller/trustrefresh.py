"""A new ``trusted_root.json`` through a TUF repository, out of band.

Admission never fetches trust: the webhook, ``check`` and the operator read the
keyless trusted root from a file (:mod:`controller.trust.roots`). Sigstore
rotates its keys now and then, and this is how the file follows, by an operator's
act (a CronJob, a CI job, a person): ``baseguard trust refresh`` runs ``tuf``'s
client against the repository (Sigstore's public one by default, or a private
mirror), which checks the chain of roots, the timestamp's freshness and every
signature and hash before handing over the target; only then is the target read
as a trusted root and, if it differs from the file, written in its place
atomically. Whatever fails leaves the file as it was.

The anchor of a first refresh is a TUF root: ``--root``, or, for Sigstore's public
repository, the copy the ``sigstore`` package ships (a data file of that package,
read as a file). Later refreshes start from the root kept in the metadata folder,
which TUF moves forward only through roots signed by their predecessors.

This module is the only one that imports ``tuf`` (an import contract says so):
nothing on the admission path can reach the network through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.ngclient.updater import Updater
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from controller.errors import BaseguardError
from controller.trust.roots import InvalidTrustRoot, load_trusted_root

#: Sigstore's public-good TUF repository, whose ``trusted_root.json`` signs what Fulcio and Rekor do.
SIGSTORE_REPOSITORY = "https://tuf-repo-cdn.sigstore.dev"
#: The target's name in Sigstore's repositories (and the name GitHub's offline verification uses).
TARGET = "trusted_root.json"


class RefreshFailed(BaseguardError):
    """The repository could not be read, did not verify, or its target is not a trusted root."""


@dataclass(frozen=True)
class Refreshed:
    """What a refresh did: the file, whether its bytes changed, and what the new root holds."""

    path: Path
    changed: bool
    sha256: str
    authorities: int
    tlogs: int
    ctlogs: int


def default_metadata_dir(repository: str) -> Path:
    """Where the verified TUF metadata of ``repository`` is kept between refreshes."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "baseguard" / "tuf" / quote(repository, safe="")


def _bundled_root(repository: str) -> bytes | None:
    """The TUF root the ``sigstore`` package ships for ``repository``, if it ships one."""
    try:
        shipped = resources.files("sigstore") / "_store" / quote(repository, safe="") / "root.json"
        return shipped.read_bytes() if shipped.is_file() else None
    except (OSError, ModuleNotFoundError):
        return None


def _anchor(repository: str, root: Path | None, metadata_dir: Path) -> bytes | None:
    """The root to start from: ``root``, else the kept one (None: TUF reads it), else the shipped one."""
    if root is not None:
        try:
            return root.read_bytes()
        except OSError as exc:
            raise RefreshFailed(f"{root}: cannot read the TUF root ({exc.strerror})") from None
    if (metadata_dir / "root.json").is_file():
        return None
    shipped = _bundled_root(repository.rstrip("/"))
    if shipped is None:
        raise RefreshFailed(
            f"no TUF root for {repository}: give --root FILE, the repository's root.json "
            "obtained out of band (its first version, or any later one you trust)"
        )
    return shipped


def refresh_trusted_root(
    out: Path,
    *,
    repository: str = SIGSTORE_REPOSITORY,
    root: Path | None = None,
    metadata_dir: Path | None = None,
    target: str = TARGET,
    timeout: int = 30,
) -> Refreshed:
    """Fetch ``target`` from ``repository`` through TUF and put it at ``out`` if it changed.

    Raises :class:`RefreshFailed`, naming what failed; ``out`` is then untouched.
    """
    repository = repository.rstrip("/")
    metadata = metadata_dir or default_metadata_dir(repository)
    try:
        metadata.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RefreshFailed(f"{metadata}: cannot keep TUF metadata there ({exc.strerror})") from None
    bootstrap = _anchor(repository, root, metadata)
    out = out.absolute()
    with tempfile.TemporaryDirectory(prefix=".trust-refresh-", dir=_writable_parent(out)) as tmp:
        fetched = Path(tmp) / target.rsplit("/", 1)[-1]
        try:
            updater = Updater(
                metadata_dir=str(metadata),
                metadata_base_url=f"{repository}/",
                target_base_url=f"{repository}/targets/",
                target_dir=tmp,
                fetcher=Urllib3Fetcher(socket_timeout=timeout),
                bootstrap=bootstrap,
            )
            updater.refresh()
            info = updater.get_targetinfo(target)
            if info is None:
                raise RefreshFailed(f"{repository}: the repository's targets have no {target}")
            updater.download_target(info, filepath=str(fetched))
        except DownloadError as exc:
            raise RefreshFailed(f"{repository}: cannot fetch ({_reason(exc)})") from None
        except RepositoryError as exc:
            raise RefreshFailed(
                f"{repository}: the repository does not verify ({_reason(exc)}); "
                f"{out.name} is unchanged"
            ) from None
        except (OSError, ValueError) as exc:
            raise RefreshFailed(f"{repository}: {_reason(exc)}") from None
        try:
            trust = load_trusted_root(fetched)
        except InvalidTrustRoot as exc:
            detail = str(exc).removeprefix(f"{fetched}: ")
            raise RefreshFailed(
                f"{repository}: its {target} verifies but is not a usable trusted root ({detail}); "
                f"{out.name} is unchanged"
            ) from None
        data = fetched.read_bytes()
        changed = not out.is_file() or out.read_bytes() != data
        if changed:
            try:
                os.replace(fetched, out)
            except OSError as exc:
                raise RefreshFailed(f"{out}: cannot write ({exc.strerror})") from None
    authorities = json.loads(data)["certificateAuthorities"]
    return Refreshed(
        out,
        changed,
        hashlib.sha256(data).hexdigest(),
        len(authorities),
        len(trust.tlog_keys),
        len(trust.ct_keys),
    )


def _writable_parent(out: Path) -> Path:
    """``out``'s folder (created if missing), so that the final rename is atomic."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RefreshFailed(f"{out.parent}: cannot create ({exc.strerror})") from None
    return out.parent


def _reason(exc: BaseException) -> str:
    """An exception's message, or its type's name when it has none."""
    return str(exc) or type(exc).__name__
