"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager.

Built from source by ``tests/cluster/build.sh`` (one pinned release, cached outside
the repository). No kubelet and no scheduler: Pods stay Pending, which is all
admission needs, while the controller-manager still turns Deployments into
ReplicaSets and Pods (generated names, ownerReferences), creates every namespace's
``default`` ServiceAccount and runs the garbage collector.

Everything the apiserver decides is real: RBAC (``--authorization-mode=RBAC``), the
webhook admission plugins calling baseguard, CRD schemas and their CEL rules with the
apiserver's own cost estimator, and an audit log at Metadata level in which webhook
``auditAnnotations`` appear. Certificates are made with ``cryptography``; nothing
listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.tls.issuing import issue_ca, load_cert, load_key, pem_key
from support.registry import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tests" / "cluster" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
HOUR = dt.timedelta(hours=1)

#: Only what the suite needs: Deployments/ReplicaSets/Jobs/CronJobs make Pods, namespaces
#: get their ``default`` ServiceAccount (the ServiceAccount admission plugin refuses Pods
#: without one), deleted owners take their dependents along.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "cronjob-controller",
    "serviceaccount-controller",
    "garbage-collector-controller",
    "namespace-controller",
)

#: Metadata for every request that changes something; reads, watches and the steady
#: Lease renewals would only bury the entries the tests look for.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [get, list, watch]
  - level: None
    resources: [{group: coordination.k8s.io, resources: [leases]}]
  - level: Metadata
"""

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """The control plane could not start or a kubectl call failed (message says which)."""


def binaries_dir() -> tuple[Path, bool]:
    """Where build.sh caches this release's binaries, and whether all of them are there."""
    env = os.environ.get("BASEGUARD_K8S_BIN")
    if env:
        where = Path(env)
        return where, all((where / b).is_file() for b in BINARIES)
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--where"], capture_output=True, text=True, check=False
    )
    return Path(done.stdout.strip()), done.returncode == 0


def wait_for(
    what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:  # None, False and empty collections mean "not yet"
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


# --- certificates ---------------------------------------------------------------------------


def _leaf(
    ca: tuple[bytes, bytes],
    *,
    common_name: str,
    organization: str | None = None,
    hosts: Sequence[str] = (),
    usage: x509.ObjectIdentifier,
) -> tuple[bytes, bytes]:
    """A certificate signed by ``ca`` for a server (``hosts``) or a client (CN=user, O=group)."""
    ca_cert, ca_key = load_cert(ca[0]), load_key(ca[1])
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + 24 * HOUR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def kubeconfig(server: str, ca_pem: bytes, user: Mapping[str, str], *, name: str = "test") -> str:
    """A one-context kubeconfig (JSON is YAML) for ``user`` (token or client-certificate-data)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": dict(user)}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        },
        indent=1,
    )


def _cert_user(pair: tuple[bytes, bytes]) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(pair[0]).decode(),
        "client-key-data": base64.b64encode(pair[1]).decode(),
    }


# --- the processes --------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``directory``; ``start()`` then ``stop()``."""

    directory: Path
    bin: Path
    processes: list[Process] = field(default_factory=list)
    api_port: int = 0
    ca_pem: bytes = b""
    admin_kubeconfig: Path = Path()
    audit_log: Path = Path()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    # -- start / stop

    def start(self) -> ControlPlane:
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca = issue_ca(now=now, validity=24 * HOUR, name="baseguard test cluster CA")
        self.ca_pem = ca[0]
        _write(d / "ca.crt", ca[0], 0o644)
        serving = _leaf(
            ca,
            common_name="kube-apiserver",
            hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
            ),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )
        _write(d / "apiserver.crt", serving[0]), _write(d / "apiserver.key", serving[1])
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(
            d / "sa.key",
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        _write(
            d / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        admin = _leaf(
            ca,
            common_name="kubernetes-admin",
            organization="system:masters",
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        kcm = _leaf(
            ca, common_name="system:kube-controller-manager", usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        _write(d / "audit-policy.yaml", AUDIT_POLICY)
        self.audit_log = d / "audit.log"

        etcd_port, peer_port = free_port(), free_port()
        self.api_port = free_port()
        self.admin_kubeconfig = _write(
            d / "admin.kubeconfig", kubeconfig(self.server, ca[0], _cert_user(admin))
        )
        _write(d / "kcm.kubeconfig", kubeconfig(self.server, ca[0], _cert_user(kcm)))
        self._admin_pair = (d / "admin.crt", d / "admin.key")
        _write(self._admin_pair[0], admin[0]), _write(self._admin_pair[1], admin[1])

        etcd = self._spawn(
            "etcd",
            [
                "--name=test",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._await(
            etcd, "etcd health", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), 60
        )

        apiserver = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The default reconciler refuses a loopback address for the kubernetes
                # Service's endpoints; nothing here needs them.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--audit-policy-file={d / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=blocking",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._await(apiserver, "kube-apiserver /readyz", lambda: self._get("/readyz") == 200, 180)

        manager = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={d / 'kcm.kubeconfig'}",
                f"--authentication-kubeconfig={d / 'kcm.kubeconfig'}",
                f"--authorization-kubeconfig={d / 'kcm.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=" + ",".join(CONTROLLERS),
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )
        self._await(
            manager,
            "the default ServiceAccount (controller-manager running)",
            lambda: (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            120,
        )

    def _spawn(self, name: str, args: Sequence[str]) -> Process:
        log = self.directory / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(self.bin / name), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _await(
        self, process: Process, what: str, check: Callable[[], bool], timeout: float
    ) -> None:
        def ready() -> bool:
            if process.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with {process.popen.returncode} before {what}:\n{process.tail()}"
                )
            return check()

        try:
            wait_for(what, ready, timeout=timeout, interval=0.2)
        except TimeoutError as exc:
            raise ControlPlaneError(f"{exc}; {process.name} log:\n{process.tail()}") from None

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    # -- talking to it

    def _get(self, path: str) -> int:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.load_cert_chain(*self._admin_pair)
        try:
            with urllib.request.urlopen(self.server + path, context=context, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, urllib.error.URLError):
            return 0

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as the admin (or ``kubeconfig``'s user); ``check`` raises with stderr."""
        env = {**os.environ, "KUBECONFIG": str(kubeconfig or self.admin_kubeconfig)}
        done = subprocess.run(
            [str(self.bin / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
            )
        return done

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(
        self, objects: Sequence[Mapping[str, Any]] | str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of ``objects`` (a list of dicts, or YAML/JSON text)."""
        text = (
            objects
            if isinstance(objects, str)
            else json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        )
        return self.kubectl("apply", "-f", "-", *extra, input=text, check=check)

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, duration: str = "2h"
    ) -> Path:
        """A kubeconfig holding a TokenRequest token of ``namespace/name``: its RBAC and nothing more."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        return _write(path, kubeconfig(self.server, self.ca_pem, {"token": token}, name=name))

    def namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create ``name`` and wait for its ``default`` ServiceAccount (Pods need it)."""
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": dict(labels or {})},
                }
            ]
        )
        wait_for(
            f"the default ServiceAccount of {name}",
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            timeout=60,
            interval=0.1,
        )
        return name

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """The entries of the apiserver's audit log so far."""
        with self.audit_log.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def audit_mark(self) -> int:
        """How many audit entries there are now (pass as ``since`` to look only at later ones)."""
        with self.audit_log.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
