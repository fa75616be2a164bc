"""Which registries we may talk to, and how: read once at startup, then immutable.

``--registry-config`` YAML (per-host TLS, credentials, mirrors, limits) plus the
``auths`` of a Docker ``config.json``. Pull-secret credentials arrive later,
per request; :meth:`RegistryConfig.with_credentials` derives a new config with
them instead of mutating a shared one, so one admission never sees another's
secrets.

Secrets are kept out of ``repr`` so a config logged by accident shows no
password or token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from controller.errors import InputError

if TYPE_CHECKING:
    from controller.registry.helpers import CredentialProviders

DOCKER_HUB = "docker.io"
#: The API host behind ``docker.io`` image names.
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
#: A credential helper's name: it becomes part of a program name, so no paths.
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONCURRENCY = 8


@dataclass(frozen=True)
class Credentials:
    """What to authenticate with at one host.

    ``token`` is sent as-is as ``Authorization: Bearer`` (a registry token, as
    with ``skopeo --registry-token``); ``identity_token`` is an OAuth2 refresh
    token exchanged at the bearer realm (Docker ``config.json``'s
    ``identitytoken``).
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.token or self.identity_token)

    @property
    def has_basic(self) -> bool:
        return self.username is not None and self.password is not None


def canonical_host(host: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``Reg.Example.com:443/`` → ``reg.example.com:443``.

    Docker ``config.json`` keys carry schemes and paths; image references do not.
    """
    text = host.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    text = text.split("/", 1)[0].lower()
    return DOCKER_HUB if text in _DOCKER_HUB_ALIASES else text


@dataclass(frozen=True)
class DockerCredentials:
    """A Docker ``config.json``: ``auths`` (canonical host → credentials) and its helpers.

    ``credsStore`` and ``credHelpers`` name credential helper programs
    (``docker-credential-<name>``); they are run at lookup time by
    :mod:`controller.registry.helpers`, not here.
    """

    auths: Mapping[str, Credentials] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    store: str | None = None
    helpers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, host: str) -> Credentials | None:
        return self.auths.get(canonical_host(host))

    @classmethod
    def parse(cls, data: bytes | str, *, source: str = "config.json") -> DockerCredentials:
        """Parse ``config.json`` (or a ``.dockerconfigjson`` pull secret) text."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{source}: expected a JSON object")
        auths = obj.get("auths", {})
        if not isinstance(auths, dict):
            raise InputError(f"{source}: auths: expected an object")
        out: dict[str, Credentials] = {}
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise InputError(f"{source}: auths[{key!r}]: expected an object")
            out[canonical_host(str(key))] = _docker_entry(entry, f"{source}: auths[{key!r}]")
        store = obj.get("credsStore")
        if store is not None and (not isinstance(store, str) or not _HELPER_NAME.fullmatch(store)):
            raise InputError(f"{source}: credsStore: expected a helper name like 'desktop'")
        raw_helpers = obj.get("credHelpers", {})
        if not isinstance(raw_helpers, dict):
            raise InputError(f"{source}: credHelpers: expected an object of host → helper name")
        helpers: dict[str, str] = {}
        for host, name in raw_helpers.items():
            if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
                raise InputError(f"{source}: credHelpers[{host!r}]: expected a helper name like 'ecr-login'")
            helpers[canonical_host(str(host))] = name
        return cls(MappingProxyType(out), source, store or None, MappingProxyType(helpers))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DockerCredentials:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read Docker config {os.fspath(path)}: {exc.strerror}") from None
        return cls.parse(data, source=os.fspath(path))


def _docker_entry(entry: Mapping[str, Any], where: str) -> Credentials:
    username, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InputError(f"{where}.auth: not base64 of 'user:password'") from None
        if ":" not in decoded:
            raise InputError(f"{where}.auth: not base64 of 'user:password'")
        username, _, password = decoded.partition(":")
    identity = entry.get("identitytoken")
    registry_token = entry.get("registrytoken")
    return Credentials(
        username=username if isinstance(username, str) and username else None,
        password=password if isinstance(password, str) else None,
        token=registry_token if isinstance(registry_token, str) and registry_token else None,
        identity_token=identity if isinstance(identity, str) and identity else None,
    )


@dataclass(frozen=True)
class RegistryHost:
    """Settings for one registry host (``host`` as in image names: ``reg.example.com:5000``).

    Any entry for a host is an explicit decision to talk to it, so a host that
    resolves to a private or loopback address is allowed once it is listed here;
    ``allow_private`` is accepted to say so explicitly in the YAML.
    """

    host: str
    insecure: bool = False  # plain http://
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # bearer token sent as-is
    mirrors: tuple[str, ...] = ()
    timeout: float | None = None
    max_concurrency: int | None = None
    allow_private: bool = False
    identity_token: str | None = field(default=None, repr=False)  # OAuth2 refresh token

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.username, self.password, self.token, self.identity_token)

    @property
    def api_host(self) -> str:
        """Where the HTTP requests go: ``docker.io`` → ``registry-1.docker.io``."""
        return DOCKER_HUB_API if canonical_host(self.host) == DOCKER_HUB else self.host


