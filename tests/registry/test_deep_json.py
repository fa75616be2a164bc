"""JSON nested thousands deep, from a real registry, in every document baseguard reads.

A registry answers whatever was pushed to it: a manifest (docker-registry takes
up to 10,000 levels), an image config, a Buildpacks label, a BuildKit buildinfo
record, an in-toto statement, a DSSE payload, an error body, the referrers tag.
Each is read through one bounded reader, so each is a ``lookup-failed`` finding
whose message names the document and the bound -- through ``baseguard check``
(exit code as ``onLookupFailure`` says) and ``baseguard lineage`` -- never
"maximum recursion depth exceeded", never a traceback.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.faulty_proxy import Fault, FaultyProxy
from support.images import IN_TOTO, OCI, OCI_INDEX, Pushed, layer
from support.provenance import push_buildx_index
from support.registry import RegistryProcess

from controller.cli.main import main
from controller.errors import ExitCode
from controller.registry import media

TOO_DEEP = "nested more than 100 levels deep (lists and mappings); refused"
#: docker-registry refuses manifests nested deeper than 10,000 (Go's JSON decoder).
MANIFEST_DEPTH = 5_000
#: Blobs are not parsed by the registry: as deep as the issue's.
BLOB_DEPTH = 50_000


def deep(levels: int) -> Any:
    """``[[[…]]]`` ``levels`` deep, as text (json.dumps would recurse)."""
    return "[" * levels + "]" * levels


def deep_object(levels: int, **fields: Any) -> bytes:
    """A JSON object with ``fields`` and one member nested ``levels`` deep."""
    head = json.dumps(fields)[:-1] + (", " if fields else "")
    return f'{head}"deep": {deep(levels)}}}'.encode()


def plain(registry: RegistryProcess, repo: str, tag: str, **kwargs: Any) -> Pushed:
    return registry.push_image(repo, tag, [layer({"srv/app": f"{repo}:{tag}"})], **kwargs)


def push_deep_manifest(registry: RegistryProcess, repo: str) -> str:
    config = registry.push_blob(repo, b'{"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}}')
    body = deep_object(
        MANIFEST_DEPTH,
        schemaVersion=2,
        mediaType=OCI,
        config={"mediaType": media.OCI_CONFIG, **config},
        layers=[],
    )
    registry.push_manifest(repo, "deep", body, OCI)
    return "deep"


def push_deep_config(registry: RegistryProcess, repo: str) -> str:
    plain(registry, repo, "config", config_extra={"history": [{"created_by": "x"}]})
    # config_extra is merged with json.dumps, which recurses: write the config by hand.
    config = deep_object(
        BLOB_DEPTH, architecture="amd64", os="linux", rootfs={"type": "layers", "diff_ids": []}
    )
    desc = {"mediaType": media.OCI_CONFIG, **registry.push_blob(repo, config)}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI, "config": desc, "layers": []}).encode()
    registry.push_manifest(repo, "config", body, OCI)
    return "config"


def push_deep_buildpacks(registry: RegistryProcess, repo: str) -> str:
    plain(registry, repo, "buildpacks", labels={media.BUILDPACKS_METADATA: deep(BLOB_DEPTH)})
    return "buildpacks"


def push_deep_buildinfo(registry: RegistryProcess, repo: str) -> str:
    record = base64.b64encode(deep(20_000).encode()).decode()  # under the 64 KiB record bound
    plain(registry, repo, "buildinfo", config_extra={media.BUILDINFO: record})
    return "buildinfo"


def push_statement(registry: RegistryProcess, repo: str, tag: str, statement: bytes) -> str:
    image = plain(registry, repo, f"{tag}-image")
    push_buildx_index(registry.pusher, repo, tag, [(image, "linux/amd64", [statement])])
    return tag


def push_deep_statement(registry: RegistryProcess, repo: str) -> str:
    statement = deep_object(BLOB_DEPTH, _type="https://in-toto.io/Statement/v0.1")
    return push_statement(registry, repo, "statement", statement)


def push_deep_dsse(registry: RegistryProcess, repo: str) -> str:
    payload = base64.b64encode(deep(BLOB_DEPTH).encode()).decode()
    envelope = json.dumps({"payloadType": IN_TOTO, "payload": payload, "signatures": []}).encode()
    return push_statement(registry, repo, "dsse", envelope)


def push_deep_referrers_tag(registry: RegistryProcess, repo: str) -> str:
    image = plain(registry, repo, "referrers")
    index = deep_object(MANIFEST_DEPTH, schemaVersion=2, mediaType=OCI_INDEX, manifests=[])
    registry.push_manifest(repo, "sha256-" + image.digest.removeprefix("sha256:"), index, OCI_INDEX)
    return "referrers"


#: kind → (push, what the message names). The referrers tag is read on speculation, so
#: its refusal is a note on an unknown base, not a lookup failure.
KINDS: dict[str, tuple[Callable[[RegistryProcess, str], str], str]] = {
    "manifest": (push_deep_manifest, f"manifest is {TOO_DEEP}"),
    "config": (push_deep_config, f"image config is {TOO_DEEP}"),
    "buildpacks-label": (
        push_deep_buildpacks,
        f"its Buildpacks label {media.BUILDPACKS_METADATA} is {TOO_DEEP}",
    ),
    "buildinfo": (push_deep_buildinfo, f"its BuildKit buildinfo record is {TOO_DEEP}"),
    "in-toto-statement": (push_deep_statement, f"provenance: an in-toto statement is {TOO_DEEP}"),
    "dsse-payload": (push_deep_dsse, f"provenance: its DSSE payload is {TOO_DEEP}"),
    "referrers-tag": (push_deep_referrers_tag, f"manifest is {TOO_DEEP}"),
}


def policy(tmp_path: Path, on_failure: str) -> Path:
    path = tmp_path / "policy.yaml"
    doc = {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": "bases"},
        "spec": {
            "mode": "Enforce",
            "bases": {"allowed": [{"image": "docker.io/library/python"}]},
            "lineage": {"onLookupFailure": on_failure, "onUnknownBase": "Allow"},
        },
    }
    path.write_text(json.dumps(doc))
    return path


def check(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    host: str,
    image: str,
    on_failure: str,
    *extra: str,
) -> tuple[int, str]:
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\n"
        f'spec:\n  containers:\n    - {{name: app, image: "{image}"}}\n'
    )
    code = main(
        ["check", str(pod), "-p", str(policy(tmp_path, on_failure)), "--registry-config", str(config), *extra]
    )
    out, err = capsys.readouterr()
    return code, out + err


def lineage(tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str, image: str) -> tuple[int, str]:
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{host}", insecure: true}}\n')
    code = main(["lineage", image, "--registry-config", str(config)])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_deep_json_is_a_lookup_failure_naming_the_document_and_the_bound(
    registry: RegistryProcess,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    push, message = KINDS[kind]
    image = f"{registry.host}/{unique_repo}:{push(registry, unique_repo)}"

    # The referrers tag is read on speculation: its refusal is a note, shown in JSON.
    extra = ("--format", "json") if kind == "referrers-tag" else ()
    code, out = check(tmp_path, capsys, registry.host, image, "Deny", *extra)

    assert message in out, out
    assert "recursion" not in out and "TaskGroup" not in out and "Traceback" not in out
    if kind == "referrers-tag":  # read on speculation: a note, the base is unknown (allowed here)
        assert code == 0
    else:
        assert code == ExitCode.UNJUDGED and "lookup-failed" in out  # denied: could not judge


@pytest.mark.parametrize(("on_failure", "exit_code"), [("Allow", 0), ("Warn", 0), ("Deny", ExitCode.UNJUDGED)])
def test_the_exit_code_of_a_deep_document_is_the_policys_on_lookup_failure(
    registry: RegistryProcess,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    on_failure: str,
    exit_code: int,
) -> None:
    image = f"{registry.host}/{unique_repo}:{push_deep_config(registry, unique_repo)}"

    code, out = check(tmp_path, capsys, registry.host, image, on_failure)

    assert code == exit_code and "Traceback" not in out
    if on_failure == "Allow":  # allowed, and said: the lineage rules were not evaluated
        assert "not evaluated (a registry lookup failed, see lookup-failed)" in out
    else:
        assert f"image config is {TOO_DEEP}" in out


@pytest.mark.parametrize("kind", ["manifest", "config", "buildpacks-label", "in-toto-statement"])
def test_baseguard_lineage_names_the_deep_document(
    registry: RegistryProcess,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    push, message = KINDS[kind]
    image = f"{registry.host}/{unique_repo}:{push(registry, unique_repo)}"

    code, out = lineage(tmp_path, capsys, registry.host, image)

    assert code == 2
    assert message in out and "Traceback" not in out and "recursion" not in out


def test_a_deep_error_body_is_reported_by_its_status(
    proxy: FaultyProxy,
    registry: RegistryProcess,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain(registry, unique_repo, "1")
    proxy.add(Fault("status", pattern=f"/v2/{unique_repo}/manifests/", status=500, body=deep(BLOB_DEPTH).encode()))
    image = f"{proxy.host}/{unique_repo}:1"

    code, out = check(tmp_path, capsys, proxy.host, image, "Deny")

    assert code == ExitCode.UNJUDGED
    assert f"registry {proxy.host} answered HTTP 500 (GET /v2/{unique_repo}/manifests/1)" in out
    assert "recursion" not in out and "Traceback" not in out


def test_the_reader_refuses_before_parsing() -> None:
    """The bound is checked on the text: a document past it is never handed to json."""
    from controller.errors import LookupFailed
    from controller.registry import jsonread

    with pytest.raises(LookupFailed, match="image config holds up to 250002 JSON values, over the 65536 baseguard parses"):
        jsonread.read(b"[" + b"0," * 250_000 + b"0]", "image config")
    with pytest.raises(LookupFailed, match=re.escape(f"image config is {TOO_DEEP}")):
        jsonread.read(deep(101), "image config")
    assert jsonread.read(deep(100), "image config") == json.loads(deep(100))
