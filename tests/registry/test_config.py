"""--registry-config YAML, Docker config.json credentials, and immutable derivation with pull secrets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from controller.errors import InputError
from controller.registry.config import (
    Credentials,
    DockerCredentials,
    RegistryConfig,
    RegistryHost,
    canonical_host,
    load_registry_config,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_full_registry_config(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(
        tmp_path,
        "registries.yaml",
        """
timeout: 2.5
maxConcurrency: 4
registries:
  - host: registry.corp.example:5000
    caFile: certs/ca.pem
    username: robot
    passwordEnv: CORP_PASSWORD
    mirrors: [mirror.corp.example]
    timeout: 1
    maxConcurrency: 2
  - host: 10.0.0.5:5000
    insecure: true
    allowPrivate: true
  - host: ghcr.io
    token: ghp-static-token
""",
    )

    config = load_registry_config(path, env={"CORP_PASSWORD": "hunter2"}, docker_config=None)

    corp = config.host("registry.corp.example:5000")
    assert corp.ca_file == str(tmp_path / "certs" / "ca.pem")
    assert (corp.username, corp.password) == ("robot", "hunter2")
    assert corp.mirrors == ("mirror.corp.example",)
    assert (config.timeout_for(corp.host), config.concurrency_for(corp.host)) == (1.0, 2)
    assert (config.timeout_for("quay.io"), config.concurrency_for("quay.io")) == (2.5, 4)
    assert config.host("10.0.0.5:5000").insecure is True
    assert config.host("ghcr.io").token == "ghp-static-token"
    assert config.is_explicit("mirror.corp.example") and config.is_explicit("10.0.0.5:5000")
    assert not config.is_explicit("quay.io")
    assert "hunter2" not in repr(config) and "ghp-static-token" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("registries: [\n", "not valid YAML"),
        ("- a\n- b\n", "{path}: expected a mapping with 'registries'"),
        ("registries: {host: x}\n", "{path}: registries: expected a list"),
        ("registry: []\n", "{path}: unknown key 'registry'"),
        ("registries: [{insecure: true}]\n", "{path}: registries[0].host: expected a non-empty string"),
        ("registries: [{host: 'https://r.example'}]\n", "{path}: registries[0].host: 'https://r.example' is not a host[:port]"),
        ("registries: [{host: r.example, insecure: 'yes'}]\n", "{path}: registries[0].insecure: expected true or false, got 'yes'"),
        ("registries: [{host: r.example, timeout: 0}]\n", "{path}: registries[0].timeout: expected a positive number of seconds, got 0"),
        ("registries: [{host: r.example, maxConcurrency: 1.5}]\n", "{path}: registries[0].maxConcurrency: expected a positive integer, got 1.5"),
        ("registries: [{host: r.example, caFile: nope.pem}]\n", "{path}: registries[0].caFile: {dir}/nope.pem does not exist"),
        ("registries: [{host: r.example, username: u}]\n", "{path}: registries[0]: username and password go together"),
        ("registries: [{host: r.example, username: u, passwordEnv: MISSING_VAR}]\n", "{path}: registries[0].passwordEnv: environment variable MISSING_VAR is not set"),
        ("registries: [{host: r.example, username: u, password: p, passwordEnv: X}]\n", "{path}: registries[0]: give password or passwordEnv, not both"),
        ("registries: [{host: r.example, mirror: [m]}]\n", "{path}: registries[0]: unknown key 'mirror'"),
        ("registries: [{host: r.example, mirrors: m}]\n", "{path}: registries[0].mirrors: expected a list of host names"),
        ("registries: [{host: r.example}, {host: r.example}]\n", "{path}: registries[1].host: r.example is listed twice"),
        ("timeout: -1\n", "{path}: timeout: expected a positive number of seconds, got -1"),
    ],
    ids=[
        "bad-yaml", "not-a-mapping", "registries-not-list", "unknown-top-key", "no-host", "host-with-scheme",
        "insecure-not-bool", "zero-timeout", "float-concurrency", "missing-ca", "user-without-password",
        "unset-env", "password-twice", "unknown-host-key", "mirrors-not-list", "duplicate-host", "negative-timeout",
    ],
)
def test_bad_registry_config(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "registries.yaml", text)

    with pytest.raises(InputError) as info:
        load_registry_config(path, env={}, docker_config=None)

    assert message.format(path=path, dir=tmp_path) in str(info.value)


def test_yaml_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", 'registries:\n  - host: r.example\n    password: "hunter2\n')

    with pytest.raises(InputError) as info:
        load_registry_config(path, env={})

    assert str(info.value).startswith(f"{path}: not valid YAML at line ")
    assert "hunter2" not in str(info.value)


def test_missing_registry_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^cannot read registry config .*/absent.yaml: No such file or directory$"):
        load_registry_config(str(tmp_path / "absent.yaml"), env={})


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_registry_config(write(tmp_path, "r.yaml", ""), env={"DOCKER_CONFIG": str(tmp_path)})
    assert dict(config.hosts) == {} and config.docker_config is None


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"auth": b64("robot:s3cret:with:colons")}, Credentials("robot", "s3cret:with:colons")),
        ({"username": "u", "password": "p"}, Credentials("u", "p")),
        ({"identitytoken": "refresh-me"}, Credentials(identity_token="refresh-me")),
        ({"registrytoken": "bearer-me"}, Credentials(token="bearer-me")),
        ({"auth": b64("u:p"), "identitytoken": "id"}, Credentials("u", "p", identity_token="id")),
    ],
    ids=["auth-base64", "username-password", "identity-token", "registry-token", "auth-and-identity"],
)
def test_docker_config_entries(entry: dict[str, str], expected: Credentials) -> None:
    docker = DockerCredentials.parse(json.dumps({"auths": {"registry.example.com": entry}}))
    assert docker.get("registry.example.com") == expected


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://Registry.Example.com:5000/v2/", "registry.example.com:5000"),
        ("http://10.0.0.5:5000", "10.0.0.5:5000"),
    ],
    ids=["hub-v1-url", "hub-index", "hub-api", "scheme-path-case", "http-ip"],
)
def test_canonical_host(key: str, host: str) -> None:
    assert canonical_host(key) == host


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "config.json: not valid JSON"),
        ("[]", "config.json: expected a JSON object"),
        ('{"auths": []}', "config.json: auths: expected an object"),
        ('{"auths": {"r": "x"}}', "config.json: auths['r']: expected an object"),
        ('{"auths": {"r": {"auth": "!!!"}}}', "config.json: auths['r'].auth: not base64 of 'user:password'"),
        ('{"auths": {"r": {"auth": "' + b64("nocolon") + '"}}}', "config.json: auths['r'].auth: not base64 of 'user:password'"),
    ],
    ids=["bad-json", "not-object", "auths-list", "entry-string", "bad-base64", "no-colon"],
)
def test_bad_docker_config(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        DockerCredentials.parse(text)
    assert str(info.value).startswith(message)
    assert "nocolon" not in str(info.value)


def test_docker_config_default_path_only_when_present(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert load_registry_config(None, env=env).docker_config is None

    (tmp_path / "config.json").write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": b64("me:pw")}}}))
    config = load_registry_config(None, env=env)

    hub = config.host("docker.io")
    assert (hub.username, hub.password) == ("me", "pw")
    assert hub.api_host == "registry-1.docker.io"


def test_explicit_docker_config_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^cannot read Docker config .*/nope.json: No such file or directory$"):
        load_registry_config(None, docker_config=str(tmp_path / "nope.json"), env={})


def test_configured_credentials_win_over_docker_config(tmp_path: Path) -> None:
    docker = write(tmp_path, "config.json", json.dumps({"auths": {"r.example": {"auth": b64("docker:pw")}}}))
    yaml_path = write(tmp_path, "r.yaml", "registries: [{host: r.example, username: yaml, password: pw2}]\n")

    config = load_registry_config(yaml_path, docker_config=docker, env={})

    assert config.host("r.example").username == "yaml"
    assert config.docker_config is not None and config.docker_config.source == docker


def test_docker_config_named_in_yaml(tmp_path: Path) -> None:
    write(tmp_path, "creds.json", json.dumps({"auths": {"r.example": {"auth": b64("u:p")}}}))
    path = write(tmp_path, "r.yaml", "dockerConfig: creds.json\n")

    assert load_registry_config(path, env={}).host("r.example").username == "u"


def test_with_credentials_derives_without_mutating_or_allowing() -> None:
    base = RegistryConfig.of(RegistryHost("r.example", ca_file="/ca.pem", username="cfg", password="cfg-pw"))

    derived = base.with_credentials(
        {
            "r.example": Credentials("pull-secret", "ps-pw"),
            "https://index.docker.io/v1/": Credentials("hub", "hub-pw"),
            "10.0.0.5:5000": Credentials("tenant", "tenant-pw"),
        }
    )

    assert derived.host("r.example").username == "pull-secret"
    assert derived.host("r.example").ca_file == "/ca.pem"  # other settings kept
    assert derived.host("docker.io").username == "hub"
    assert base.host("r.example").username == "cfg"  # the original is unchanged
    # a tenant's pull secret names a private host: that does not make it explicit
    assert not derived.is_explicit("10.0.0.5:5000")
    assert derived.host("10.0.0.5:5000").username == "tenant"
    assert "ps-pw" not in repr(derived) and "tenant-pw" not in repr(derived)


def test_config_is_immutable() -> None:
    config = RegistryConfig.of(RegistryHost("r.example"))
    with pytest.raises(TypeError):
        config.hosts["other"] = RegistryHost("other")  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.timeout = 1.0  # type: ignore[misc]
