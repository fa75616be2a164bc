"""The operator's placeholder serving pair leaves no private key behind in /tmp."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import pytest

from controller.operator.serving_secret import ServingPair


def test_the_operator_s_placeholder_pair_goes_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator serves a throw-away pair until it reads its Secret; its key must not
    outlive it in /tmp (a test run used to leave a dozen)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pair = ServingPair.placeholder()
    assert pair.directory is not None and (pair.directory / "tls.key").is_file()
    del pair
    gc.collect()
    assert list(tmp_path.iterdir()) == []
