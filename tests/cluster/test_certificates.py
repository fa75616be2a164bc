"""Item 5: the operator's certificates as the apiserver sees them.

The leader keeps the serving pair in a Secret and the CA in the caBundle of both
webhook configurations; the apiserver verifies every call against that bundle. A
rotation must never leave the apiserver without an answer: here the serving
certificate is made to live 40 seconds and be replaced 30 seconds before expiry,
and every dry-run request sent meanwhile must get baseguard's own denial (the
workload webhook fails open, so a TLS failure would show up as an admission).
"""

from __future__ import annotations

import base64
import ssl
import time

from cluster.cluster_support import Baseguard, Installation, apply_ready, denial, pod, policy
from cryptography import x509
from support.controlplane import ControlPlane
from support.registry import RegistryProcess

NO_LATEST = {"mode": "Enforce", "pinning": {"disallowedTags": ["latest"]}}


def served_serial(port: int) -> int:
    """The serial number of the certificate baseguard presents on ``port``."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return int(x509.load_pem_x509_certificate(pem.encode()).serial_number)


def test_the_secret_and_both_ca_bundles(
    control_plane: ControlPlane, installation: Installation, baseguard: Baseguard
) -> None:
    secret = installation.secret()
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(data)
    ca = data["ca.crt"]
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert ca in (installation.ca_bundle("validatingwebhookconfiguration") or b"")
    # The mutating webhook is registered only while a policy pins (tests/cluster/test_mutation.py
    # checks the entry the leader installs); when it is, it trusts the same CA.
    mutating = installation.ca_bundle("mutatingwebhookconfiguration")
    assert mutating is None or ca in mutating
    # The serving certificate names the URL's host (--cert-host from webhook.url).
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert "baseguard.baseguard-system.svc" in names.get_values_for_type(x509.DNSName)
    assert served_serial(baseguard.port) == cert.serial_number


def test_rotation_while_the_apiserver_keeps_getting_answers(
    control_plane: ControlPlane,
    installation: Installation,
    baseguard: Baseguard,
    ns: str,
    registry: RegistryProcess,
) -> None:
    apply_ready(control_plane, policy("no-latest", NO_LATEST, namespace=ns))
    bad = pod("probe", f"{registry.host}/cluster/app:latest", namespace=ns)
    baseguard.stop()
    # Short lifetimes apply to certificates issued from now on: start from a new pair.
    control_plane.kubectl("delete", "secret", "baseguard-tls", "-n", installation.namespace)
    rotating = installation.process(
        "replica-a", baseguard.port, "--cert-validity=40s", "--cert-renew-before=30s"
    ).start()
    try:
        installation.wait_until_served(rotating)
        bundle = installation.ca_bundle()
        serials: set[int] = set()
        answered = 0
        deadline = time.monotonic() + 90
        while len(serials) < 3 and time.monotonic() < deadline:
            printed = denial(control_plane.apply([bad], "--dry-run=server", check=False))
            assert (
                'admission webhook "workloads.validate.baseguard.io" denied the request' in printed
            ), printed
            answered += 1
            serials.add(served_serial(rotating.port))
        assert len(serials) >= 3, f"{len(serials)} serving certificates seen in {answered} requests"
        # The CA did not change: the apiserver never needed a new caBundle.
        assert installation.ca_bundle() == bundle
    finally:
        rotating.stop()
        baseguard.start()
        installation.wait_until_served(baseguard)
