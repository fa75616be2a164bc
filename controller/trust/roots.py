"""The keyless trust root: a ``trusted_root.json`` file read once, offline.

The file is the Sigstore trusted-root format
(``application/vnd.dev.sigstore.trustedroot+json;version=0.1``): the Fulcio
certificate authorities, the CT logs' keys (for the SCT in each signing
certificate) and the transparency logs' keys (for checkpoints and inclusion
promises), each with its validity period. It is parsed by ``sigstore``'s
``TrustedRoot.from_file``; no TUF repository is consulted, ever: updating the
file is an operator's act, out of band.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier

from controller.errors import BaseguardError

#: A trusted root is a handful of keys and certificates; anything far larger is not one.
MAX_ROOT_BYTES = 1 << 20


class InvalidTrustRoot(BaseguardError):
    """A ``trusted_root.json`` that cannot be used: unreadable, not the format, missing a part."""


@dataclass(frozen=True)
class TrustRoot:
    """A loaded trusted root and the ``sigstore`` verifier built on it (built once, reused)."""

    path: str
    trusted_root: TrustedRoot = field(repr=False)
    verifier: Verifier = field(repr=False)


def load_trusted_root(path: str | Path) -> TrustRoot:
    """The trusted root at ``path``; :class:`InvalidTrustRoot` says what is wrong with it."""
    where = str(path)
    try:
        size = Path(where).stat().st_size
    except OSError as exc:
        raise InvalidTrustRoot(f"{where}: cannot read the trusted root ({exc.strerror})") from None
    if size > MAX_ROOT_BYTES:
        raise InvalidTrustRoot(
            f"{where}: {size} bytes, larger than a trusted root can be ({MAX_ROOT_BYTES})"
        )
    try:
        doc = json.loads(Path(where).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidTrustRoot(f"{where}: not JSON ({exc})") from None
    # Each part keyless verification needs, named here rather than failing at the first bundle.
    for part, needed_for in (
        ("certificateAuthorities", "the signing certificates' chain"),
        ("ctlogs", "the certificates' SCTs"),
        ("tlogs", "the transparency log's checkpoints and promises"),
    ):
        if not isinstance(doc, dict) or not doc.get(part):
            raise InvalidTrustRoot(f"{where}: no {part} (needed for {needed_for})")
    try:
        root = TrustedRoot.from_file(where)
        root.get_fulcio_certs()
        verifier = Verifier(trusted_root=root)
    except (SigstoreError, ValueError) as exc:
        raise InvalidTrustRoot(f"{where}: not a usable trusted root: {exc}") from None
    return TrustRoot(where, root, verifier)
