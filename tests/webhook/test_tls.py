"""Certificate reloads under load, and mutual TLS, over real sockets to the real listener."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.webhook import Certs, default_docs, fill_store, fixture

from controller.assess import Assessor
from controller.policy.store import PolicyStore
from controller.tls.serving import CertReloader, self_signed
from controller.webhook.app import make_app
from controller.webhook.listener import listen
from controller.webhook.settings import Settings

Serve = Callable[..., Any]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(reloader, **app_kwargs)`` → the bound port of a webhook using ``reloader``."""
    runners: list[Any] = []

    async def start(
        reloader: CertReloader, *, settings: Settings | None = None, **app_kwargs: Any
    ) -> int:
        store = PolicyStore()
        fill_store(store, default_docs())
        settings = settings or Settings(host="127.0.0.1", port=0)
        app = make_app(store=store, assessor=Assessor(None), settings=settings, **app_kwargs)
        runner, port = await listen(app, settings, reloader.context)
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


def serial(pem: bytes) -> int:
    from cryptography import x509

    return int(x509.load_pem_x509_certificate(pem).serial_number)


def handshakes(port: int, trust: ssl.SSLContext, stop: threading.Event, seen: dict[str, Any]) -> None:
    """Blocking handshakes in a loop, as a busy apiserver makes them; counts what fails."""
    while not stop.is_set():
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                trust.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                cert = tls.getpeercert()
                assert cert is not None
                with seen["lock"]:
                    seen["ok"] += 1
                    seen["serials"].add(int(cert["serialNumber"], 16))
        except (OSError, ssl.SSLError) as exc:
            with seen["lock"]:
                seen["failed"].append(repr(exc))


async def test_reloads_under_concurrent_handshakes_fail_none(
    serve: Serve, certs: Certs, tmp_path: Path
) -> None:
    """Forty reloads, alternating two pairs, while four clients handshake non-stop."""
    other = self_signed(["localhost", "127.0.0.1"])
    pairs = [certs.pair, other]
    pairs[0].write(tmp_path)
    reloader = CertReloader(tmp_path / "tls.crt", tmp_path / "tls.key")
    port = await serve(reloader)
    trust = ssl.create_default_context(cadata=certs.pair.ca_pem.decode() + other.ca_pem.decode())
    seen: dict[str, Any] = {"ok": 0, "failed": [], "serials": set(), "lock": threading.Lock()}
    stop = threading.Event()
    clients = [
        threading.Thread(target=handshakes, args=(port, trust, stop, seen)) for _ in range(4)
    ]
    for client in clients:
        client.start()

    def rotate() -> None:
        for i in range(40):
            pair = pairs[(i + 1) % 2]
            (tmp_path / "tls.key").write_bytes(pair.key_pem)
            (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
            assert reloader.check() is True
            stop.wait(0.02)

    try:
        await asyncio.to_thread(rotate)  # in a worker thread, as CertReloader.watch does
    finally:
        stop.set()
        await asyncio.to_thread(lambda: [c.join(10) for c in clients])
    assert reloader.reloads == 40
    assert seen["failed"] == []
    assert seen["ok"] > 40
    assert seen["serials"] == {serial(p.cert_pem) for p in pairs}


# --------------------------------------------------------------------------- mutual TLS


def client_cert(ca_cert: bytes, ca_key: bytes, name: str) -> tuple[bytes, bytes]:
    """A client certificate (``clientAuth``) for ``name``, as an apiserver's kubeconfig holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from controller.tls.issuing import load_cert, load_key, pem_key, x509_name

    ca, signer = load_cert(ca_cert), load_key(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A client CA; certificates it signed for the apiserver and for someone else; a rogue one."""
    from controller.tls.issuing import issue_ca

    directory = tmp_path_factory.mktemp("client-ca")
    now = dt.datetime.now(dt.UTC)
    ca_pem, ca_key = issue_ca(now=now, validity=dt.timedelta(days=1), name="apiserver clients")
    rogue_pem, rogue_key = issue_ca(now=now, validity=dt.timedelta(days=1), name="rogue")
    out = {"ca": directory / "ca.crt"}
    out["ca"].write_bytes(ca_pem)
    for label, (issuer, key), name in (
        ("apiserver", (ca_pem, ca_key), "kube-apiserver"),
        ("other", (ca_pem, ca_key), "someone-else"),
        ("rogue", (rogue_pem, rogue_key), "kube-apiserver"),
    ):
        cert, private = client_cert(issuer, key, name)
        (directory / f"{label}.crt").write_bytes(cert)
        (directory / f"{label}.key").write_bytes(private)
        out[label] = directory / label
    return out


def trust(certs: Certs, clients: dict[str, Path], who: str | None) -> ssl.SSLContext:
    context = certs.client_context()
    if who is not None:
        path = clients[who]
        context.load_cert_chain(f"{path}.crt", f"{path}.key")
    return context


async def call(port: int, context: ssl.SSLContext, path: str) -> tuple[int, Any]:
    """(status, body) of a review POST or a GET over ``context``; (0, error) when TLS refuses."""
    url = f"https://127.0.0.1:{port}{path}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            if path.startswith("/validate"):
                review = fixture("deployment-create.json")
                async with session.post(url, json=review) as resp:
                    return resp.status, await resp.json(content_type=None)
            async with session.get(url) as resp:
                return resp.status, await resp.text()
    except aiohttp.ClientError as exc:
        return 0, repr(exc)


@pytest.mark.parametrize(
    ("who", "names", "status"),
    [
        ("apiserver", (), 200),
        ("apiserver", ("kube-apiserver",), 200),
        ("other", ("kube-apiserver",), 403),
        (None, (), 401),
        ("rogue", (), 0),
    ],
    ids=["signed", "allowed-name", "other-name", "no-cert", "rogue-ca"],
)
async def test_mutual_tls_answers_reviews_only_to_the_apiserver(
    serve: Serve,
    certs: Certs,
    clients: dict[str, Path],
    who: str | None,
    names: tuple[str, ...],
    status: int,
) -> None:
    reloader = CertReloader(certs.cert, certs.key, client_ca=clients["ca"])
    port = await serve(
        reloader, settings=Settings(host="127.0.0.1", port=0, client_ca=str(clients["ca"]),
                                    client_names=names),
    )  # fmt: skip
    got, body = await call(port, trust(certs, clients, who), "/validate?timeout=10s")
    assert got == status, body
    if status in (401, 403):
        assert body["kind"] == "Status" and "client certificate" in body["message"]
    if status == 200:
        assert body["response"]["allowed"] is False  # judged: the fixture's image is denied
    # the kubelet's probes carry no client certificate and still get through
    assert (await call(port, trust(certs, clients, None), "/healthz"))[0] == 200


@pytest.mark.parametrize("command", ["serve", "run"])
def test_serve_and_run_take_the_mutual_tls_flags(command: str) -> None:
    import argparse
    import importlib

    from controller.cli.options import webhook_settings

    module = importlib.import_module(f"controller.cli.commands.{command}")
    parser = argparse.ArgumentParser(exit_on_error=False)
    module.add_arguments(parser)
    required = ["-p", "policies/"] if command == "serve" else []
    args = parser.parse_args(
        [*required, "--client-ca", "/ca.crt", "--client-name", "a", "--client-name", "b"]
    )
    settings = webhook_settings(args)
    assert (settings.client_ca, settings.client_names) == ("/ca.crt", ("a", "b"))
    plain = webhook_settings(parser.parse_args(required))
    assert (plain.client_ca, plain.client_names) == (None, ())
