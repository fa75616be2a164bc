"""``baseguard trust refresh``: update the keyless trusted root out of band, through TUF.

The admission path reads ``trusted_root.json`` from a file and never reaches the
network for it; this command is how the file follows Sigstore's key rotations,
from a CronJob or a CI job (docs/trust.md). ``tuf`` is imported only here, when the
command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from controller.cli.options import docs
from controller.errors import ExitCode


def register(sub: Any) -> None:
    p = sub.add_parser(
        "trust",
        help="keyless trust roots: refresh",
        epilog=docs("trust.md"),
    )
    psub = p.add_subparsers(dest="trust_command", metavar="SUBCOMMAND", required=True)
    r = psub.add_parser(
        "refresh",
        help="fetch a new trusted_root.json through TUF and write it if it changed",
        description="Fetch trusted_root.json from a TUF repository (Sigstore's public one by "
        "default, or a mirror), verified by the tuf client: the chain of roots from the one you "
        "trust, the timestamp's freshness, every signature and hash. The result must then load "
        "as a trusted root; only then, and only if its bytes differ, is OUT replaced (atomically). "
        "On any failure OUT is left as it was. The verified metadata is kept in --metadata-dir, "
        "so later refreshes start from the newest root reached.",
        epilog="Exit codes: 0 written or unchanged, 2 the repository could not be reached or did "
        "not verify, or its target is not a trusted root (OUT untouched). " + docs("trust.md"),
    )
    r.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="the trusted_root.json to update"
    )
    r.add_argument(
        "--repository",
        default=None,
        metavar="URL",
        help="the TUF repository (default: Sigstore's public one, https://tuf-repo-cdn.sigstore.dev)",
    )
    r.add_argument(
        "--root",
        type=Path,
        metavar="FILE",
        help="the TUF root.json to trust first (default: the one kept in --metadata-dir from an "
        "earlier refresh, else, for Sigstore's repository, the root shipped with sigstore)",
    )
    r.add_argument(
        "--metadata-dir",
        type=Path,
        metavar="DIR",
        help="where verified TUF metadata is kept (default: ~/.cache/baseguard/tuf/<repository>)",
    )
    r.add_argument(
        "--target",
        default="trusted_root.json",
        metavar="NAME",
        help="the target's name in the repository (default trusted_root.json)",
    )
    r.add_argument(
        "--timeout", type=int, default=30, metavar="SECONDS", help="per request (default 30)"
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from controller.trustrefresh import SIGSTORE_REPOSITORY, RefreshFailed, refresh_trusted_root

    repository = args.repository or SIGSTORE_REPOSITORY
    try:
        done = refresh_trusted_root(
            args.out,
            repository=repository,
            root=args.root,
            metadata_dir=args.metadata_dir,
            target=args.target,
            timeout=args.timeout,
        )
    except RefreshFailed as exc:
        print(f"baseguard trust refresh: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    what = "updated" if done.changed else "unchanged"
    print(
        f"baseguard trust refresh: {done.path} {what} from {repository} (sha256:{done.sha256}; "
        f"{done.authorities} certificate authorities, {done.tlogs} transparency logs, "
        f"{done.ctlogs} CT logs)"
    )
    return ExitCode.OK
