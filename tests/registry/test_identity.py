"""A tag is a claim, a digest is a fact: images and base claims judged by what their digest is.

Each case is one of the reproduced walk-arounds: run through ``baseguard check``
(the CLI a user runs; webhook and audit share the same assessment path) against
the real registry, with images the test pushes under a ``python`` repository
whose ``3.8-slim`` the policy deprecates and whose ``3.12*`` it allows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli_check import check_pod
from support.images import Pushed, layer
from support.registry import RegistryProcess
from support.tag_pages import PagingFront

from controller.assess import Assessor
from controller.lineage.indexer import IdentityIndex, IndexSettings
from controller.lineage.resolve import LineageResolver
from controller.policy.compile import compile_policy
from controller.reference import parse
from controller.registry.client import RegistryClient
from controller.workloads import extract

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
OS = layer({"etc/os-release": "ID=debian\n"})
PY38 = layer({"usr/bin/python3.8": "3.8\n"})
PY312 = layer({"usr/bin/python3.12": "3.12\n"})


def _python(registry: RegistryProcess, repo: str, tag: str, py: Any, arm: Any = None) -> Pushed:
    """``repo/python:tag`` as a two-platform index, as Docker Official Images are."""
    amd = registry.push_image(f"{repo}/python", None, [OS, py])
    arm64 = registry.push_image(f"{repo}/python", None, [OS, arm or py], arch="arm64")
    return registry.push_index(f"{repo}/python", tag, [(amd, "linux/amd64"), (arm64, "linux/arm64")])


def _doc(
    name: str, python: str, *, allowed: bool, deprecated: bool, pattern: str | None = None
) -> dict[str, Any]:
    bases: dict[str, Any] = {}
    if deprecated:
        bases["deprecated"] = [
            {
                "image": pattern or python,
                "tags": ["3.8*"],
                "reason": "Python 3.8 is end of life",
                "replacement": f"{python}:3.12-slim",
            }
        ]
    if allowed:
        bases["allowed"] = [{"image": python, "tags": ["3.12*"]}]
    return {
        "apiVersion": "baseguard.io/v1alpha1",
        "kind": "ClusterBaseImagePolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Enforce", "bases": bases},
    }


def _policy(
    tmp_path: Path, name: str, python: str, *, allowed: bool, deprecated: bool, pattern: str | None = None
) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = _doc(name, python, allowed=allowed, deprecated=deprecated, pattern=pattern)
    path.write_text(json.dumps(doc))
    return path


def _rules(result: dict[str, Any]) -> set[str]:
    return {v["rule"] for v in result["violations"] if not v.get("waived")}


@pytest.fixture
def pythons(registry: RegistryProcess, unique_repo: str) -> tuple[str, Pushed, Pushed]:
    py38 = _python(registry, unique_repo, "3.8-slim", PY38)
    py312 = _python(registry, unique_repo, "3.12-slim", PY312)
    return f"{registry.host}/{unique_repo}/python", py38, py312


def test_a_tag_that_lies_is_judged_as_the_digest_it_pins(
    registry: RegistryProcess, pythons: tuple[str, Pushed, Pushed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python:3.12-slim@<digest of 3.8-slim>``: the runtime pulls 3.8-slim."""
    python, py38, _ = pythons
    policy = _policy(tmp_path, "bases", python, allowed=True, deprecated=True)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}:3.12-slim@{py38.digest}")
    assert code == 1 and result["verdict"] == "deny"
    assert {"tag-mismatch", "deprecated-base"} <= _rules(result)
    mismatch = next(v for v in result["violations"] if v["rule"] == "tag-mismatch")
    assert f"says tag 3.12-slim, but the digest it pins is {python}:3.8-slim" in mismatch["message"]
    assert mismatch["action"] == "deny"


@pytest.mark.parametrize("glob", [False, True], ids=["literal-repository", "repository-glob"])
def test_pinning_by_digest_keeps_the_end_of_life_library_on(
    registry: RegistryProcess,
    pythons: tuple[str, Pushed, Pushed],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    glob: bool,
) -> None:
    """``python@<digest of 3.8-slim>`` (index or platform manifest) is deprecated, also under
    an entry that names the repository by glob, as the end-of-life library does (``*/library/python``)."""
    python, py38, _ = pythons
    pattern = f"{registry.host}/*/python" if glob else None
    policy = _policy(tmp_path, "eol", python, allowed=False, deprecated=True, pattern=pattern)
    platform_digest = json.loads(py38.body)["manifests"][1]["digest"]
    for digest in (py38.digest, platform_digest):
        code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}@{digest}")
        assert code == 1, digest
        assert _rules(result) == {"deprecated-base"}, result["violations"]
        assert "is deprecated (Python 3.8 is end of life)" in result["violations"][0]["message"]


