"""Start Debian's ``docker-registry`` (distribution 2.8.2) on a free 127.0.0.1 port.

Three variants, all with filesystem storage in a temporary directory:
plain HTTP, TLS + htpasswd basic auth, and bearer-token auth against
:class:`support.token_server.TokenServer`. Start to ready is ~50 ms, so a
session-scoped fixture starts each variant once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support.images import Pusher

if TYPE_CHECKING:
    from support.token_server import TokenServer

BINARY = "docker-registry"
INSTALL_HINT = "apt-get install docker-registry"


def registry_binary() -> str | None:
    return shutil.which(BINARY)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def make_tls_cert(directory: Path, *, common_name: str = "127.0.0.1") -> TlsFiles:
    """A self-signed server certificate for 127.0.0.1 and localhost (1 day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert_path, key_path)


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt entry from the real ``htpasswd`` binary (2.8.2 only honours bcrypt)."""
    exe = shutil.which("htpasswd")
    if exe is None:
        raise RuntimeError("htpasswd is missing: apt-get install apache2-utils")
    out = subprocess.run(
        [exe, "-Bbn", username, password], check=True, capture_output=True, text=True
    ).stdout
    return out.strip() + "\n"


@dataclass
class RegistryProcess:
    """A running ``docker-registry serve``; ``host`` is what image references use."""

    host: str
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    pusher: Pusher = field(init=False)

    def __post_init__(self) -> None:
        self.pusher = Pusher(
            self.url,
            ssl_context=self.ssl_context(),
            authorization=self._auth,
            mount=self.token_server is None,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def _auth(self, repository: str) -> str | None:
        if self.token_server is not None:
            return "Bearer " + self.token_server.mint(repository, ("pull", "push"), subject="pusher")
        if self.username is not None and self.password is not None:
            import base64

            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    # Pusher shortcuts, so tests write ``registry.push_image(...)``.
    def push_image(self, repository: str, tag: str | None, layers: Any, **kwargs: Any) -> Any:
        return self.pusher.push_image(repository, tag, layers, **kwargs)

    def push_index(self, repository: str, tag: str | None, entries: Any, **kwargs: Any) -> Any:
        return self.pusher.push_index(repository, tag, entries, **kwargs)

    def push_blob(self, repository: str, data: bytes) -> Any:
        return self.pusher.push_blob(repository, data)

    def push_manifest(self, repository: str, ref: str, body: bytes, media_type: str) -> str:
        return self.pusher.push_manifest(repository, ref, body, media_type)

    @property
    def log(self) -> str:
        path = self.workdir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _config_yaml(
    *, data: Path, addr: str, tls: TlsFiles | None, auth: dict[str, Any] | None
) -> str:
    import json

    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(data)}, "delete": {"enabled": True}},
        "http": {"addr": addr, "secret": "test-only-secret"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    if auth is not None:
        config["auth"] = auth
    return json.dumps(config, indent=2)  # JSON is YAML


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    htpasswd: tuple[str, str] | None = None,
    token_server: TokenServer | None = None,
    ready_timeout: float = 10.0,
    port: int | None = None,
) -> RegistryProcess:
    """Start a registry and wait until ``GET /v2/`` answers (200 or 401)."""
    exe = registry_binary()
    if exe is None:
        raise RuntimeError(f"{BINARY} not found: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{port or free_port()}"
    tls_files = make_tls_cert(workdir / "tls") if tls else None
    auth: dict[str, Any] | None = None
    if htpasswd is not None:
        path = workdir / "htpasswd"
        path.write_text(htpasswd_line(*htpasswd))
        auth = {"htpasswd": {"realm": "test-realm", "path": str(path)}}
    elif token_server is not None:
        auth = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_file),
            }
        }
    config = workdir / "config.yml"
    config.write_text(_config_yaml(data=workdir / "data", addr=host, tls=tls_files, auth=auth))
    log = (workdir / "registry.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    process = subprocess.Popen(
        [exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()
    scheme = "https" if tls_files else "http"
    reg = RegistryProcess(
        host=host,
        url=f"{scheme}://{host}",
        workdir=workdir,
        process=process,
        ca_file=str(tls_files.cert) if tls_files else None,
        username=htpasswd[0] if htpasswd else None,
        password=htpasswd[1] if htpasswd else None,
        token_server=token_server,
    )
    _wait_ready(reg, ready_timeout)
    return reg


def _wait_ready(reg: RegistryProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ctx = reg.ssl_context()
    while True:
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {reg.process.returncode}:\n{reg.log}")
        try:
            with urllib.request.urlopen(f"{reg.url}/v2/", timeout=1, context=ctx):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry not ready within {timeout}s:\n{reg.log}")
        time.sleep(0.02)
