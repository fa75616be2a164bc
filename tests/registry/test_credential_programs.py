"""Credentials from programs: Docker credential helpers and kubelet credential provider plugins.

Real programs (``tests/support/programs.py``) speaking the documented
protocols, run by baseguard against real registries: the TLS registry with
htpasswd basic auth and the bearer-token registry. Without the programs the
same lookups are refused (the "before" of each test).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.credentials import IDENTITY_TOKEN, TLS_USER
from support.images import layer
from support.programs import Program, docker_helper, path_with, provider_plugin
from support.registry import RegistryProcess, start_registry
from support.token_server import TokenServer

from controller.cli.main import main
from controller.errors import ExitCode, InputError, LookupFailed
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.registry.config import (
    Credentials,
    DockerCredentials,
    RegistryHost,
    parse_registry_config,
)
from controller.registry.helpers import CredentialProviders
from controller.registry.kubeletmatch import AuthMap, go_duration, image_matches
from controller.registry.programs import MAX_CONCURRENT_PROGRAMS, ProgramFailed, run_program

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
        # Go's url.Parse and filepath.Match, not fnmatch: ! is a character in a class (and ^ or \\
        # is no host character at all), an unclosed class is a bad pattern that matches nothing
        ("reg[!x]stry.io", "registry.io/app", False),
        ("reg[!i]stry.io", "registry.io/app", True),
        ("reg[^x]stry.io", "registry.io/app", False),
        ("registry.[io", "registry.[io/app", False),
        ("registry.i[]o", "registry.i]o/app", False),
        ("registry.i[a-]o", "registry.i-o/app", False),
        ("reg[a-j]stry.io", "registry.io/app", True),
        ("r*stry.io/team", "registry.io/teamwork/app", True),  # the kubelet's path prefix is a string prefix
    ],
)
def test_match_images_follows_the_kubelet(pattern: str, image: str, matches: bool) -> None:
    assert image_matches(pattern, image) is matches


ROBOT = Credentials(username="robot", password="r")
TEAM = Credentials(username="team", password="t")
HUB = Credentials(username="hub", password="h")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("reg.example/team/app:1", TEAM),  # the longer key wins
        ("reg.example/other/app:1", ROBOT),
        ("eu.reg.example/team/app:1", ROBOT),  # *.reg.example
        ("reg.example:5000/team/app", Credentials()),  # another port: no key matches
        ("elsewhere.example/app", Credentials()),  # nothing for this host: anonymous
        ("docker.io/library/nginx:1", HUB),  # Docker Hub's legacy key, as the kubelet reads it
    ],
)
def test_a_plugins_auth_map_is_matched_per_image_like_the_kubelets_keyring(
    image: str, expected: Credentials
) -> None:
    answer = AuthMap.parse(
        {
            "reg.example": {"username": "robot", "password": "r"},
            "https://reg.example/v2/team": {"username": "team", "password": "t"},
            "*.reg.example": {"username": "robot", "password": "r"},
            "https://index.docker.io/v1/": {"username": "hub", "password": "h"},
            "broken.example": "not an entry",
        }
    )
    assert answer.lookup(image) == expected


async def test_programs_run_at_most_four_at_once_whoever_starts_them(tmp_path: Path) -> None:
    """Docker helpers and plugins share one cap: 12 programs asked for at once, 4 run at a time."""
    log = tmp_path / "runs.log"
    script = tmp_path / "slow"
    script.write_text(
        f"#!{sys.executable}\nimport json, time\nstart = time.time()\ntime.sleep(0.2)\n"
        f"open({str(log)!r}, 'a').write(json.dumps({{'start': start, 'end': time.time()}}) + '\\n')\n"
    )
    script.chmod(0o755)
    await asyncio.gather(*(run_program([str(script)], b"", env=None, what="slow") for _ in range(12)))
    runs = Program(script, log, tmp_path / "unused.json")
    assert len(runs.calls()) == 12
    assert 1 < runs.most_at_once() <= MAX_CONCURRENT_PROGRAMS


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


# ------------------------------------------------------------------ fan-out: one run per registry, bounded

OTHER_USER = ("robot-b", "robot-b-Pa55word")  # htpasswd user of the second registry
TAGS = 128  # per registry: two registries make a 256-image review


@pytest.fixture(scope="module")
def other_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A second TLS + htpasswd registry with a user of its own."""
    reg = start_registry(tmp_path_factory.mktemp("registry-tls-b"), tls=True, htpasswd=OTHER_USER)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def many_tags(tls_registry: RegistryProcess, other_registry: RegistryProcess) -> list[str]:
    """128 tags of one image on each registry: 256 distinct images, each a tag to resolve."""
    images = []
    for reg in (tls_registry, other_registry):
        pushed = reg.push_image("fanout/app", "t0", [BASE])
        for i in range(1, TAGS):
            reg.push_manifest("fanout/app", f"t{i}", pushed.body, pushed.media_type)
        images += [f"{reg.host}/fanout/app:t{i}" for i in range(TAGS)]
    return images


