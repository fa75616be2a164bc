"""Credentials that come from running a program: Docker credential helpers, kubelet plugins.

Most production clusters pull from ECR, Artifact Registry or ACR with the
node's own identity: no pull secret exists, the kubelet runs a *credential
provider plugin* (``ecr-credential-provider``, ``gcp-credential-provider``,
``acr-credential-provider``) and uses what it prints. Laptops and CI runners
keep their registry passwords in a *credential helper*
(``docker-credential-desktop``, ``-osxkeychain``, ``-ecr-login``, ...). Both are
programs with a documented stdin/stdout protocol, and both are run here the
same way the kubelet and the Docker CLI run them:

- **Docker credential helpers** (``config.json``: ``credHelpers`` per host,
  else ``credsStore`` for all): ``docker-credential-<name> get`` on ``$PATH``,
  the server name on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout
  (``Username: "<token>"`` means ``Secret`` is an identity token). A helper
  that has nothing for the host exits non-zero: the lookup goes on anonymously.
- **Kubelet credential provider plugins** (a ``CredentialProviderConfig``,
  ``kubelet.config.k8s.io/v1``, and a plugin directory — the kubelet's
  ``--image-credential-provider-config`` / ``--image-credential-provider-bin-dir``):
  the first provider whose ``matchImages`` covers the image runs as
  ``<bin-dir>/<name> <args...>`` with its ``env`` added, a
  ``CredentialProviderRequest`` (``credentialprovider.kubelet.k8s.io/v1``) on
  stdin and a ``CredentialProviderResponse`` on stdout. Its answer is cached
  as it says: per image, per registry or globally (``cacheKeyType``) for
  ``cacheDuration`` (else the provider's ``defaultCacheDuration``).

Every program runs with a timeout and is killed when the lookup that needed
it is abandoned. Nothing a program prints is logged; a failure is logged with
the program's name and exit status only. Answers are kept in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from controller.caching import Clock, Loader
from controller.errors import InputError
from controller.registry.config import DOCKER_HUB, Credentials, canonical_host

log = logging.getLogger(__name__)

PROVIDER_CONFIG_API = "kubelet.config.k8s.io/v1"
PROTOCOL_API = "credentialprovider.kubelet.k8s.io/v1"
#: How long one helper or plugin may run.
EXEC_TIMEOUT = 10.0
#: How long a Docker helper's answer is reused (the Docker CLI asks on every pull).
HELPER_TTL = 300.0
#: How long "nothing for this host" or a failed run is remembered.
MISS_TTL = 30.0
MAX_OUTPUT = 1024 * 1024
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str, *, where: str) -> float:
    """``12h``, ``1h30m``, ``90s`` (Go's ``time.ParseDuration``) → seconds."""
    value = text.strip()
    if value in ("0", ""):
        return 0.0
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InputError(f"{where}: {text!r} is not a duration like 12h, 1h30m or 90s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


# ------------------------------------------------------------------ matchImages


def _split_image(image: str) -> tuple[str, str, str]:
    """``host[:port]/path`` → (host, port, /path); a scheme is tolerated and dropped."""
    text = image if "://" in image else f"https://{image}"
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    return host, str(parts.port) if parts.port is not None else "", parts.path


def image_matches(pattern: str, image: str) -> bool:
    """The kubelet's ``URLsMatch``: same number of host labels, each a glob; equal ports;
    the pattern's path a prefix of the image's.

    ``*.dkr.ecr.*.amazonaws.com`` matches ``1234.dkr.ecr.eu-west-1.amazonaws.com/app`` but
    not ``dkr.ecr.eu-west-1.amazonaws.com``; ``registry.io:5000/team`` matches
    ``registry.io:5000/team/app`` but not ``registry.io/team/app``.
    """
    g_host, g_port, g_path = _split_image(pattern)
    t_host, t_port, t_path = _split_image(image)
    if g_port != t_port:
        return False
    g_labels, t_labels = g_host.split("."), t_host.split(".")
    if len(g_labels) != len(t_labels):
        return False
    if not all(fnmatch.fnmatchcase(t, g) for g, t in zip(g_labels, t_labels, strict=True)):
        return False
    return t_path.startswith(g_path)


# ------------------------------------------------------------------ running a program


async def run_program(
    argv: Sequence[str], stdin: bytes, *, env: Mapping[str, str] | None, what: str
) -> tuple[int, bytes]:
    """(exit status, stdout) of ``argv`` fed ``stdin``; killed on timeout or cancellation."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
    )
    try:
        async with asyncio.timeout(EXEC_TIMEOUT):
            out, _ = await proc.communicate(stdin)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    if len(out) > MAX_OUTPUT:
        raise ValueError(f"{what} printed over {MAX_OUTPUT} bytes")
    return proc.returncode or 0, out


# ------------------------------------------------------------------ Docker credential helpers


def _safe_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name))


def _server_name(host: str) -> str:
    """What the Docker CLI hands a helper: Docker Hub by its legacy URL, others by host."""
    return "https://index.docker.io/v1/" if canonical_host(host) == DOCKER_HUB else host


async def _ask_helper(name: str, host: str) -> tuple[Credentials, float]:
    program = f"docker-credential-{name}"
    try:
        status, out = await run_program(
            [program, "get"], _server_name(host).encode(), env=None, what=program
        )
    except FileNotFoundError:
        log.warning("docker credential helper not found on PATH; looking up anonymously",
                    extra={"fields": {"helper": program}})
        return Credentials(), MISS_TTL
    except (OSError, ValueError, TimeoutError) as exc:
        log.warning("docker credential helper failed; looking up anonymously",
                    extra={"fields": {"helper": program, "error": type(exc).__name__}})
        return Credentials(), MISS_TTL
    if status != 0:  # "credentials not found in native keychain" and the like
        return Credentials(), MISS_TTL
    try:
        answer = json.loads(out)
        user, secret = answer.get("Username"), answer.get("Secret")
    except (ValueError, AttributeError):
        log.warning("docker credential helper printed no JSON object", extra={"fields": {"helper": program}})
        return Credentials(), MISS_TTL
    if not isinstance(secret, str) or not secret:
        return Credentials(), MISS_TTL
    if user == "<token>":
        return Credentials(identity_token=secret), HELPER_TTL
    return Credentials(username=str(user or ""), password=secret), HELPER_TTL


# ------------------------------------------------------------------ kubelet credential providers


@dataclass(frozen=True)
class Provider:
    """One ``providers[]`` entry of a ``CredentialProviderConfig``."""

    name: str
    match_images: tuple[str, ...]
    default_cache_duration: float
    api_version: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def matches(self, image: str) -> bool:
        return any(image_matches(p, image) for p in self.match_images)


@dataclass(frozen=True)
class CredentialProviders:
    """A parsed ``CredentialProviderConfig`` and the directory its plugins live in."""

    providers: tuple[Provider, ...]
    bin_dir: Path

    def provider_for(self, image: str) -> Provider | None:
        return next((p for p in self.providers if p.matches(image)), None)

    @classmethod
    def load(cls, config: str | os.PathLike[str], bin_dir: str | os.PathLike[str]) -> CredentialProviders:
        path = Path(config)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read credential provider config {path}: {exc.strerror}") from None
        directory = Path(bin_dir)
        if not directory.is_dir():
            raise InputError(f"credential provider bin dir {directory} is not a directory")
        return cls(parse_provider_config(text, source=str(path)), directory)


def parse_provider_config(text: str, *, source: str) -> tuple[Provider, ...]:
    """The ``providers`` of a ``CredentialProviderConfig`` (YAML or JSON), checked like the kubelet does."""
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"{source}: not valid YAML") from None
    if not isinstance(obj, dict) or obj.get("kind") != "CredentialProviderConfig":
        raise InputError(f"{source}: expected kind: CredentialProviderConfig")
    if obj.get("apiVersion") != PROVIDER_CONFIG_API:
        raise InputError(f"{source}: apiVersion must be {PROVIDER_CONFIG_API}")
    entries = obj.get("providers")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{source}: providers: expected a non-empty list")
    out: list[Provider] = []
    for i, entry in enumerate(entries):
        where = f"{source}: providers[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not _safe_name(name):
            raise InputError(f"{where}.name: expected a plugin file name (no path)")
        images = entry.get("matchImages")
        if not isinstance(images, list) or not images or not all(isinstance(m, str) and m for m in images):
            raise InputError(f"{where}.matchImages: expected a non-empty list of image patterns")
        if entry.get("apiVersion") != PROTOCOL_API:
            raise InputError(f"{where}.apiVersion: only {PROTOCOL_API} is supported")
        duration = entry.get("defaultCacheDuration")
        if not isinstance(duration, str):
            raise InputError(f"{where}.defaultCacheDuration: expected a duration like 12h")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise InputError(f"{where}.args: expected a list of strings")
        env: dict[str, str] = {}
        for j, var in enumerate(entry.get("env") or []):
            if not isinstance(var, dict) or not isinstance(var.get("name"), str):
                raise InputError(f"{where}.env[{j}]: expected {{name, value}}")
            env[var["name"]] = str(var.get("value", ""))
        out.append(
            Provider(
                name=name,
                match_images=tuple(images),
                default_cache_duration=go_duration(duration, where=f"{where}.defaultCacheDuration"),
                api_version=PROTOCOL_API,
                args=tuple(args),
                env=env,
            )
        )
    return tuple(out)


def _best_auth(auth: Mapping[str, Any], image: str) -> Credentials:
    """The entry of a response's ``auth`` whose key matches the image most specifically."""
    matching = [k for k in auth if isinstance(k, str) and image_matches(k, image)]
    for key in sorted(matching, key=len, reverse=True):
        entry = auth[key]
        if isinstance(entry, dict) and isinstance(entry.get("username"), str):
            return Credentials(username=entry["username"], password=str(entry.get("password", "")))
    return Credentials()


# ------------------------------------------------------------------ the sources together


class ProgramCredentials:
    """Credentials from helper programs, cached per their answers; one per client.

    An empty :class:`Credentials` is the remembered answer "nothing for this
    host" (a TTL map cannot hold ``None``).
    """

    def __init__(
        self,
        *,
        store: str | None = None,
        helpers: Mapping[str, str] | None = None,
        providers: CredentialProviders | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.helpers = dict(helpers or {})
        self.providers = providers
        self._helper_answers: Loader[tuple[str, str], Credentials] = Loader(
            ttl=HELPER_TTL, max_entries=1024, clock=clock
        )
        self._plugin_answers: Loader[tuple[str, str, str], Credentials] = Loader(
            ttl=MISS_TTL, max_entries=4096, clock=clock
        )
        self.runs = 0  # programs started (the tests and the bench read it)

    @property
    def empty(self) -> bool:
        return self.store is None and not self.helpers and self.providers is None

    def helper_for(self, host: str) -> str | None:
        """``credHelpers[host]``, else ``credsStore`` (the Docker CLI's order)."""
        return self.helpers.get(canonical_host(host), self.store)

    async def for_image(self, host: str, image: str) -> Credentials:
        """Credentials for ``image`` at ``host``: the Docker helper's, else a plugin's; maybe empty."""
        name = self.helper_for(host)
        if name is not None:
            helper = name
            creds = await self._helper_answers.get(
                (helper, canonical_host(host)), lambda: self._helper(helper, host)
            )
            if not creds.empty:
                return creds
        if self.providers is not None:
            provider = self.providers.provider_for(image)
            if provider is not None:
                return await self._plugin(provider, host, image)
        return Credentials()

    async def _helper(self, name: str, host: str) -> tuple[Credentials, float]:
        self.runs += 1
        return await _ask_helper(name, host)

    async def _plugin(self, provider: Provider, host: str, image: str) -> Credentials:
        # The answer says how it may be reused (cacheKeyType); look in all three places.
        for key in (
            (provider.name, "Global", ""),
            (provider.name, "Registry", host),
            (provider.name, "Image", image),
        ):
            found = self._plugin_answers.entries.get(key)
            if found is not None:
                return found
        return await self._plugin_answers.get(
            (provider.name, "Image", image), lambda: self._exec_plugin(provider, host, image)
        )

    async def _exec_plugin(self, provider: Provider, host: str, image: str) -> tuple[Credentials, float]:
        assert self.providers is not None
        program = self.providers.bin_dir / provider.name
        request = {"apiVersion": provider.api_version, "kind": "CredentialProviderRequest", "image": image}
        self.runs += 1
        try:
            status, out = await run_program(
                [str(program), *provider.args],
                json.dumps(request).encode(),
                env={**os.environ, **provider.env},
                what=provider.name,
            )
        except (OSError, ValueError, TimeoutError) as exc:
            log.warning(
                "credential provider plugin failed; looking up anonymously",
                extra={"fields": {"plugin": provider.name, "error": type(exc).__name__}},
            )
            return Credentials(), MISS_TTL
        if status != 0:
            log.warning(
                "credential provider plugin exited non-zero; looking up anonymously",
                extra={"fields": {"plugin": provider.name, "status": status}},
            )
            return Credentials(), MISS_TTL
        try:
            answer = json.loads(out)
            if (
                not isinstance(answer, dict)
                or answer.get("kind") != "CredentialProviderResponse"
                or answer.get("apiVersion") != provider.api_version
            ):
                raise ValueError("not a CredentialProviderResponse of the requested apiVersion")
            key_type = answer.get("cacheKeyType")
            if key_type not in ("Image", "Registry", "Global"):
                raise ValueError("cacheKeyType must be Image, Registry or Global")
            duration = answer.get("cacheDuration")
            ttl = (
                go_duration(duration, where="cacheDuration")
                if isinstance(duration, str) and duration
                else provider.default_cache_duration
            )
            auth = answer.get("auth") or {}
            if not isinstance(auth, dict):
                raise ValueError("auth must be an object")
        except (ValueError, InputError) as exc:
            log.warning(
                "credential provider plugin answered something unusable; looking up anonymously",
                extra={"fields": {"plugin": provider.name, "error": str(exc)[:200]}},
            )
            return Credentials(), MISS_TTL
        creds = _best_auth(auth, image)
        if key_type == "Image":
            return creds, ttl
        wider = (provider.name, key_type, host if key_type == "Registry" else "")
        self._plugin_answers.entries.put(wider, creds, ttl=ttl)
        return creds, 0.0  # a wider answer is read under its wider key only
