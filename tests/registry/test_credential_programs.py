"""Credentials from programs: Docker credential helpers and kubelet credential provider plugins.

Real programs (``tests/support/programs.py``) speaking the documented
protocols, run by baseguard against real registries: the TLS registry with
htpasswd basic auth and the bearer-token registry. Without the programs the
same lookups are refused (the "before" of each test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.credentials import IDENTITY_TOKEN, TLS_USER
from support.images import layer
from support.programs import Program, docker_helper, path_with, provider_plugin
from support.registry import RegistryProcess
from support.token_server import TokenServer

from controller.errors import InputError, LookupFailed
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.registry.config import DockerCredentials, RegistryHost, parse_registry_config
from controller.registry.helpers import CredentialProviders, go_duration, image_matches

BASE = layer({"etc/os-release": "ID=programs\n"})


@pytest.fixture(scope="module")
def tls_images(tls_registry: RegistryProcess) -> list[Any]:
    return [tls_registry.push_image(f"programs/app{i}", "v1", [BASE]) for i in range(2)]


def tls_host(reg: RegistryProcess) -> RegistryHost:
    return RegistryHost(reg.host, ca_file=reg.ca_file)


# ------------------------------------------------------------------ Docker credential helpers


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_registry: RegistryProcess) -> Program:
    program = docker_helper(tmp_path / "bin", "test", {tls_registry.host: TLS_USER})
    monkeypatch.setenv("PATH", path_with(program.path.parent))
    return program


async def test_cred_helpers_run_the_hosts_helper_once_and_the_lookups_authenticate(
    tls_registry: RegistryProcess, tls_images: list[Any], make_client: Any, helper: Program
) -> None:
    anonymous: RegistryClient = make_client(tls_host(tls_registry))
    with pytest.raises(LookupFailed, match="requires credentials \\(Basic\\) and none are configured"):
        await anonymous.fetch_manifest(parse(tls_images[0].tagged))

    docker = DockerCredentials.parse(json.dumps({"credHelpers": {tls_registry.host: "test"}}))
    client: RegistryClient = make_client(tls_host(tls_registry), docker_config=docker)
    digests = [(await client.fetch_manifest(parse(i.tagged))).digest for i in tls_images]

    assert digests == [i.digest for i in tls_images]
    assert helper.calls() == [{"argv": ["get"], "server": tls_registry.host}]  # once, then cached


async def test_creds_store_with_an_identity_token(
    token_registry: RegistryProcess, token_server: TokenServer, make_client: Any,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Username: "<token>"``: the Secret is an OAuth2 refresh token, exchanged at the realm."""
    pushed = token_registry.push_image("team/app", "programs", [BASE])
    program = docker_helper(tmp_path / "bin", "store", {token_registry.host: ("<token>", IDENTITY_TOKEN)})
    monkeypatch.setenv("PATH", path_with(program.path.parent))
    docker = DockerCredentials.parse(json.dumps({"credsStore": "store", "auths": {token_registry.host: {}}}))
    client: RegistryClient = make_client(
        RegistryHost(token_registry.host, insecure=True),
        RegistryHost(token_server.host, insecure=True),
        docker_config=docker,
    )

    assert (await client.fetch_manifest(parse(pushed.reference))).digest == pushed.digest
    last = token_server.requests[-1]
    assert (last.user, last.method) == ("alice", "POST")


async def test_a_helper_with_nothing_for_the_host_leaves_the_lookup_anonymous(
    tls_registry: RegistryProcess, tls_images: list[Any], make_client: Any, helper: Program
) -> None:
    helper.set_store({})
    docker = DockerCredentials.parse(json.dumps({"credsStore": "test"}))
    client: RegistryClient = make_client(tls_host(tls_registry), docker_config=docker)
    with pytest.raises(LookupFailed, match="requires credentials \\(Basic\\) and none are configured"):
        await client.fetch_manifest(parse(tls_images[0].tagged))
    assert len(helper.calls()) == 1


def test_helper_names_cannot_be_paths() -> None:
    with pytest.raises(InputError, match="credHelpers\\['reg'\\]: expected a helper name"):
        DockerCredentials.parse(json.dumps({"credHelpers": {"reg": "../../bin/sh"}}))
    with pytest.raises(InputError, match="credsStore: expected a helper name"):
        DockerCredentials.parse(json.dumps({"credsStore": "/bin/sh"}))


