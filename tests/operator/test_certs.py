"""Certificates: issuing, judging, the rotation plan and the caBundle patch (pure)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from controller.operator import rotation as certs
from controller.operator.rotation import Bundle, Lifetimes

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOSTS = certs.service_hosts("baseguard", "baseguard")
LIFE = Lifetimes(
    ca=dt.timedelta(days=300), serving=dt.timedelta(days=90), renew_before=dt.timedelta(days=30)
)


@pytest.fixture(scope="module")
def fresh() -> Bundle:
    return certs.plan(None, hosts=HOSTS, now=NOW, lifetimes=LIFE, trusted=False)


def test_service_hosts_cover_every_name_the_apiserver_may_use() -> None:
    assert certs.service_hosts("bg", "sec") == (
        "bg",
        "bg.sec",
        "bg.sec.svc",
        "bg.sec.svc.cluster.local",
    )


def test_a_new_bundle_is_a_ca_and_a_serving_certificate_for_the_service(fresh: Bundle) -> None:
    assert certs.hosts_of(fresh.cert) == frozenset(HOSTS)
    assert certs.signed_by(fresh.cert, fresh.ca_cert)
    assert certs.expires(fresh.cert) == NOW + LIFE.serving
    assert certs.expires(fresh.ca_cert) == NOW + LIFE.ca
    ca = x509.load_pem_x509_certificate(fresh.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert fresh.previous_ca is None


def test_a_tls_client_trusting_the_ca_accepts_the_serving_certificate(tmp_path: Path) -> None:
    """What the apiserver does with caBundle: verify the chain and the host name."""
    fresh = certs.plan(
        None, hosts=HOSTS, now=dt.datetime.now(dt.UTC), lifetimes=LIFE, trusted=False
    )
    directory = tmp_path
    (directory / "tls.crt").write_bytes(fresh.cert)
    (directory / "tls.key").write_bytes(fresh.key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    client = ssl.create_default_context(cadata=fresh.ca_cert.decode())
    # an in-memory handshake: no sockets needed
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="baseguard.baseguard.svc")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert c.version() in ("TLSv1.2", "TLSv1.3")


def test_the_secret_round_trips(fresh: Bundle) -> None:
    data = fresh.secret_data()
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert Bundle.from_secret_data(data) == fresh


@pytest.mark.parametrize(
    "drop",
    ["ca.key", "tls.crt"],
    ids=["cert-manager-secret-without-ca-key", "half-written"],
)
def test_a_secret_baseguard_cannot_sign_for_reads_as_none(fresh: Bundle, drop: str) -> None:
    data = fresh.secret_data()
    del data[drop]
    assert Bundle.from_secret_data(data) is None


def test_garbage_in_a_secret_reads_as_none(fresh: Bundle) -> None:
    data = fresh.secret_data()
    data["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    assert Bundle.from_secret_data(data) is None


def test_nothing_due_returns_the_same_bundle(fresh: Bundle) -> None:
    later = NOW + dt.timedelta(days=10)
    assert certs.plan(fresh, hosts=HOSTS, now=later, lifetimes=LIFE, trusted=True) is fresh


def test_the_serving_certificate_is_renewed_before_it_expires_with_the_same_ca(
    fresh: Bundle,
) -> None:
    due = NOW + LIFE.serving - LIFE.renew_before + dt.timedelta(minutes=1)
    renewed = certs.plan(fresh, hosts=HOSTS, now=due, lifetimes=LIFE, trusted=True)
    assert renewed.ca_cert == fresh.ca_cert  # the caBundle does not change
    assert renewed.cert != fresh.cert
    assert certs.signed_by(renewed.cert, fresh.ca_cert)
    assert not certs.needs_rotation(renewed.cert, due, renew_before=LIFE.renew_before)


def test_new_service_names_get_a_new_serving_certificate(fresh: Bundle) -> None:
    hosts = certs.service_hosts("webhook", "baseguard")
    renewed = certs.plan(fresh, hosts=hosts, now=NOW, lifetimes=LIFE, trusted=True)
    assert certs.hosts_of(renewed.cert) == frozenset(hosts)
    assert renewed.ca_cert == fresh.ca_cert


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    short = Lifetimes(
        ca=dt.timedelta(days=30), serving=dt.timedelta(days=90), renew_before=dt.timedelta(days=10)
    )
    bundle = certs.plan(None, hosts=HOSTS, now=NOW, lifetimes=short, trusted=False)
    assert certs.expires(bundle.cert) == certs.expires(bundle.ca_cert)


def test_a_ca_change_takes_two_steps_so_no_replica_serves_an_untrusted_pair(fresh: Bundle) -> None:
    ca_due = NOW + LIFE.ca * 2 / 3 + dt.timedelta(days=1)
    # the serving pair was renewed recently, as it is every 60 days
    recent = certs.plan(
        fresh, hosts=HOSTS, now=ca_due - dt.timedelta(days=2), lifetimes=LIFE, trusted=True
    )
    assert recent.ca_cert == fresh.ca_cert and recent.cert != fresh.cert
    fresh = recent
    step1 = certs.plan(fresh, hosts=HOSTS, now=ca_due, lifetimes=LIFE, trusted=True)
    assert step1.ca_cert != fresh.ca_cert
    assert step1.previous_ca == fresh.ca_cert
    assert step1.cert == fresh.cert  # still the old pair: the new CA is not in any caBundle yet
    both = certs.trust_bundle(step1, ca_due)
    assert fresh.ca_cert.strip() in both and step1.ca_cert.strip() in both

    waiting = certs.plan(step1, hosts=HOSTS, now=ca_due, lifetimes=LIFE, trusted=False)
    assert waiting is step1

    step2 = certs.plan(step1, hosts=HOSTS, now=ca_due, lifetimes=LIFE, trusted=True)
    assert certs.signed_by(step2.cert, step1.ca_cert)
    assert step2.previous_ca == fresh.ca_cert  # trusted until it expires: old pairs may linger

    after = certs.expires(fresh.ca_cert) + dt.timedelta(seconds=1)
    tidy = certs.plan(step2, hosts=HOSTS, now=after, lifetimes=LIFE, trusted=True)
    assert tidy.previous_ca is None
    assert certs.trust_bundle(tidy, after) == tidy.ca_cert


def test_an_expired_ca_starts_over(fresh: Bundle) -> None:
    dead = certs.expires(fresh.ca_cert) + dt.timedelta(days=1)
    again = certs.plan(fresh, hosts=HOSTS, now=dead, lifetimes=LIFE, trusted=True)
    assert again.ca_cert != fresh.ca_cert and again.previous_ca is None
    assert certs.signed_by(again.cert, again.ca_cert)


def test_a_pair_from_a_foreign_ca_is_replaced_even_before_the_bundle_trusts_ours(
    fresh: Bundle,
) -> None:
    other = certs.plan(None, hosts=HOSTS, now=NOW, lifetimes=LIFE, trusted=False)
    mixed = replace(fresh, cert=other.cert, key=other.key)
    fixed = certs.plan(mixed, hosts=HOSTS, now=NOW, lifetimes=LIFE, trusted=False)
    assert certs.signed_by(fixed.cert, fresh.ca_cert)


def test_renew_before_must_be_shorter_than_the_validity() -> None:
    with pytest.raises(ValueError, match="renew_before"):
        Lifetimes(serving=dt.timedelta(days=1), renew_before=dt.timedelta(days=2))


def _config(*bundles: str | None) -> dict[str, object]:
    return {
        "webhooks": [
            {
                "name": f"hook{i}.baseguard.io",
                "clientConfig": {"service": {"name": "baseguard"}} | ({"caBundle": b} if b else {}),
            }
            for i, b in enumerate(bundles)
        ]
    }


def test_the_ca_bundle_patch_sets_every_webhook_guarded_by_its_name(fresh: Bundle) -> None:
    encoded = base64.b64encode(fresh.ca_cert).decode()
    ops = certs.ca_bundle_patch(_config(None, encoded, "c3RhbGU="), fresh.ca_cert)
    assert ops == [
        {"op": "test", "path": "/webhooks/0/name", "value": "hook0.baseguard.io"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": encoded},
        {"op": "test", "path": "/webhooks/2/name", "value": "hook2.baseguard.io"},
        {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": encoded},
    ]
    assert certs.ca_bundle_patch(_config(encoded, encoded), fresh.ca_cert) is None


def test_trusts_needs_the_ca_in_every_webhook(fresh: Bundle) -> None:
    encoded = base64.b64encode(fresh.ca_cert).decode()
    assert certs.trusts(_config(encoded, encoded), fresh.ca_cert)
    assert not certs.trusts(_config(encoded, None), fresh.ca_cert)
    assert not certs.trusts({"webhooks": []}, fresh.ca_cert)
