"""A bearer-token server for docker-registry's ``auth: token`` (distribution's token spec).

It issues RS256 JWTs whose header carries ``x5c`` = the DER of a self-signed
certificate; the registry trusts that certificate as its ``rootcertbundle``.
Access rules are small and explicit so tests can reach every branch:

- anonymous callers get ``pull`` on repositories under ``public_prefixes``;
- a known user with the right password gets ``pull`` and ``push`` everywhere
  except under ``denied_prefixes`` (then an empty grant: the registry answers
  ``insufficient_scope``);
- a wrong password gets 401 from the token server itself;
- ``POST`` with ``grant_type=refresh_token`` exchanges an identity token
  (``refresh_tokens``) as in distribution's OAuth2 spec.

Every request is recorded in ``requests`` so tests can assert token reuse.
Runs a stdlib ``ThreadingHTTPServer`` in a thread: usable from sync fixtures
and from any event loop.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    method: str
    user: str | None
    scopes: tuple[str, ...]
    service: str | None


class TokenServer:
    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        public_prefixes: Sequence[str] = ("public/",),
        denied_prefixes: Sequence[str] = ("secret/",),
        refresh_tokens: Mapping[str, str] | None = None,
        service: str = "test-registry",
        issuer: str = "test-issuer",
        expires_in: int | None = 300,
        token_field: str = "token",
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = dict(users or {"alice": "alice-secret"})
        self.public_prefixes = tuple(public_prefixes)
        self.denied_prefixes = tuple(denied_prefixes)
        self.refresh_tokens = dict(refresh_tokens or {})
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.token_field = token_field
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baseguard test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_file = workdir / "token-signer.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self.realm = f"http://{self.host}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- counting ------------------------------------------------------------------
    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- tokens --------------------------------------------------------------------
    def mint(
        self,
        repository: str,
        actions: Sequence[str] = ("pull",),
        *,
        subject: str = "test",
        expires_in: int = 300,
    ) -> str:
        """A signed token granting ``actions`` on ``repository`` (for the pusher)."""
        return self._jwt(subject, [("repository", repository, list(actions))], expires_in)

    def _jwt(self, subject: str, access: list[tuple[str, str, list[str]]], expires_in: int) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": t, "name": n, "actions": a} for t, n, a in access],
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def _grant(self, user: str | None, scope: str) -> tuple[str, str, list[str]] | None:
        parts = scope.split(":")
        if len(parts) < 3 or parts[0] != "repository":
            return None
        repo, wanted = ":".join(parts[1:-1]), parts[-1].split(",")
        if any(repo.startswith(p) for p in self.denied_prefixes):
            allowed: set[str] = set()
        elif user is not None:
            allowed = {"pull", "push"}
        elif any(repo.startswith(p) for p in self.public_prefixes):
            allowed = {"pull"}
        else:
            allowed = set()
        return ("repository", repo, sorted(a for a in wanted if a in allowed))

    def _answer(self, user: str | None, scopes: Sequence[str]) -> dict[str, Any]:
        access = [g for g in (self._grant(user, s) for s in scopes) if g is not None]
        lifetime = self.expires_in if self.expires_in is not None else 60
        token = self._jwt(user or "anonymous", access, lifetime)
        out: dict[str, Any] = {"issued_at": dt.datetime.now(dt.UTC).isoformat()}
        if self.token_field in ("token", "both"):
            out["token"] = token
        if self.token_field in ("access_token", "both"):
            out["access_token"] = token
        if self.expires_in is not None:
            out["expires_in"] = self.expires_in
        return out

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _basic_user(self) -> tuple[bool, str | None]:
                header = self.headers.get("Authorization")
                if not header:
                    return True, None
                scheme, _, value = header.partition(" ")
                if scheme.lower() != "basic":
                    return False, None
                try:
                    user, _, password = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    return False, None
                return server.users.get(user) == password, user

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                scopes = tuple(query.get("scope", []))
                ok, user = self._basic_user()
                with server._lock:
                    server.requests.append(
                        TokenRequest("GET", user, scopes, (query.get("service") or [None])[0])
                    )
                if url.path != "/token":
                    self._send(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
                    return
                if not ok:
                    self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
                self._send(200, server._answer(user, scopes))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                scopes = tuple(" ".join(form.get("scope", [])).split())
                refresh = (form.get("refresh_token") or [""])[0]
                user = server.refresh_tokens.get(refresh)
                with server._lock:
                    server.requests.append(
                        TokenRequest("POST", user, scopes, (form.get("service") or [None])[0])
                    )
                if (form.get("grant_type") or [""])[0] != "refresh_token" or user is None:
                    self._send(401, {"error": "invalid_grant"})
                    return
                self._send(200, {**server._answer(user, scopes), "refresh_token": refresh})

        return Handler
