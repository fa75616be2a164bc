"""``baseguard trust refresh`` against a TUF repository the tests make and serve on 127.0.0.1.

The real ``tuf`` client checks the repository; what a user sees is the command's
line, its exit code and the file: written when the verified target changed, left
byte for byte as it was on every failure.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from support.sigstore_root import LocalSigstore
from support.tuf_repo import LocalTufRepository, served

from controller.trust.roots import load_trusted_root


def refresh(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "trust", "refresh", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> LocalTufRepository:
    return LocalTufRepository(tmp_path / "repo")


@pytest.fixture
def url(repo: LocalTufRepository) -> Iterator[str]:
    with served(repo.directory) as base:
        yield base


def a_trusted_root(tmp_path: Path, name: str) -> bytes:
    folder = tmp_path / name
    folder.mkdir()
    return LocalSigstore(folder).path.read_bytes()


def first_refresh(
    tmp_path: Path, repo: LocalTufRepository, url: str
) -> tuple[Path, Path, bytes]:
    out, meta = tmp_path / "trust" / "trusted_root.json", tmp_path / "meta"
    content = a_trusted_root(tmp_path, "first")
    repo.publish(content)
    done = refresh("--out", out, "--repository", url, "--root", repo.root_json, "--metadata-dir", meta)
    assert done.returncode == 0, done.stderr
    return out, meta, content


def test_a_refresh_writes_the_verified_root_then_leaves_an_unchanged_one_alone(
    tmp_path: Path, repo: LocalTufRepository, url: str
) -> None:
    out, meta, content = first_refresh(tmp_path, repo, url)
    assert out.read_bytes() == content
    load_trusted_root(out)  # what `--trusted-root` then reads
    first = out.stat()

    again = refresh("--out", out, "--repository", url, "--metadata-dir", meta)
    assert again.returncode == 0, again.stderr
    assert f"{out} unchanged from {url}" in again.stdout
    assert "1 certificate authorities, 1 transparency logs, 1 CT logs" in again.stdout
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_a_new_root_published_is_written_starting_from_the_kept_metadata(
    tmp_path: Path, repo: LocalTufRepository, url: str
) -> None:
    out, meta, _ = first_refresh(tmp_path, repo, url)
    rotated = a_trusted_root(tmp_path, "rotated")
    repo.publish(rotated)

    done = refresh("--out", out, "--repository", url, "--metadata-dir", meta)  # no --root now
    assert done.returncode == 0, done.stderr
    assert f"{out} updated from {url}" in done.stdout
    assert out.read_bytes() == rotated


@pytest.mark.parametrize(
    "attack",
    ["tampered target", "expired timestamp", "timestamp signed by an unknown key"],
)
def test_a_repository_that_does_not_verify_is_refused_and_the_file_kept(
    tmp_path: Path, repo: LocalTufRepository, url: str, attack: str
) -> None:
    out, meta, content = first_refresh(tmp_path, repo, url)
    newer = a_trusted_root(tmp_path, "newer")
    if attack == "tampered target":
        served_file = repo.publish(newer)
        # The same length, so only the hash can tell: the log's URL points elsewhere.
        served_file.write_bytes(served_file.read_bytes().replace(b"rekor.test", b"rekor.evil"))
    elif attack == "expired timestamp":
        repo.publish(newer, timestamp_expires=datetime.now(UTC) - timedelta(hours=1))
    else:
        repo.publish(newer, timestamp_signer=CryptoSigner.generate_ecdsa())

    done = refresh("--out", out, "--repository", url, "--metadata-dir", meta)
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr
    assert f"baseguard trust refresh: {url}: the repository does not verify (" in done.stderr
    assert "trusted_root.json is unchanged" in done.stderr
    assert out.read_bytes() == content


def test_a_verified_target_that_is_not_a_trusted_root_is_refused(
    tmp_path: Path, repo: LocalTufRepository, url: str
) -> None:
    out, meta, content = first_refresh(tmp_path, repo, url)
    repo.publish(json.dumps({"mediaType": "something else", "tlogs": []}).encode())

    done = refresh("--out", out, "--repository", url, "--metadata-dir", meta)
    assert done.returncode == 2
    assert "verifies but is not a usable trusted root (no certificateAuthorities" in done.stderr
    assert out.read_bytes() == content


def test_no_root_to_start_from_and_an_unreachable_repository_are_clear_errors(
    tmp_path: Path,
) -> None:
    out = tmp_path / "trusted_root.json"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    no_root = refresh("--out", out, "--repository", nowhere, "--metadata-dir", tmp_path / "m")
    assert no_root.returncode == 2
    assert f"no TUF root for {nowhere}: give --root FILE" in no_root.stderr

    root = tmp_path / "root.json"
    root.write_bytes(LocalTufRepository(tmp_path / "r").root_json.read_bytes())
    unreachable = refresh(
        "--out", out, "--repository", nowhere, "--root", root, "--metadata-dir", tmp_path / "m",
        "--timeout", "5",
    )
    assert unreachable.returncode == 2
    assert "Traceback" not in unreachable.stderr
    assert f"baseguard trust refresh: {nowhere}: cannot fetch (" in unreachable.stderr
    assert not out.exists()