def test_an_exclusion_by_tag_does_not_cover_a_lying_tag(
    registry: RegistryProcess, pythons: tuple[str, Pushed, Pushed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``exclude.images: [python:3.12*]`` covers 3.12 images, not a 3.8 digest written as 3.12."""
    python, py38, py312 = pythons
    doc = _doc("eol", python, allowed=False, deprecated=True)
    doc["spec"]["exclude"] = {"images": [f"{python}:3.12*"]}
    policy = tmp_path / "eol.yaml"
    policy.write_text(json.dumps(doc))
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}:3.12-slim@{py38.digest}")
    assert (code, _rules(result)) == (1, {"tag-mismatch", "deprecated-base"})
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}:3.12-slim@{py312.digest}")
    assert (code, result["violations"]) == (0, [])


def test_pinning_an_allowed_tag_by_digest_stays_allowed(
    registry: RegistryProcess, pythons: tuple[str, Pushed, Pushed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python@<digest of 3.12-slim>`` under an allowlist of ``3.12*`` is not base-not-allowed."""
    python, _, py312 = pythons
    policy = _policy(tmp_path, "allow", python, allowed=True, deprecated=False)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}@{py312.digest}")
    assert (code, result["verdict"], result["violations"]) == (0, "allow", [])


def test_a_base_claim_is_judged_by_its_digest(
    registry: RegistryProcess, unique_repo: str, pythons: tuple[str, Pushed, Pushed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``base.name: …/python:3.12-slim`` with ``base.digest: <3.8 digest>`` is built on 3.8."""
    python, py38, _ = pythons
    claim = {BASE_NAME: f"{python}:3.12-slim", BASE_DIGEST: py38.digest}
    registry.push_image(f"{unique_repo}/app", "1.0.0", [OS, PY38, layer({"app": "x"})], annotations=claim)
    policy = _policy(tmp_path, "bases", python, allowed=True, deprecated=True)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{registry.host}/{unique_repo}/app:1.0.0")
    assert code == 1
    assert {"tag-mismatch", "deprecated-base"} <= _rules(result)
    texts = " ".join(v["message"] for v in result["violations"])
    assert f"claims base {python}:3.12-slim, but the base digest it names is {python}:3.8-slim" in texts
    assert f"is built on {python}:3.8-slim (written as {python}:3.12-slim)" in texts


def test_an_unknown_digest_is_judged_by_its_tag_and_marked_unverified(
    registry: RegistryProcess, unique_repo: str, pythons: tuple[str, Pushed, Pushed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A digest no watched tag names (pushed and replaced before baseguard looked)."""
    python, _, _ = pythons
    stray = registry.push_image(f"{unique_repo}/python", None, [OS, PY312, layer({"old": "1"})])
    policy = _policy(tmp_path, "allow", python, allowed=True, deprecated=False)
    code, result = check_pod(tmp_path, capsys, registry.host, policy, f"{python}:3.12-slim@{stray.digest}")
    assert (code, result["violations"]) == (0, [])
    (note,) = {lv.get("note") for lv in result["lineage"] if lv.get("note")}
    assert "tag 3.12-slim unverified: the identity index has not seen" in note


async def test_a_digest_pinned_before_its_tag_moved_is_never_denied_for_it(
    registry: RegistryProcess, unique_repo: str, registry_client: RegistryClient
) -> None:
    """Pinning is the normal case: the tag moving on later makes nothing a mismatch."""
    python = f"{registry.host}/{unique_repo}/python"
    _python(registry, unique_repo, "3.8-slim", PY38)
    first = _python(registry, unique_repo, "3.12-slim", PY312)
    policies = (compile_policy(_doc("bases", python, allowed=True, deprecated=True)),)
    resolver = LineageResolver(registry_client)
    index = IdentityIndex(registry_client, history=resolver.catalog.history, settings=IndexSettings(ttl=0))
    assessor = Assessor(resolver, identities=index)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def pod(image: str) -> Any:
        return extract({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                             "spec": {"containers": [{"name": "app", "image": image}]}})

    pinned = f"{python}:3.12-slim@{first.digest}"
    [before] = await assessor.assess(pod(pinned), policies, now=now)
    assert before.results[0].violations == ()
    # 3.12-slim is rebuilt and re-pushed: the tag moves on, the pinned digest stays.
    _python(registry, unique_repo, "3.12-slim", PY312, arm=layer({"usr/bin/python3.12": "3.12.9\n"}))
    registry_client.cache.clear()
    [after] = await assessor.assess(pod(pinned), policies, now=now)
    assert after.results[0].violations == ()
    assert index.history.known(parse(python).name, first.digest) is not None
    assert index.history.current(parse(python).name, "3.12-slim") != frozenset({first.digest})


@pytest.fixture
def paging(registry: RegistryProcess) -> Iterator[PagingFront]:
    front = PagingFront(registry.url).start()
    yield front
    front.stop()


async def test_tag_lists_are_paginated_and_bounded(
    registry: RegistryProcess, unique_repo: str, paging: PagingFront, make_client: Any
) -> None:
    """``tags/list`` pages (``n`` and ``Link: rel="next"``) are followed up to the bound; a
    next link elsewhere is not followed; the index resolves at most ``max_tags`` matching tags."""
    repo = f"{unique_repo}/python"
    image = registry.push_image(repo, "3.12-slim", [OS, PY312])
    for tag in ("3.12.1-slim", "3.12.2-slim", "3.12.3-slim", "3.8-slim"):
        registry.push_manifest(repo, tag, image.body, image.media_type)
    client = make_client(paging)
    ref = parse(f"{paging.host}/{repo}")
    tags, complete = await client.list_tags(ref, page_size=2, max_pages=10)
    assert (tags, complete) == (
        ["3.12-slim", "3.12.1-slim", "3.12.2-slim", "3.12.3-slim", "3.8-slim"],
        True,
    )
    tags, complete = await client.list_tags(ref, page_size=2, max_pages=2)
    assert (len(tags), complete) == (4, False)

    paging.next_link = '<http://169.254.169.254/v2/x/tags/list?n=2>; rel="next"'
    tags, complete = await client.list_tags(ref, page_size=2, max_pages=10)
    assert (tags, complete) == (["3.12-slim", "3.12.1-slim"], False)  # a stray link: not followed
    paging.next_link = None

    index = IdentityIndex(client, settings=IndexSettings(page_size=2, max_pages=10, max_tags=2))
    await index.ensure({ref.name: frozenset({"3.12*"})})
    known = index.history.known(ref.name, image.digest)
    assert known is not None and len(known.tags) == 2  # at most max_tags tags resolved
    assert "3.8-slim" not in known.tags  # only tags matching the policies' globs


async def test_a_tenants_wide_glob_does_not_push_a_cluster_globs_tags_out_of_the_listing(
    registry: RegistryProcess, unique_repo: str, paging: PagingFront, make_client: Any
) -> None:
    """One listing serves every policy naming the repository; the bound on resolved tags is
    per glob, so a tenant's ``*`` over many newer tags leaves the cluster's ``3.8*`` indexed
    (before, the newest ``max_tags`` names of all the globs together were kept: 9-flood-*)."""
    repo = f"{unique_repo}/python"
    old = registry.push_image(repo, "3.8-slim", [OS, PY38])
    image = registry.push_image(repo, "9-flood", [OS, PY312])
    for i in range(6):
        registry.push_manifest(repo, f"9-flood-{i}", image.body, image.media_type)
    client = make_client(paging)  # a paging front: tags/list sorted, as registries answer it
    name = parse(f"{paging.host}/{repo}").name
    index = IdentityIndex(client, settings=IndexSettings(max_tags=2))
    await index.ensure({name: frozenset({"3.8*", "*"})})
    known = index.history.known(name, old.digest)
    assert known is not None and known.tags == {"3.8-slim"}


async def test_the_index_remembers_a_bounded_number_of_repositories(
    registry: RegistryProcess, unique_repo: str, registry_client: RegistryClient
) -> None:
    """Pods pinning ever new repositories cannot grow the index without end: past
    ``max_repositories`` the least recently listed is forgotten, and listed again when needed."""
    names = []
    for i in range(3):
        repo = f"{unique_repo}/python{i}"
        registry.push_image(repo, "3.12-slim", [OS, PY312])
        names.append(parse(f"{registry.host}/{repo}").name)
    index = IdentityIndex(registry_client, settings=IndexSettings(max_repositories=2))
    for name in names:
        await index.ensure({name: frozenset({"3.12*"})})
    assert index.repositories == (names[1], names[2])
    assert not index.fresh(names[0], frozenset({"3.12*"}))
    await index.ensure({names[0]: frozenset({"3.12*"})})
    assert index.repositories == (names[2], names[0])
