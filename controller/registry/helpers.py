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
  as the kubelet caches it: the whole ``auth`` map, under the image, the
  registry or one global key (``cacheKeyType``) for ``cacheDuration`` (else the
  provider's ``defaultCacheDuration``), and each image is matched against the
  map (most specific key first, Go's glob syntax). A ``Global`` answer holding
  host A's robot is therefore never A's robot for host B, and an image the map
  does not cover is looked up anonymously without being remembered as "none"
  for the hosts the map does cover.

What one review may make the process spawn is bounded three ways: runs are
single-flight per (provider, registry) -- per image once the provider has
answered ``Image`` -- so a 256-image review on one registry runs the plugin
once; at most :data:`MAX_CONCURRENT_PROGRAMS` programs run at once in the whole
process; and each run is charged to the review that started it
(:func:`processes_charged_to`, ``max_processes_per_review``). A program's
output is read a chunk at a time and the program is killed, with its process
group, at :data:`MAX_OUTPUT` bytes, at :data:`EXEC_TIMEOUT` seconds, or when the
lookup that needed it is abandoned. Nothing a program prints is logged; a
failure is logged with the program's name and the limit it hit or its exit
status only. Answers are kept in memory only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from controller.caching import Clock, Loader, SingleFlight, TTLMap
from controller.errors import InputError
from controller.registry.config import DOCKER_HUB, Credentials, canonical_host
from controller.registry.kubeletmatch import AuthMap, go_duration, image_matches
from controller.registry.programs import (
    ProgramFailed,
    charge_program,
    run_program,
)

log = logging.getLogger(__name__)

PROVIDER_CONFIG_API = "kubelet.config.k8s.io/v1"
PROTOCOL_API = "credentialprovider.kubelet.k8s.io/v1"
#: How long a Docker helper's answer is reused (the Docker CLI asks on every pull).
HELPER_TTL = 300.0
#: How long "nothing for this host" or a failed run is remembered.
MISS_TTL = 30.0


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
    except (OSError, ProgramFailed) as exc:
        reason = str(exc) if isinstance(exc, ProgramFailed) else type(exc).__name__
        log.warning(f"docker credential helper failed ({reason}); looking up anonymously",
                    extra={"fields": {"helper": program, "error": reason}})
        return Credentials(), MISS_TTL
    if status != 0:  # "credentials not found in native keychain" and the like
        return Credentials(), MISS_TTL
    try:
        answer = json.loads(out)
        user, secret = answer.get("Username"), answer.get("Secret")
    except (ValueError, AttributeError, RecursionError):
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


KeyType = Literal["Image", "Registry", "Global"]


@dataclass(frozen=True)
class PluginAnswer:
    """One plugin run: what it said, and which image it was asked about."""

    key_type: KeyType
    auth: AuthMap
    image: str

    def serves(self, image: str) -> bool:
        """A waiter of the run may use it: a wider answer for any image, an Image one for its own."""
        return self.key_type != "Image" or self.image == image


class ProgramCredentials:
    """Credentials from helper programs, cached per their answers; one per client.

    An empty :class:`Credentials` is the remembered answer "nothing for this
    host" (a TTL map cannot hold ``None``). A plugin's answer is cached as the
    kubelet caches it: the whole ``auth`` map under ``(provider, cacheKeyType,
    image | registry | "")``, looked up image, then registry, then global, and
    matched against each image. Runs are single-flight per (provider, registry)
    until the provider has answered ``Image`` (then per image), so a review of
    256 images on one registry runs the plugin once, and every run is charged
    to the review that started it (see :func:`processes_charged_to`).
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
        # (provider, cacheKeyType, image | registry | ""): keyed by what the plugin said it
        # answered for; the plugin is the node's (the operator's), never a tenant's.
        self._plugin_answers: TTLMap[tuple[str, str, str], AuthMap] = TTLMap(
            ttl=MISS_TTL, max_entries=4096, clock=clock
        )
        self._plugin_runs: SingleFlight[tuple[str, str, str], PluginAnswer] = SingleFlight()
        self._image_keyed: set[str] = set()  # providers whose last answer was cacheKeyType: Image
        self.runs = 0  # programs started (the tests and the bench read it)

    @property
    def empty(self) -> bool:
        return self.store is None and not self.helpers and self.providers is None

    def helper_for(self, host: str) -> str | None:
        """``credHelpers[host]``, else ``credsStore`` (the Docker CLI's order)."""
        return self.helpers.get(canonical_host(host), self.store)

    async def for_image(self, host: str, image: str) -> Credentials:
        """Credentials for ``image`` at ``host``: the Docker helper's, else a plugin's; maybe empty.

        :class:`ProcessLimitReached` when a program is needed and the review may start no more.
        """
        name = self.helper_for(host)
        if name is not None:
            helper = name
            key = (helper, canonical_host(host))
            answers = self._helper_answers
            if answers.entries.get(key) is None and answers.flights.pending(key) is None:
                charge_program(f"docker-credential-{helper}")  # the lookup that starts the run pays
            creds = await answers.get(key, lambda: self._helper(helper, host))
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

    def _cached(self, provider: Provider, host: str, image: str) -> AuthMap | None:
        """The kubelet's ``getCachedCredentials``: the image's entry, the registry's, the global one."""
        for key in (
            (provider.name, "Image", image),
            (provider.name, "Registry", host),
            (provider.name, "Global", ""),
        ):
            found = self._plugin_answers.get(key)
            if found is not None:
                return found
        return None

    async def _plugin(self, provider: Provider, host: str, image: str) -> Credentials:
        for _ in range(3):  # a shared run answered "Image" for another image: run for ours
            cached = self._cached(provider, host, image)
            if cached is not None:
                return cached.lookup(image)
            flight = (
                (provider.name, "Image", image)
                if provider.name in self._image_keyed
                else (provider.name, "Registry", host)
            )
            task = self._plugin_runs.pending(flight)
            if task is None:
                charge_program(provider.name)
                task = self._plugin_runs.start(flight, lambda: self._exec_plugin(provider, host, image))
            answer = await self._plugin_runs.wait(flight, task)
            if answer.serves(image):
                return answer.auth.lookup(image)
        return Credentials()

    def _remember(self, provider: Provider, answer: PluginAnswer, host: str, ttl: float) -> PluginAnswer:
        scope = {"Image": answer.image, "Registry": host, "Global": ""}[answer.key_type]
        self._plugin_answers.put((provider.name, answer.key_type, scope), answer.auth, ttl=ttl)
        if answer.key_type == "Image":
            self._image_keyed.add(provider.name)
        else:
            self._image_keyed.discard(provider.name)
        return answer

    async def _exec_plugin(self, provider: Provider, host: str, image: str) -> PluginAnswer:
        assert self.providers is not None
        program = self.providers.bin_dir / provider.name
        request = {"apiVersion": provider.api_version, "kind": "CredentialProviderRequest", "image": image}
        # A run that fails is remembered for the registry (or the image, for a provider that
        # answers per image) a short while: never as an answer for other registries.
        failed = PluginAnswer("Image" if provider.name in self._image_keyed else "Registry", AuthMap(), image)
        self.runs += 1
        try:
            status, out = await run_program(
                [str(program), *provider.args],
                json.dumps(request).encode(),
                env={**os.environ, **provider.env},
                what=provider.name,
            )
        except (OSError, ProgramFailed) as exc:
            reason = str(exc) if isinstance(exc, ProgramFailed) else type(exc).__name__
            log.warning(
                f"credential provider plugin failed ({reason}); looking up anonymously",
                extra={"fields": {"plugin": provider.name, "error": reason}},
            )
            return self._remember(provider, failed, host, MISS_TTL)
        if status != 0:
            log.warning(
                f"credential provider plugin exited with status {status}; looking up anonymously",
                extra={"fields": {"plugin": provider.name, "status": status}},
            )
            return self._remember(provider, failed, host, MISS_TTL)
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
        except (ValueError, InputError, RecursionError) as exc:
            log.warning(
                "credential provider plugin answered something unusable; looking up anonymously",
                extra={"fields": {"plugin": provider.name, "error": str(exc)[:200]}},
            )
            return self._remember(provider, failed, host, MISS_TTL)
        return self._remember(provider, PluginAnswer(key_type, AuthMap.parse(auth), image), host, ttl)