@dataclass(frozen=True)
class RegistryConfig:
    """Everything the client needs to know about registries; immutable.

    ``hosts`` are the operator's explicit decisions (and so the only hosts
    allowed to resolve to private addresses). ``credentials`` are added later,
    per lookup (pull secrets), through :meth:`with_credentials`; they win over
    configured and Docker-config credentials but never make a host explicit:
    a tenant's pull secret must not open the cluster network to probing.
    """

    hosts: Mapping[str, RegistryHost] = field(default_factory=lambda: MappingProxyType({}))
    timeout: float = DEFAULT_TIMEOUT
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    docker_config: DockerCredentials | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=lambda: MappingProxyType({}))
    #: Kubelet credential provider plugins (``credentialProviderConfig`` + ``credentialProviderBinDir``).
    credential_providers: CredentialProviders | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hosts, MappingProxyType):
            object.__setattr__(self, "hosts", MappingProxyType(dict(self.hosts)))
        if not isinstance(self.credentials, MappingProxyType):
            object.__setattr__(self, "credentials", MappingProxyType(dict(self.credentials)))

    @classmethod
    def of(cls, *hosts: RegistryHost, **kwargs: Any) -> RegistryConfig:
        """Shortcut: ``RegistryConfig.of(RegistryHost("127.0.0.1:5000", insecure=True))``."""
        return cls(hosts={h.host: h for h in hosts}, **kwargs)

    def is_explicit(self, host: str) -> bool:
        """Configured by name, as a host entry or as some host's mirror."""
        return host in self.hosts or any(host in h.mirrors for h in self.hosts.values())

    def host(self, host: str) -> RegistryHost:
        """Settings for ``host``, with the credentials that apply.

        Credentials: pull-secret ones (:meth:`with_credentials`) first, then
        the configured ones, then the Docker config's.
        """
        entry = self.hosts.get(host)
        hub = canonical_host(host) == DOCKER_HUB
        if entry is None and hub:
            entry = self.hosts.get(DOCKER_HUB)
        entry = entry or RegistryHost(host=host)
        extra = self.credentials.get(canonical_host(host))
        if extra is not None:
            return _with_creds(entry, extra)
        if entry.credentials.empty and self.docker_config is not None:
            creds = self.docker_config.get(host)
            if creds is not None:
                return _with_creds(entry, creds)
        return entry

    def timeout_for(self, host: str) -> float:
        value = self.host(host).timeout
        return value if value is not None else self.timeout

    def concurrency_for(self, host: str) -> int:
        value = self.host(host).max_concurrency
        return value if value is not None else self.max_concurrency

    def with_credentials(self, credentials: Mapping[str, Credentials]) -> RegistryConfig:
        """A new config where ``credentials`` (host → creds, e.g. from pull secrets) win.

        Keys may be Docker-config style (``https://index.docker.io/v1/``). The
        receiver is unchanged; hosts stay exactly as explicit as they were.
        """
        if not credentials:
            return self
        merged = dict(self.credentials)
        for raw_host, creds in credentials.items():
            merged[canonical_host(raw_host)] = creds
        return replace(self, credentials=MappingProxyType(merged))


def _with_creds(entry: RegistryHost, creds: Credentials) -> RegistryHost:
    return replace(
        entry,
        username=creds.username,
        password=creds.password,
        token=creds.token,
        identity_token=creds.identity_token,
    )


# ---------------------------------------------------------------------------- YAML

_HOST_KEYS = {
    "host",
    "insecure",
    "caFile",
    "username",
    "password",
    "passwordEnv",
    "token",
    "tokenEnv",
    "mirrors",
    "timeout",
    "maxConcurrency",
    "allowPrivate",
}
_TOP_KEYS = {
    "registries",
    "timeout",
    "maxConcurrency",
    "dockerConfig",
    "credentialProviderConfig",
    "credentialProviderBinDir",
}


def _positive_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InputError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected a non-empty string")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {value!r}")
    return value


def _from_env(
    entry: Mapping[str, Any], key: str, env_key: str, where: str, env: Mapping[str, str]
) -> str | None:
    if key in entry and env_key in entry:
        raise InputError(f"{where}: give {key} or {env_key}, not both")
    if env_key in entry:
        name = _string(entry[env_key], f"{where}.{env_key}")
        if name not in env:
            raise InputError(f"{where}.{env_key}: environment variable {name} is not set")
        return env[name]
    if key in entry:
        return _string(entry[key], f"{where}.{key}")
    return None


