"""``--shared-cache`` settings: a bad one is a clear error and exit 2 before anything is
served; a database that does not answer is not an error."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from support.redis_server import SilentServer
from support.webhook import POLICIES

from controller.cli.commands import serve
from controller.errors import InputError
from controller.webhook.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(["-p", str(POLICIES), *argv])


async def attempt(namespace: argparse.Namespace) -> None:
    from controller.cli.options import webhook_settings

    settings = webhook_settings(namespace)
    started = await serve.start(namespace, Settings(**{**settings.__dict__, "host": "127.0.0.1", "port": 0}))
    await started.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shared-cache", "redis://:hunter2@127.0.0.1:6379"], "the URL carries a password"),
        (["--shared-cache", "http://127.0.0.1:6379"], "expected redis://"),
        (["--shared-cache", "redis://127.0.0.1:6379"], "needs --shared-cache-key-file"),
        (["--shared-cache", "redis://127.0.0.1:6379", "--shared-cache-key-file", "/nonexistent/key"],
         "cannot read the shared cache's key file"),
        (["--shared-cache-key-file", "/k"], "need --shared-cache URL"),
    ],
    ids=["password-in-url", "not-redis", "no-key", "unreadable-key", "key-without-url"],
)
def test_bad_shared_cache_settings_are_refused_with_a_reason(argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        asyncio.run(attempt(args(*argv)))


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("too short\n")
    with pytest.raises(InputError, match="at least 32 are needed"):
        asyncio.run(attempt(args("--shared-cache", "redis://127.0.0.1:6379", "--shared-cache-key-file", str(key))))


def test_a_database_that_does_not_answer_does_not_stop_serve_from_starting(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 40)
    silent = SilentServer()
    try:
        asyncio.run(attempt(args("--shared-cache", silent.url, "--shared-cache-key-file", str(key))))
    finally:
        silent.close()


def test_the_process_exits_2_and_never_prints_the_password() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller", "serve", "-p", str(POLICIES), "--host", "127.0.0.1",
         "--port", "0", "--shared-cache", "redis://user:hunter2@127.0.0.1:6379"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--shared-cache-password-file" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


async def test_the_password_comes_from_its_file_and_a_wrong_one_is_a_fallback(tmp_path: Path) -> None:
    from support.redis_server import require_redis, start_redis

    from controller.sharedcache import SharedCacheConfig, open_tier

    require_redis()
    server = start_redis(tmp_path / "redis", password="correct horse")
    key = tmp_path / "key"
    key.write_text("k" * 40)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("correct horse\n")  # a Secret's file often ends in a newline
    wrong.write_text("battery staple\n")
    tiers = [
        open_tier(SharedCacheConfig(url=server.url, key_file=str(key), password_file=str(path), timeout=1.0))
        for path in (right, wrong)
    ]
    try:
        good, bad = tiers
        await good.put(("tag", "r", "repo", "v1", "anonymous"), b"sha256:" + b"a" * 64, 30)
        found = await good.get(("tag", "r", "repo", "v1", "anonymous"))
        assert found is not None and found.value == b"sha256:" + b"a" * 64
        assert await bad.get(("tag", "r", "repo", "v1", "anonymous")) is None  # no error raised
        assert bad.stats.fallbacks["error"] == 1
    finally:
        for tier in tiers:
            await tier.close()
        server.kill()
