"""``make demo``: a local registry with a small family of images, the webhook in front of it.

1. starts Debian's ``docker-registry`` on 127.0.0.1:5055 (storage under ``.demo/``);
2. pushes sample images: debian → python 3.12 / 3.8 → apps that are honest,
   deprecated, lying about their base, unannotated-but-detectable and unknown;
3. starts ``baseguard serve`` with the bundled EOL and pinning policies plus
   ``demo/policies/`` (an allowlist for the demo registry) on https://127.0.0.1:8443 (a CA made for the demo);
4. sends the AdmissionReviews in ``demo/reviews/`` and prints each verdict;
5. leaves the webhook running for you to try with curl, until Ctrl-C.

Needs no internet: only loopback. Run from the repository root.

A second ``make demo`` while one runs finds the ports taken and stops before it
touches anything (the first one's registry data and certificates stay as they
are). ``DEMO_EXIT=1`` sends the reviews and stops instead of waiting for Ctrl-C;
``DEMO_DIR`` moves the working folder (default ``.demo/``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.images import layer  # noqa: E402
from support.registry import registry_binary, start_registry  # noqa: E402

from controller.tls.serving import self_signed  # noqa: E402

REGISTRY_PORT = 5055
WEBHOOK_PORT = 8443
WORK = Path(os.environ.get("DEMO_DIR") or ROOT / ".demo")
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def claim(pushed: object) -> dict[str, str]:
    return {BASE_NAME: pushed.tagged, BASE_DIGEST: pushed.digest}  # type: ignore[attr-defined]


def seed(reg: object) -> None:
    push = reg.push_image  # type: ignore[attr-defined]
    debian_l = layer({"etc/os-release": "ID=debian\nVERSION_ID=13\n"})
    debian = push("library/debian", "13-slim", [debian_l])
    py312 = push(
        "library/python",
        "3.12-slim",
        [debian_l, layer({"usr/local/bin/python3.12": "#!python 3.12.7\n"})],
        annotations=claim(debian),
    )
    py38 = push(
        "library/python",
        "3.8-slim",
        [debian_l, layer({"usr/local/bin/python3.8": "#!python 3.8.20\n"})],
        annotations=claim(debian),
    )
    py312_layers = [debian_l, layer({"usr/local/bin/python3.12": "#!python 3.12.7\n"})]
    py38_layers = [debian_l, layer({"usr/local/bin/python3.8": "#!python 3.8.20\n"})]
    # An honest multi-arch app: annotated, and its claim holds by layers.
    amd = push("shop/api", None, [*py312_layers, layer({"app/main.py": "print('api')\n"})], annotations=claim(py312))
    arm = push("shop/api", None, [*py312_layers, layer({"app/main.py": "print('api')\n"})], annotations=claim(py312), arch="arm64", variant="v8")
    reg.push_index("shop/api", "1.4.2", [(amd, "linux/amd64"), (arm, "linux/arm64/v8")], attestations=True)  # type: ignore[attr-defined]
    # Still on Python 3.8.
    push("shop/legacy", "2.0.1", [*py38_layers, layer({"app/legacy.py": "print('legacy')\n"})], annotations=claim(py38))
    # A label that lies: it claims 3.12, the layers say 3.8.
    push("shop/liar", "1.0.0", [*py38_layers, layer({"app/liar.py": "print('liar')\n"})], labels=claim(py312))
    # No claim at all, but its layers start with python:3.12-slim (catalog detection).
    push("shop/detected", "1.0.0", [*py312_layers, layer({"app/detected.py": "print('d')\n"})])
    # No claim and no known layers: nobody can say what it is built on.
    push("shop/mystery", "1.0.0", [layer({"bin/sh": "mystery\n"}), layer({"app/m": "m\n"})])
    del py38


def wait_ready(url: str, context: ssl.SSLContext, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the webhook did not become ready at {url}; see {WORK / 'serve.log'}")
        time.sleep(0.2)


def send(path: Path, context: ssl.SSLContext) -> dict[str, object]:
    req = urllib.request.Request(
        f"https://127.0.0.1:{WEBHOOK_PORT}/validate?timeout=10s",
        data=path.read_bytes(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, context=context, timeout=15) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def describe(name: str, answer: dict[str, object]) -> str:
    response = answer["response"]
    assert isinstance(response, dict)
    if not response.get("allowed"):
        message = response.get("status", {}).get("message", "")
        return f"DENY   {name}: " + str(message).replace("\n", "\n          ")
    warnings = response.get("warnings") or []
    if warnings:
        return f"WARN   {name}: " + " | ".join(warnings)
    return f"ALLOW  {name}"


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (a bind fails; TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def main() -> int:
    taken = [p for p in (REGISTRY_PORT, WEBHOOK_PORT) if port_in_use(p)]
    if taken:
        ports = " and ".join(f"127.0.0.1:{p}" for p in taken)
        print(
            f"make demo: {ports} already in use -- is another `make demo` running? "
            "Stop it with Ctrl-C (or free the port) and try again. Nothing was changed.",
            file=sys.stderr,
        )
        return 2
    if registry_binary() is None:
        print("make demo needs Debian's docker-registry: apt-get install -y docker-registry", file=sys.stderr)
        return 2
    WORK.mkdir(exist_ok=True)
    subprocess.run(["rm", "-rf", str(WORK / "registry")], check=True)
    print(f"1. registry on 127.0.0.1:{REGISTRY_PORT} (storage in {WORK / 'registry'})")
    reg = start_registry(WORK / "registry", port=REGISTRY_PORT)
    serve = None
    try:
        print("2. pushing sample images: debian:13-slim → python:3.12-slim / 3.8-slim → shop/*")
        seed(reg)
        ca, cert, key = self_signed(["localhost", "127.0.0.1"]).write(WORK / "tls")
        print(f"3. baseguard serve on https://127.0.0.1:{WEBHOOK_PORT} (CA: {ca})")
        log = (WORK / "serve.log").open("w")
        serve = subprocess.Popen(
            [
                sys.executable, "-m", "controller", "serve",
                "-p", str(ROOT / "policies" / "eol"), "-p", str(ROOT / "policies" / "pinning"),
                "-p", str(ROOT / "demo" / "policies"),
                "--registry-config", str(ROOT / "demo" / "registries.yaml"),
                "--host", "127.0.0.1", "--port", str(WEBHOOK_PORT),
                "--tls-cert", str(cert), "--tls-key", str(key),
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        context = ssl.create_default_context(cafile=str(ca))
        wait_ready(f"https://127.0.0.1:{WEBHOOK_PORT}/readyz", context)
        if serve.poll() is not None:  # ready, but not ours: the port was taken meanwhile
            raise SystemExit(f"baseguard serve exited ({serve.returncode}); see {WORK / 'serve.log'}")
        print("4. sample AdmissionReviews (demo/reviews/*.json):")
        for path in sorted((ROOT / "demo" / "reviews").glob("*.json")):
            print("   " + describe(path.stem, send(path, context)))
        print(
            "\nbaseguard lineage shows what an image is built on:\n"
            f"  baseguard lineage 127.0.0.1:{REGISTRY_PORT}/shop/api:1.4.2 --registry-config demo/registries.yaml\n"
            "\nThe webhook keeps running (log: .demo/serve.log). Try it:\n"
            f"  curl --cacert {ca.relative_to(ROOT)} -H 'Content-Type: application/json' \\\n"
            f"       --data @demo/reviews/legacy.json https://127.0.0.1:{WEBHOOK_PORT}/validate\n"
            f"  curl --cacert {ca.relative_to(ROOT)} https://127.0.0.1:{WEBHOOK_PORT}/metrics\n"
            "Ctrl-C stops the webhook and the registry."
        )
        if os.environ.get("DEMO_EXIT") == "1":  # for scripted runs
            return 0
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=10)
        reg.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
