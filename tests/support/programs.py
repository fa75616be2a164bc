"""Real programs for the credential tests: a Docker credential helper and a kubelet plugin.

Both are small Python scripts written into a directory by a fixture and run
by baseguard exactly as the Docker CLI and the kubelet run theirs: a
``docker-credential-<name>`` on ``$PATH`` speaking ``get`` (server name on
stdin, ``{"ServerURL","Username","Secret"}`` on stdout), and a plugin in a bin
dir speaking ``credentialprovider.kubelet.k8s.io/v1`` (a
``CredentialProviderRequest`` on stdin, a ``CredentialProviderResponse`` on
stdout). Each appends what it was asked to a log file, so tests can count runs
and read the requests.

The plugin's environment (the provider's ``env`` in its config) shapes its
answer: ``CACHE_KEY_TYPE``, ``CACHE_DURATION``; ``SLEEP`` seconds before it
answers (so concurrent runs overlap and :func:`most_at_once` can see them);
``FLOOD_BYTES`` makes it print that many bytes instead of an answer.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

HELPER = """#!{python}
import json, sys
server = sys.stdin.read().strip()
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "server": server}}) + "\\n")
if sys.argv[1:] != ["get"]:
    sys.exit(2)
store = json.load(open({store!r}))
if server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = store[server]
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
"""

PLUGIN = """#!{python}
import json, os, sys, time
start = time.time()
request = json.loads(sys.stdin.read())
entry = {{"argv": sys.argv[1:], "request": request, "pid": os.getpid(), "start": start}}
flood = int(os.environ.get("FLOOD_BYTES", "0"))
if flood:  # print far more than any answer: log first, the run is killed mid-way
    with open({log!r}, "a") as log:
        log.write(json.dumps(entry) + "\\n")
    chunk = b"x" * (1024 * 1024)
    for _ in range(flood // len(chunk)):
        sys.stdout.buffer.write(chunk)
    sys.exit(0)
time.sleep(float(os.environ.get("SLEEP", "0")))
entry["end"] = time.time()
with open({log!r}, "a") as log:
    log.write(json.dumps(entry) + "\\n")
if request.get("kind") != "CredentialProviderRequest" or not request.get("image"):
    sys.exit(3)
store = json.load(open(sys.argv[1]))
response = {{
    "apiVersion": request["apiVersion"],
    "kind": "CredentialProviderResponse",
    "cacheKeyType": os.environ.get("CACHE_KEY_TYPE", "Registry"),
    "auth": {{pattern: {{"username": u, "password": p}} for pattern, (u, p) in store.items()}},
}}
if os.environ.get("CACHE_DURATION"):
    response["cacheDuration"] = os.environ["CACHE_DURATION"]
print(json.dumps(response))
"""


@dataclass
class Program:
    path: Path
    log: Path
    store: Path

    def calls(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def images(self) -> list[str]:
        """The image of each run, in the order the runs ended."""
        return [str(call["request"]["image"]) for call in self.calls()]  # type: ignore[index]

    def most_at_once(self) -> int:
        """The most runs that were alive at the same moment (from their start and end times)."""
        events = sorted(
            [(float(c["start"]), 1) for c in self.calls() if "end" in c]  # type: ignore[arg-type]
            + [(float(c["end"]), -1) for c in self.calls() if "end" in c]  # type: ignore[arg-type]
        )
        alive = most = 0
        for _, step in events:
            alive += step
            most = max(most, alive)
        return most

    def set_store(self, entries: dict[str, tuple[str, str]]) -> None:
        self.store.write_text(json.dumps(entries))


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def docker_helper(directory: Path, name: str, entries: dict[str, tuple[str, str]]) -> Program:
    """``docker-credential-<name>`` in ``directory``: server name → (Username, Secret)."""
    directory.mkdir(parents=True, exist_ok=True)
    program = Program(directory / f"docker-credential-{name}", directory / f"{name}.log", directory / f"{name}.json")
    program.set_store(entries)
    _write(program.path, HELPER.format(python=sys.executable, log=str(program.log), store=str(program.store)))
    return program


def provider_plugin(bin_dir: Path, name: str, entries: dict[str, tuple[str, str]]) -> Program:
    """A credential provider plugin ``bin_dir/<name>``; its first argument names its store."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    program = Program(bin_dir / name, bin_dir / f"{name}.log", bin_dir / f"{name}.json")
    program.set_store(entries)
    _write(program.path, PLUGIN.format(python=sys.executable, log=str(program.log)))
    return program


def path_with(directory: Path) -> str:
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
