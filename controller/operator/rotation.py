"""The webhook's certificates: a CA and a serving certificate, planned without I/O.

The apiserver only calls the webhook over HTTPS and checks the serving
certificate against the ``caBundle`` of the webhook configurations. The
operator (the leader) keeps both in step; this module decides *what* they
should hold, :mod:`controller.operator.serving_secret` writes it.

Lifetimes and rotation, and why:

* the serving certificate lives :attr:`Lifetimes.serving` (90 days) and is
  replaced when less than :attr:`Lifetimes.renew_before` (30 days) is left,
  when the Service's DNS names change, or when it is not signed by the
  current CA. Replicas load the new pair without a restart; the CA, and so
  the ``caBundle``, stay the same, so the swap is invisible to the apiserver;
* the CA lives :attr:`Lifetimes.ca` (5 years) and is replaced when a third of
  its life is left. A CA change is done in two steps so no replica ever
  serves a certificate the apiserver does not trust yet: first the new CA is
  added *beside* the old one (the old one moves to ``ca-previous.crt``, the
  ``caBundle`` holds both, the serving certificate is untouched); only once
  the ``caBundle`` holds the new CA (``trusted=True``) is a serving
  certificate issued from it. The old CA leaves the bundle when it expires.

Keys are ECDSA P-256: small, fast to generate, accepted by every apiserver.
The Secret is of type ``kubernetes.io/tls`` (``tls.crt``, ``tls.key``, plus
``ca.crt``), the shape cert-manager writes too, so replicas read either.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from controller.tls.issuing import (
    issue_ca,
    issue_serving,
    load_cert,
    load_key,
)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
PREVIOUS_CA = "ca-previous.crt"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
SECRET_TYPE = "kubernetes.io/tls"

#: Issued certificates start this much in the past, so a node whose clock is a
#: little behind does not see a certificate from the future.


@dataclass(frozen=True)
class Lifetimes:
    """How long certificates live and when they are replaced."""

    ca: dt.timedelta = dt.timedelta(days=5 * 365)
    """Validity of the CA. Replaced when a third of it is left."""

    serving: dt.timedelta = dt.timedelta(days=90)
    """Validity of the serving certificate."""

    renew_before: dt.timedelta = dt.timedelta(days=30)
    """A serving certificate with less than this left is replaced. Must be
    shorter than :attr:`serving`, or every check would issue a new one."""

    def __post_init__(self) -> None:
        if self.renew_before >= self.serving:
            raise ValueError(
                f"renew_before ({self.renew_before}) must be shorter than the serving "
                f"certificate's validity ({self.serving})"
            )


@dataclass(frozen=True)
class Bundle:
    """PEM texts of the CA, its key, the serving pair and, during a CA change, the old CA."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    previous_ca: bytes | None = None

    def secret_data(self) -> dict[str, str]:
        """The Secret's ``data`` (base64 of each PEM)."""
        data = {CA_CERT: self.ca_cert, CA_KEY: self.ca_key, TLS_CERT: self.cert, TLS_KEY: self.key}
        if self.previous_ca:
            data[PREVIOUS_CA] = self.previous_ca
        return {k: base64.b64encode(v).decode() for k, v in data.items()}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, Any] | None) -> Bundle | None:
        """The bundle in a Secret's ``data``; ``None`` when a part is missing or unreadable.

        A Secret someone else wrote (cert-manager, a user) has no ``ca.key``:
        then the operator cannot sign, and returns ``None`` here (the caller
        decides whether to take the Secret over).
        """
        if not isinstance(data, Mapping):
            return None
        parts: dict[str, bytes] = {}
        for name in (CA_CERT, CA_KEY, TLS_CERT, TLS_KEY, PREVIOUS_CA):
            value = data.get(name)
            if value is None:
                continue
            try:
                parts[name] = base64.b64decode(str(value), validate=True)
            except ValueError:
                return None
        if any(name not in parts for name in (CA_CERT, CA_KEY, TLS_CERT, TLS_KEY)):
            return None
        bundle = cls(
            ca_cert=parts[CA_CERT],
            ca_key=parts[CA_KEY],
            cert=parts[TLS_CERT],
            key=parts[TLS_KEY],
            previous_ca=parts.get(PREVIOUS_CA),
        )
        try:
            load_cert(bundle.ca_cert)
            load_cert(bundle.cert)
            load_key(bundle.ca_key)
            load_key(bundle.key)
        except ValueError:
            return None
        return bundle