# ------------------------------------------------------------------ kubelet credential provider plugins


def provider_config(bin_dir: Path, patterns: list[str], **env: str) -> Path:
    path = bin_dir.parent / "credential-provider-config.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [
                    {
                        "name": "test-credential-provider",
                        "matchImages": patterns,
                        "defaultCacheDuration": "10m",
                        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                        "args": [str(bin_dir / "test-credential-provider.json")],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                    }
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("key_type", "runs"), [("Registry", 1), ("Global", 1), ("Image", 2)], ids=["registry", "global", "image"]
)
async def test_a_kubelet_plugin_authenticates_and_is_cached_as_it_says(
    tls_registry: RegistryProcess, tls_images: list[Any], make_client: Any, tmp_path: Path,
    key_type: str, runs: int,
) -> None:
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(bin_dir, "test-credential-provider", {tls_registry.host: TLS_USER})
    providers = CredentialProviders.load(
        provider_config(bin_dir, [tls_registry.host], CACHE_KEY_TYPE=key_type, CACHE_DURATION="1h"), bin_dir
    )
    client: RegistryClient = make_client(tls_host(tls_registry), credential_providers=providers)

    for _ in range(2):
        digests = [(await client.fetch_manifest(parse(i.tagged))).digest for i in tls_images]
        client.cache.clear()

    assert digests == [i.digest for i in tls_images]
    calls = plugin.calls()
    assert len(calls) == runs
    assert calls[0]["request"] == {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": f"{tls_registry.host}/programs/app0:v1",
    }


async def test_a_plugin_runs_only_for_the_images_it_matches(
    tls_registry: RegistryProcess, tls_images: list[Any], make_client: Any, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(bin_dir, "test-credential-provider", {tls_registry.host: TLS_USER})
    providers = CredentialProviders.load(provider_config(bin_dir, ["*.dkr.ecr.*.amazonaws.com"]), bin_dir)
    client: RegistryClient = make_client(tls_host(tls_registry), credential_providers=providers)
    with pytest.raises(LookupFailed, match="none are configured"):
        await client.fetch_manifest(parse(tls_images[0].tagged))
    assert plugin.calls() == []


@pytest.mark.parametrize(
    ("pattern", "image", "matches"),
    [
        ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1", True),
        ("*.dkr.ecr.*.amazonaws.com", "dkr.ecr.eu-west-1.amazonaws.com/app", False),  # label count
        ("*.azurecr.io", "team.azurecr.io/app", True),
        ("*-docker.pkg.dev", "europe-docker.pkg.dev/p/r/app", True),
        ("registry.io:5000", "registry.io/app", False),  # ports must be equal
        ("registry.io", "registry.io:5000/app", False),
        ("registry.io:5000/team", "registry.io:5000/team/app", True),  # path prefix
        ("registry.io:5000/team", "registry.io:5000/other/app", False),
        ("REGISTRY.io", "registry.IO/app", True),
    ],
)
def test_match_images_follows_the_kubelet(pattern: str, image: str, matches: bool) -> None:
    assert image_matches(pattern, image) is matches


def test_provider_config_problems_are_named(tmp_path: Path) -> None:
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir()
    config = provider_config(bin_dir, ["reg.example"])
    text = config.read_text()
    yaml = f"credentialProviderConfig: {config}\ncredentialProviderBinDir: {bin_dir}\n"
    assert parse_registry_config(yaml).credential_providers is not None
    with pytest.raises(InputError, match="go together"):
        parse_registry_config(f"credentialProviderConfig: {config}\n")
    config.write_text(text.replace("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1alpha1"))
    with pytest.raises(InputError, match=r"apiVersion must be kubelet\.config\.k8s\.io/v1"):
        parse_registry_config(yaml)
    config.write_text(text.replace('"10m"', '"ten minutes"'))
    with pytest.raises(InputError, match="defaultCacheDuration: 'ten minutes' is not a duration"):
        parse_registry_config(yaml)
    assert [go_duration(d, where="x") for d in ("12h", "1h30m", "90s", "0")] == [43200, 5400, 90, 0]