def check_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], registries: list[RegistryProcess],
    images: list[str], providers: Path, bin_dir: Path,
) -> tuple[int, list[dict[str, Any]], str]:
    """``baseguard check`` of one pod naming ``images``, with the plugin configured."""
    config = tmp_path / "registries.yaml"
    config.write_text(
        json.dumps(
            {
                "registries": [{"host": r.host, "caFile": r.ca_file} for r in registries],
                "credentialProviderConfig": str(providers),
                "credentialProviderBinDir": str(bin_dir),
            }
        )
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        json.dumps(
            {
                "apiVersion": "baseguard.io/v1alpha1",
                "kind": "ClusterBaseImagePolicy",
                "metadata": {"name": "bases"},
                "spec": {"mode": "Enforce", "bases": {"allowed": [{"image": "*/fanout/app", "tags": ["*"]}]}},
            }
        )
    )
    pod = tmp_path / "pod.yaml"
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    pod.write_text(
        json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                    "spec": {"containers": containers}})
    )
    code = main(["check", str(pod), "-p", str(policy), "--registry-config", str(config), "--format", "json"])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out)["results"], err


def lookup_failures(results: list[dict[str, Any]]) -> list[str]:
    return [v["message"] for r in results for v in r["violations"] if v["rule"] == "lookup-failed"]


def test_a_review_of_256_images_runs_the_plugin_once_per_registry(
    tls_registry: RegistryProcess, other_registry: RegistryProcess, many_tags: list[str],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Every image of the review waits for the one run for its registry, then matches its answer."""
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(
        bin_dir, "test-credential-provider", {tls_registry.host: TLS_USER, other_registry.host: OTHER_USER}
    )
    config = provider_config(bin_dir, [tls_registry.host, other_registry.host], SLEEP="0.3")

    _, results, err = check_pod(tmp_path, capsys, [tls_registry, other_registry], many_tags, config, bin_dir)

    assert lookup_failures(results) == [], err
    assert len(results) == 256
    assert sorted(i.rpartition("/fanout")[0] for i in plugin.images()) == sorted(
        [tls_registry.host, other_registry.host]
    )  # one run per registry (it was one per image: 256)


def test_programs_run_at_most_four_at_once_and_the_review_starts_at_most_32(
    tls_registry: RegistryProcess, many_tags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A plugin answering per image: 40 images, 40 runs needed; 32 run, never more than 4 at once,
    and the 8 past the bound are lookup-failed naming it."""
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(bin_dir, "test-credential-provider", {tls_registry.host: TLS_USER})
    config = provider_config(bin_dir, [tls_registry.host], CACHE_KEY_TYPE="Image", SLEEP="0.2")
    images = many_tags[:40]

    code, results, _ = check_pod(tmp_path, capsys, [tls_registry], images, config, bin_dir)

    assert len(plugin.calls()) == 32
    assert 1 < plugin.most_at_once() <= MAX_CONCURRENT_PROGRAMS == 4
    failures = lookup_failures(results)
    assert len(failures) == 8, failures
    assert all(
        "this review reached its limit of 32 credential programs run (max_processes_per_review = 32)" in m
        for m in failures
    ), failures
    assert code == ExitCode.UNJUDGED  # lookup-failed denies (onLookupFailure: Deny), and says "could not judge"


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def vm_hwm_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def test_a_plugin_printing_300_mb_is_killed_at_1_mib_and_costs_no_memory(
    tls_registry: RegistryProcess, many_tags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The output is read as it comes: at 1 MiB the plugin is killed, ``check`` says so on stderr
    (Python's last-resort handler prints warnings there) and the lookup goes on anonymously."""
    warm = tmp_path / "warm"  # the same check with an honest plugin first: imports and caches warm
    provider_plugin(warm / "plugins", "test-credential-provider", {tls_registry.host: TLS_USER})
    honest = provider_config(warm / "plugins", [tls_registry.host])
    assert lookup_failures(check_pod(warm, capsys, [tls_registry], many_tags[1:2], honest, warm / "plugins")[1]) == []
    bin_dir = tmp_path / "plugins"
    plugin = provider_plugin(bin_dir, "test-credential-provider", {tls_registry.host: TLS_USER})
    config = provider_config(bin_dir, [tls_registry.host], FLOOD_BYTES=str(300 * 1024 * 1024))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current RSS
    before = vm_hwm_kib()

    code, results, _ = check_pod(tmp_path, capsys, [tls_registry], many_tags[:1], config, bin_dir)

    grown_mib = (vm_hwm_kib() - before) / 1024
    assert grown_mib < 4, f"peak RSS grew by {grown_mib:.0f} MiB"
    assert len(plugin.calls()) == 1
    assert (
        "credential provider plugin failed (test-credential-provider printed more than 1048576 bytes; "
        "it was killed); looking up anonymously"
    ) in caplog.messages
    (failure,) = lookup_failures(results)
    assert "requires credentials (Basic) and none are configured" in failure
    assert code == ExitCode.UNJUDGED
    pid = int(plugin.calls()[0]["pid"])  # type: ignore[call-overload]
    assert not running(pid)  # killed and reaped


async def test_a_plugin_that_never_answers_is_killed_with_its_children(tmp_path: Path) -> None:
    """The timeout kills the whole process group: a child holding stdout open dies too."""
    script = tmp_path / "stuck"
    script.write_text("#!/bin/sh\nsleep 300 &\necho $! > " + str(tmp_path / "child") + "\nwait\n")
    script.chmod(0o755)
    with pytest.raises(ProgramFailed, match=r"stuck did not answer within 0\.5s; it was killed"):
        await run_program([str(script)], b"", env=None, what="stuck", time_limit=0.5)
    child = int(await asyncio.to_thread((tmp_path / "child").read_text))
    for _ in range(50):
        if not running(child):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the plugin's child is still running")
