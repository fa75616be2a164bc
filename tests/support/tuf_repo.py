"""A TUF repository made by the tests, served over HTTP on 127.0.0.1.

Built with ``tuf``'s own metadata API and signed with keys the tests make, laid out as
Sigstore's repository is (consistent snapshots: ``N.snapshot.json``, ``N.targets.json``,
targets prefixed by their SHA-256), so ``baseguard trust refresh`` runs the real TUF
client against it without the internet.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")


class LocalTufRepository:
    """One signing key for every role (enough to exercise the client's checks)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "targets").mkdir(parents=True, exist_ok=True)
        self.signer = CryptoSigner.generate_ecdsa()
        root = Root(expires=self.later(365), consistent_snapshot=True)
        for role in ROLES:
            root.add_key(self.signer.public_key, role)
        self.root = Metadata(root)
        self._write(self.root, "1.root.json")
        self.version = 0

    @staticmethod
    def later(days: float) -> datetime:
        return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)

    def _write(self, md: Metadata[Any], name: str, signer: CryptoSigner | None = None) -> None:
        md.signatures.clear()
        md.sign(signer or self.signer)
        md.to_file(str(self.directory / name), serializer=JSONSerializer(compact=False))

    @property
    def root_json(self) -> Path:
        """The first root, as an operator obtains it out of band to trust the repository."""
        return self.directory / "1.root.json"

    def publish(
        self,
        content: bytes,
        name: str = "trusted_root.json",
        *,
        timestamp_expires: datetime | None = None,
        timestamp_signer: CryptoSigner | None = None,
    ) -> Path:
        """A new version of the targets, snapshot and timestamp naming ``content``; its file's path."""
        self.version += 1
        v = self.version
        target = TargetFile.from_data(name, content, ["sha256"])
        targets = Targets(version=v, expires=self.later(30))
        targets.targets[name] = target
        self._write(Metadata(targets), f"{v}.targets.json")
        snapshot = Snapshot(version=v, expires=self.later(7))
        snapshot.meta["targets.json"] = MetaFile(version=v)
        self._write(Metadata(snapshot), f"{v}.snapshot.json")
        timestamp = Timestamp(version=v, expires=timestamp_expires or self.later(1))
        timestamp.snapshot_meta = MetaFile(version=v)
        self._write(Metadata(timestamp), "timestamp.json", timestamp_signer)
        path = self.directory / "targets" / f"{hashlib.sha256(content).hexdigest()}.{name}"
        path.write_bytes(content)
        return path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
