"""``baseguard serve``: policy files (reload, broken files, last good kept), TLS, the process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.webhook import POLICIES, fixture

from controller.cli.commands import serve
from controller.errors import InputError
from controller.policy.store import PolicyStore
from controller.policyfiles import PolicyFiles
from controller.webhook.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: {name}
spec:
  mode: {mode}
  pinning:
    disallowedTags: ["latest"]
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a change is seen even within one clock tick."""
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def keys(store: PolicyStore) -> list[str]:
    return [p.key for p in store.snapshot.policies]


# --------------------------------------------------------------------------- policy files


def test_a_folder_of_policies_loads_and_skips_tests_and_hidden(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", POLICY.format(name="a", mode="Enforce"))
    write(tmp_path / "sub" / "b.yml", POLICY.format(name="b", mode="Warn"))
    write(tmp_path / "tests" / "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
    write(tmp_path / ".hidden.yaml", "not: [valid")
    write(tmp_path / "README.md", "# not a policy")
    store = PolicyStore()
    snap = PolicyFiles([str(tmp_path)], store).load()
    assert keys(store) == ["a", "b"]
    assert snap.loaded and snap.errors == {}


def test_a_broken_file_keeps_its_last_good_policies_and_says_why(tmp_path: Path) -> None:
    good, other = tmp_path / "good.yaml", tmp_path / "other.yaml"
    write(good, POLICY.format(name="strict", mode="Enforce"))
    write(other, POLICY.format(name="other", mode="Warn"))
    store = PolicyStore()
    files = PolicyFiles([str(tmp_path)], store)
    files.load()
    before = {p.key: p for p in store.snapshot.policies}

    write(good, POLICY.format(name="strict", mode="Enforse"))
    write(other, POLICY.format(name="other", mode="Audit"))
    assert files.changed()
    snap = files.load()
    assert {p.key: p for p in snap.policies}["strict"] is before["strict"]  # last good, in force
    assert {p.key: p.mode.value for p in snap.policies} == {"strict": "Enforce", "other": "Audit"}
    (reason,) = snap.errors.values()
    assert list(snap.errors) == [str(good)]
    assert reason.startswith("document 1: spec.mode: ")
    assert "Enforse" in reason

    write(good, "kind: [unclosed")
    assert files.load().errors[str(good)].startswith(str(good))  # a YAML error names the file

    write(good, POLICY.format(name="strict", mode="Warn"))
    snap = files.load()
    assert snap.errors == {}
    assert {p.key: p.mode.value for p in snap.policies}["strict"] == "Warn"


def test_a_workload_in_a_policy_folder_is_an_error_not_ignored(tmp_path: Path) -> None:
    write(tmp_path / "oops.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
    snap = PolicyFiles([str(tmp_path)], PolicyStore()).load()
    assert "a Pod is not a policy" in snap.errors[str(tmp_path / "oops.yaml")]


def test_a_removed_file_takes_its_policies_a_missing_named_file_keeps_them(tmp_path: Path) -> None:
    folder, named = tmp_path / "dir", tmp_path / "named.yaml"
    write(folder / "a.yaml", POLICY.format(name="a", mode="Enforce"))
    write(named, POLICY.format(name="named", mode="Enforce"))
    store = PolicyStore()
    files = PolicyFiles([str(folder), str(named)], store)
    files.load()
    assert keys(store) == ["a", "named"]
    (folder / "a.yaml").unlink()
    named.unlink()
    assert files.changed()
    snap = files.load()
    assert keys(store) == ["named"]
    assert snap.errors == {str(named): f"{named}: no such file or directory"}


def test_a_policy_defined_twice_is_an_error_on_the_later_file(tmp_path: Path) -> None:
    write(tmp_path / "1.yaml", POLICY.format(name="dup", mode="Enforce"))
    write(tmp_path / "2.yaml", POLICY.format(name="dup", mode="Warn"))
    snap = PolicyFiles([str(tmp_path)], PolicyStore()).load()
    assert [p.mode.value for p in snap.policies] == ["Enforce"]
    assert snap.errors == {
        str(
            tmp_path / "2.yaml"
        ): f"ClusterBaseImagePolicy dup is also defined in {tmp_path / '1.yaml'}; "
        "this copy is ignored"
    }


async def test_the_watcher_picks_up_changes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, POLICY.format(name="p", mode="Enforce"))
    store = PolicyStore()
    files = PolicyFiles([str(path)], store)
    files.load()
    task = asyncio.create_task(files.watch(0.02))
    try:
        write(path, POLICY.format(name="p", mode="Audit"))
        await wait_for(lambda: store.snapshot.policies[0].mode.value == "Audit")
    finally:
        task.cancel()


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- start(): the whole server in-process


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest_asyncio.fixture
async def served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[dict[str, Any]]:
    """``serve`` started in-process with a self-signed pair and a fast policy reload."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    args = parse("-p", str(policies), "--offline", "--host", "127.0.0.1", "--port", "0")
    settings = Settings(host="127.0.0.1", port=0, policy_reload_interval=0.02)
    server = await serve.start(args, settings)
    out = capsys.readouterr().out
    pem = out[out.index("-----BEGIN CERTIFICATE-----") :]
    context = ssl.create_default_context(cadata=pem)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    yield {
        "server": server,
        "url": f"https://localhost:{server.port}",
        "session": session,
        "policies": policies,
        "out": out,
    }
    await session.close()
    await server.close()


async def test_serve_prints_its_ca_and_answers_over_tls(served: dict[str, Any]) -> None:
    assert "a self-signed certificate for localhost, 127.0.0.1 is in use" in served["out"]
    session: aiohttp.ClientSession = served["session"]
    async with session.post(
        f"{served['url']}/validate?timeout=10s", json=fixture("deployment-create.json")
    ) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["response"]["allowed"] is False
    async with session.get(f"{served['url']}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["message"] == "3 policies in force"


async def test_serve_reloads_policies_and_reports_a_broken_file(served: dict[str, Any]) -> None:
    session: aiohttp.ClientSession = served["session"]
    policies: Path = served["policies"]
    enforce = policies / "enforce-pinning.yaml"

    async def readyz() -> dict[str, Any]:
        async with session.get(f"{served['url']}/readyz") as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result

    async def allowed() -> bool:
        async with session.post(
            f"{served['url']}/validate", json=fixture("deployment-create.json")
        ) as resp:
            return bool((await resp.json())["response"]["allowed"])

    original = enforce.read_text()
    write(enforce, original.replace("mode: Enforce", "mode: Enforce\n  bogus: 1"))
    deadline = time.monotonic() + 5
    while not (await readyz())["errors"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    status = await readyz()
    assert status["errors"][str(enforce)].startswith("document 1: spec.bogus: ")
    assert status["policies"] == 3
    assert await allowed() is False  # the last good Enforce policy still denies

    write(enforce, original.replace("mode: Enforce", "mode: Warn"))
    while (await readyz())["errors"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await allowed() is True  # now only warns


def test_bad_arguments_are_input_errors(tmp_path: Path) -> None:
    async def attempt(*argv: str) -> None:
        await serve.start(parse(*argv), Settings(host="127.0.0.1", port=0))

    with pytest.raises(InputError, match="no such file or directory"):
        asyncio.run(attempt("-p", str(tmp_path / "missing"), "--offline"))
    write(tmp_path / "p.yaml", POLICY.format(name="p", mode="Enforce"))
    with pytest.raises(InputError, match="--tls-cert and --tls-key go together"):
        asyncio.run(
            attempt("-p", str(tmp_path), "--offline", "--tls-cert", str(tmp_path / "p.yaml"))
        )


# --------------------------------------------------------------------------- the real process


def start_serve(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    """A real ``baseguard serve`` process, listening: (it, its port, its CA file)."""
    cmd = [
        sys.executable, "-m", "controller", "serve", "-p", str(POLICIES), "--offline",
        "--host", "127.0.0.1", "--port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdout is not None
    lines = []
    port = None
    deadline = time.monotonic() + 20
    while port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        record = json.loads(line)  # every log line is JSON
        lines.append(record)
        if record["msg"] == "listening":
            port = record["port"]
    assert port, lines
    ca = tmp_path / "ca.pem"
    out = ""
    while "-----END CERTIFICATE-----" not in out:
        out += proc.stdout.readline()
    ca.write_text(out[out.index("-----BEGIN") :])
    return proc, port, ca


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_trickling_tls_connections_cost_little_memory(tmp_path: Path) -> None:
    """400 TLS connections that send a byte of their head and wait: each costs the
    process ~120 KiB (OpenSSL's state, aiohttp's handler), not the 350 KiB it did
    when asyncio zero-filled a 256 KiB read buffer for every one."""
    proc, port, ca = start_serve(tmp_path)
    try:
        before = rss_kib(proc.pid)

        async def hold(count: int) -> int:
            context = ssl.create_default_context(cafile=str(ca))
            writers = []
            for _ in range(count):
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
                writer.write(b"P")
                writers.append(writer)
            await asyncio.gather(*(w.drain() for w in writers))
            await asyncio.sleep(0.5)
            grown = rss_kib(proc.pid) - before
            for writer in writers:
                writer.close()
            return grown

        grown = asyncio.run(hold(400))
        assert grown < 400 * 200, f"{grown} KiB for 400 connections"
    finally:
        proc.kill()
        proc.wait()


def test_baseguard_serve_runs_logs_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, port, ca = start_serve(tmp_path)
    try:
        assert proc.stderr is not None
        async def call() -> dict[str, Any]:
            context = ssl.create_default_context(cafile=str(ca))
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
                session.post(
                    f"https://127.0.0.1:{port}/validate", json=fixture("pod-create.json")
                ) as resp,
            ):
                result: dict[str, Any] = await resp.json()
                return result

        assert asyncio.run(call())["response"]["allowed"] is False
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (decision,) = [r for r in rest if r["msg"] == "decision"]
    assert {k: decision[k] for k in ("kind", "namespace", "name", "operation", "verdict", "dry_run")} == {
        "kind": "Pod", "namespace": "prod", "name": "web", "operation": "CREATE", "verdict": "deny", "dry_run": False,
    }  # fmt: skip
    assert decision["uid"] == fixture("pod-create.json")["request"]["uid"]
    assert decision["rules"] == [
        "audit-docker-hub/registry-not-allowed", "enforce-pinning/disallowed-tag", "warn-versions/unpinned",
    ]  # fmt: skip
    assert {v["where"] for v in decision["violations"]} == {
        'container "proxy"',
        'image volume "models"',
    }
    assert any(r["msg"] == "shutting down" for r in rest)