def service_hosts(service: str, namespace: str) -> tuple[str, ...]:
    """The DNS names the apiserver may use for a Service: ``svc``, ``svc.ns``, ``svc.ns.svc`` and the FQDN."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


# --------------------------------------------------------------------------- issuing


# --------------------------------------------------------------------------- judging


def expires(pem: bytes) -> dt.datetime:
    """When a PEM certificate stops being valid."""
    return load_cert(pem).not_valid_after_utc


def hosts_of(pem: bytes) -> frozenset[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        san = load_cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    out = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    out |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return frozenset(out)


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True when ``cert_pem`` was issued by the CA in ``ca_pem`` (signature checked)."""
    try:
        load_cert(cert_pem).verify_directly_issued_by(load_cert(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def needs_rotation(cert_pem: bytes, now: dt.datetime, *, renew_before: dt.timedelta) -> bool:
    """True when less than ``renew_before`` is left (or the certificate is unreadable)."""
    try:
        return expires(cert_pem) - now < renew_before
    except ValueError:
        return True


def _ca_due(ca_pem: bytes, now: dt.datetime) -> bool:
    """A CA with less than a third of its life left is replaced."""
    try:
        cert = load_cert(ca_pem)
    except ValueError:
        return True
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < life / 3


def plan(
    current: Bundle | None,
    *,
    hosts: Sequence[str],
    now: dt.datetime,
    lifetimes: Lifetimes,
    trusted: bool,
) -> Bundle:
    """What the Secret should hold now. Returns ``current`` itself when nothing is due.

    ``trusted`` says whether every webhook configuration's ``caBundle``
    already holds ``current.ca_cert``: a serving certificate from a new CA is
    only issued once it is (see the module docstring).
    """
    if current is None or now >= expires(current.ca_cert):
        ca_cert, ca_key = issue_ca(now=now, validity=lifetimes.ca)
        cert, key = issue_serving(
            ca_cert=ca_cert, ca_key=ca_key, hosts=hosts, now=now, validity=lifetimes.serving
        )
        return Bundle(ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key)
    bundle = current
    if bundle.previous_ca is not None and now >= expires(bundle.previous_ca):
        bundle = replace(bundle, previous_ca=None)
    if _ca_due(bundle.ca_cert, now) and bundle.previous_ca is None:
        ca_cert, ca_key = issue_ca(now=now, validity=lifetimes.ca)
        # step 1 of a CA change: trust both, serve the old pair a little longer
        return replace(bundle, ca_cert=ca_cert, ca_key=ca_key, previous_ca=bundle.ca_cert)
    from_current_ca = signed_by(bundle.cert, bundle.ca_cert)
    stale = (
        not from_current_ca
        or needs_rotation(bundle.cert, now, renew_before=lifetimes.renew_before)
        or not set(hosts) <= hosts_of(bundle.cert)
    )
    if not stale:
        return bundle
    waiting = (
        not from_current_ca
        and not trusted
        and bundle.previous_ca is not None
        and signed_by(bundle.cert, bundle.previous_ca)
        and now < expires(bundle.cert)
    )
    if waiting:
        return bundle  # step 2 of a CA change waits until every caBundle holds the new CA
    cert, key = issue_serving(
        ca_cert=bundle.ca_cert,
        ca_key=bundle.ca_key,
        hosts=hosts,
        now=now,
        validity=lifetimes.serving,
    )
    return replace(bundle, cert=cert, key=key)


def trust_bundle(bundle: Bundle, now: dt.datetime) -> bytes:
    """The PEM ``caBundle``: the CA, plus the previous CA while it is still valid."""
    out = bundle.ca_cert
    if bundle.previous_ca is not None and now < expires(bundle.previous_ca):
        out = out.rstrip(b"\n") + b"\n" + bundle.previous_ca
    return out


# --------------------------------------------------------------------------- webhook configurations


def ca_bundle_patch(config: Mapping[str, Any], ca_bundle: bytes) -> list[dict[str, Any]] | None:
    """A JSON Patch putting ``ca_bundle`` in every webhook of a (Validating|Mutating)WebhookConfiguration.

    ``None`` when every webhook already has it. Each replacement is guarded by
    a ``test`` of the webhook's name, so a configuration that changed since it
    was read (a Helm upgrade reordering webhooks) makes the patch fail instead
    of writing the bundle into the wrong entry; the next check reads it again.
    """
    encoded = base64.b64encode(ca_bundle).decode()
    webhooks = config.get("webhooks")
    if not isinstance(webhooks, list):
        return None
    ops: list[dict[str, Any]] = []
    for index, hook in enumerate(webhooks):
        if not isinstance(hook, Mapping):
            continue
        client = hook.get("clientConfig")
        current = client.get("caBundle") if isinstance(client, Mapping) else None
        if current == encoded:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook.get("name")})
        if isinstance(client, Mapping):
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
            )
        else:
            ops.append(
                {
                    "op": "add",
                    "path": f"/webhooks/{index}/clientConfig",
                    "value": {"caBundle": encoded},
                }
            )
    return ops or None


def trusts(config: Mapping[str, Any], ca_cert: bytes) -> bool:
    """True when every webhook of ``config`` has a ``caBundle`` that contains ``ca_cert``."""
    webhooks = config.get("webhooks")
    if not isinstance(webhooks, list) or not webhooks:
        return False
    wanted = ca_cert.strip()
    for hook in webhooks:
        client = hook.get("clientConfig") if isinstance(hook, Mapping) else None
        value = client.get("caBundle") if isinstance(client, Mapping) else None
        if not isinstance(value, str):
            return False
        try:
            pem = base64.b64decode(value)
        except ValueError:
            return False
        if wanted not in pem:
            return False
    return True