def _parse_host(entry: Any, where: str, base_dir: Path, env: Mapping[str, str]) -> RegistryHost:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping with at least 'host'")
    unknown = sorted(set(entry) - _HOST_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_HOST_KEYS))})")
    host = _string(entry.get("host"), f"{where}.host")
    if "/" in host or host != host.strip():
        raise InputError(f"{where}.host: {host!r} is not a host[:port] (no scheme, no path)")
    ca_file = None
    if "caFile" in entry:
        ca_path = Path(_string(entry["caFile"], f"{where}.caFile"))
        ca_path = ca_path if ca_path.is_absolute() else base_dir / ca_path
        if not ca_path.is_file():
            raise InputError(f"{where}.caFile: {ca_path} does not exist")
        ca_file = str(ca_path)
    mirrors = entry.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) and m for m in mirrors):
        raise InputError(f"{where}.mirrors: expected a list of host names")
    username = entry.get("username")
    if username is not None:
        username = _string(username, f"{where}.username")
    password = _from_env(entry, "password", "passwordEnv", where, env)
    if (username is None) != (password is None):
        raise InputError(f"{where}: username and password go together")
    return RegistryHost(
        host=host,
        insecure=_bool(entry.get("insecure", False), f"{where}.insecure"),
        ca_file=ca_file,
        username=username,
        password=password,
        token=_from_env(entry, "token", "tokenEnv", where, env),
        mirrors=tuple(canonical_host(m) if "://" in m else m for m in mirrors),
        timeout=_positive_number(entry["timeout"], f"{where}.timeout") if "timeout" in entry else None,
        max_concurrency=(
            _positive_int(entry["maxConcurrency"], f"{where}.maxConcurrency")
            if "maxConcurrency" in entry
            else None
        ),
        allow_private=_bool(entry.get("allowPrivate", False), f"{where}.allowPrivate"),
    )


def parse_registry_config(
    text: str,
    *,
    source: str = "registry config",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    docker_config: DockerCredentials | None = None,
) -> RegistryConfig:
    """Parse the YAML text of a registry config (``env`` is read for ``passwordEnv``)."""
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the position and the problem: PyYAML's full text quotes the line,
        # and that line may hold a password.
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"{source}: not valid YAML{at}: {problem}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise InputError(f"{source}: expected a mapping with 'registries'")
    unknown = sorted(set(obj) - _TOP_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    entries = obj.get("registries", [])
    if not isinstance(entries, list):
        raise InputError(f"{source}: registries: expected a list")
    base = base_dir or Path.cwd()
    environ = env if env is not None else os.environ
    hosts: dict[str, RegistryHost] = {}
    for i, entry in enumerate(entries):
        parsed = _parse_host(entry, f"{source}: registries[{i}]", base, environ)
        if parsed.host in hosts:
            raise InputError(f"{source}: registries[{i}].host: {parsed.host} is listed twice")
        hosts[parsed.host] = parsed
    if docker_config is None and "dockerConfig" in obj:
        path = Path(_string(obj["dockerConfig"], f"{source}: dockerConfig"))
        docker_config = DockerCredentials.load(path if path.is_absolute() else base / path)
    providers = None
    if "credentialProviderConfig" in obj or "credentialProviderBinDir" in obj:
        from controller.registry.helpers import CredentialProviders

        if not ("credentialProviderConfig" in obj and "credentialProviderBinDir" in obj):
            raise InputError(f"{source}: credentialProviderConfig and credentialProviderBinDir go together")
        paths = [
            Path(_string(obj[k], f"{source}: {k}"))
            for k in ("credentialProviderConfig", "credentialProviderBinDir")
        ]
        config_path, bin_dir = (p if p.is_absolute() else base / p for p in paths)
        providers = CredentialProviders.load(config_path, bin_dir)
    return RegistryConfig(
        hosts=MappingProxyType(hosts),
        timeout=_positive_number(obj["timeout"], f"{source}: timeout") if "timeout" in obj else DEFAULT_TIMEOUT,
        max_concurrency=(
            _positive_int(obj["maxConcurrency"], f"{source}: maxConcurrency")
            if "maxConcurrency" in obj
            else DEFAULT_MAX_CONCURRENCY
        ),
        docker_config=docker_config,
        credential_providers=providers,
    )


def default_docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    environ = env if env is not None else os.environ
    directory = environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def load_registry_config(
    path: str | None, *, docker_config: str | None = None, env: Mapping[str, str] | None = None
) -> RegistryConfig:
    """Read ``--registry-config`` (or nothing) and Docker credentials.

    ``docker_config`` names a ``config.json``; else the YAML's ``dockerConfig``;
    when neither is given the default
    (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``) is read only
    if it exists. Any problem is an :class:`InputError` naming the file and key.
    """
    docker = DockerCredentials.load(docker_config) if docker_config is not None else None
    config = RegistryConfig(docker_config=docker)
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InputError(f"cannot read registry config {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"registry config {path}: not UTF-8 text") from None
        config = parse_registry_config(
            text, source=path, base_dir=Path(path).resolve().parent, env=env, docker_config=docker
        )
    if config.docker_config is None and docker_config is None:
        default = default_docker_config_path(env)
        if default.is_file():
            config = replace(config, docker_config=DockerCredentials.load(default))
    return config
