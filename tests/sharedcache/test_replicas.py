"""Three real ``baseguard serve`` processes sharing one real redis-server, reviewing pods
whose images are on the real docker-registry: registry requests counted at the faulty
proxy in front of it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from support.faulty_proxy import FaultyProxy
from support.redis_server import RedisServer
from support.registry import RegistryProcess
from support.webhook import fixture

from .test_sharing import push_two_platforms

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata:
  name: no-old-base
spec:
  mode: Enforce
  lineage:
    onLookupFailure: Deny
    onUnknownBase: Allow
  bases:
    deprecated:
      - image: "*/t/old-base"
        reason: "old"
"""


class Serve:
    """One ``baseguard serve`` process; its JSON log in a file (a pipe could fill and stall it)."""

    def __init__(self, tmp: Path, index: int, argv: list[str]) -> None:
        self.log = tmp / f"serve-{index}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "serve", "--host", "127.0.0.1", "--port", "0", *argv],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log.open("w"), env={**os.environ, "NO_COLOR": "1"},
        )
        self.port = 0

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            for record in self.records():
                if record["msg"] == "listening":
                    self.port = record["port"]
                    return
            time.sleep(0.05)
        raise AssertionError(f"serve did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def review(uid: str, image: str) -> dict[str, Any]:
    doc = fixture("pod-create.json")
    doc["request"]["uid"] = uid
    doc["request"]["object"]["spec"] = {"containers": [{"name": "app", "image": image}]}
    return doc


async def validate(port: int, uid: str, image: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session,
        session.post(f"https://127.0.0.1:{port}/validate?timeout=10s", json=review(uid, image)) as resp,
    ):
        answer: dict[str, Any] = (await resp.json())["response"]
        return answer


def test_three_serve_processes_share_one_cold_lookup_and_a_restart_is_warm(
    tmp_path: Path, registry: RegistryProcess, proxy: FaultyProxy, redis_server: RedisServer,
    key_file: str, unique_repo: str,
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "policy.yaml").write_text(POLICY)
    registries = tmp_path / "registries.yaml"
    registries.write_text(f'registries:\n  - {{host: "{proxy.host}", insecure: true}}\n')
    argv = ["-p", str(tmp_path / "policies"), "--registry-config", str(registries),
            "--shared-cache", redis_server.url, "--shared-cache-key-file", key_file,
            # a fresh process's first review imports and warms up for a while: wait for it
            "--shared-cache-wait", "3s"]
    first = push_two_platforms(registry, f"{unique_repo}-first")
    second = push_two_platforms(registry, f"{unique_repo}-second")
    replicas = [Serve(tmp_path, i, argv) for i in range(3)]
    restarted: Serve | None = None
    try:
        for replica in replicas:
            replica.wait_listening()

        # one replica, cold
        proxy.clear()
        answer = asyncio.run(validate(replicas[0].port, "one", f"{proxy.host}/{unique_repo}-first:v1"))
        assert answer["allowed"] is True, answer
        one = proxy.count()
        one_probes = proxy.count(r"/referrers/")
        assert one >= 6

        # three replicas at once, cold: the requests of one
        proxy.clear()

        async def all_three() -> list[dict[str, Any]]:
            image = f"{proxy.host}/{unique_repo}-second:v1"
            return await asyncio.gather(
                *(validate(r.port, f"three-{i}", image) for i, r in enumerate(replicas))
            )

        answers = asyncio.run(all_three())
        assert [a["allowed"] for a in answers] == [True] * 3, answers
        three = proxy.count()
        paths = [seen.path for seen in proxy.seen]
        assert len(set(paths)) == len(paths), paths  # nothing asked twice, by any replica
        # The same documents as one replica asked for. Only the referrers API probes vary
        # (1 or 2, alone or not): once one answers "no such API", the next digest skips it.
        assert three - proxy.count(r"/referrers/") == one - one_probes, paths
        assert proxy.count(r"/referrers/") <= 2

        # a restarted replica: warm, no registry request
        replicas[0].stop()
        restarted = Serve(tmp_path, 3, argv)
        restarted.wait_listening()
        proxy.clear()
        answer = asyncio.run(validate(restarted.port, "again", f"{proxy.host}/{unique_repo}-first:v1"))
        assert answer["allowed"] is True, answer
        assert proxy.count() == 0
        print(f"\nregistry requests: 1 replica cold {one}; 3 replicas cold {three}; after a restart 0"
              f" (digests {first[:19]}, {second[:19]})")
    finally:
        for replica in [*replicas, *([restarted] if restarted else [])]:
            replica.stop()
