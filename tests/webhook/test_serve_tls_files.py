"""``baseguard serve`` without a certificate leaves no private key behind in /tmp."""

from __future__ import annotations

import argparse
import ssl
import tempfile
from pathlib import Path

import aiohttp
import pytest
from support.webhook import POLICIES

from controller.cli.commands import serve
from controller.webhook.settings import Settings


async def test_a_self_signed_serve_leaves_no_tls_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["-p", str(POLICIES), "--offline", "--host", "127.0.0.1", "--port", "0"])
    server = await serve.start(args, Settings(host="127.0.0.1", port=0))
    try:
        assert list(scratch.iterdir()) == []  # the pair is in memory only, from the start
        out = capsys.readouterr().out
        context = ssl.create_default_context(cadata=out[out.index("-----BEGIN CERTIFICATE-----") :])
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.get(f"https://localhost:{server.port}/healthz") as resp,
        ):
            assert resp.status == 200
    finally:
        await server.close()
    assert list(scratch.iterdir()) == []

