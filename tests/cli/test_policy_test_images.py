"""``baseguard test`` with described images: every lineage rule fires offline, through the
real resolver, identity index and assessor; a wrong expectation fails with a diff (exit 1);
a malformed image description is exit 2 with its field path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main

OLD = "sha256:" + "1" * 64
PY38 = "sha256:" + "38" * 32

POLICY = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: team}
spec:
  mode: Enforce
  bases:
    allowed:
      - {image: docker.io/library/python, tags: ["3.12*-slim*", "3.8*"]}
    deprecated:
      - image: docker.io/library/python
        tags: ["3.8*"]
        reason: "Python 3.8 is end of life"
        replacement: docker.io/library/python:3.12-slim
  lineage:
    onUnknownBase: Deny
    staleBase: Deny
    catalog: ["docker.io/library/python:3.12-slim"]
"""

IMAGES = f"""\
images:
  - name: debian:bookworm
    layers: [bookworm]
  - name: python:3.12
    from: debian:bookworm
    layers: [python-3.12]
  - name: python:3.12-slim
    layers: [bookworm-slim, python-3.12-slim-v2]
  - name: python
    pastTags: [3.12-slim]
    digest: "{OLD}"
    layers: [bookworm-slim, python-3.12-slim-v1]
  - name: python:3.8-slim
    digest: "{PY38}"
    layers: [bullseye-slim, python-3.8-slim]
  - {{name: "ghcr.io/acme/full:1", from: "python:3.12", baseAnnotations: true, layers: [app]}}
  - {{name: "ghcr.io/acme/old:1", from: "python:3.8-slim", baseAnnotations: true, layers: [app]}}
  - {{name: "ghcr.io/acme/detected:1", from: "python:3.12-slim", layers: [app]}}
  # Built FROM python:3.12-slim when the tag named OLD; the tag has moved on since.
  - {{name: "ghcr.io/acme/stale:1", from: "python:3.12-slim@{OLD}", baseAnnotations: true, layers: [app]}}
  # The same, its claim written by hand.
  - name: ghcr.io/acme/stale-by-hand:1
    from: "python@{OLD}"
    annotations:
      org.opencontainers.image.base.name: docker.io/library/python:3.12-slim
      org.opencontainers.image.base.digest: "{OLD}"
    layers: [app]
  - name: ghcr.io/acme/liar:1
    layers: [other, app]
    annotations: {{org.opencontainers.image.base.name: "docker.io/library/python:3.12-slim"}}
  - {{name: "ghcr.io/acme/mystery:1", layers: [something]}}
"""

POD = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: api, namespace: shop}}
spec:
  containers:
    - {{name: full, image: "ghcr.io/acme/full:1"}}
    - {{name: old, image: "ghcr.io/acme/old:1"}}
    - {{name: detected, image: "ghcr.io/acme/detected:1"}}
    - {{name: stale, image: "ghcr.io/acme/stale:1"}}
    - {{name: stale-by-hand, image: "ghcr.io/acme/stale-by-hand:1"}}
    - {{name: liar, image: "ghcr.io/acme/liar:1"}}
    - {{name: mystery, image: "ghcr.io/acme/mystery:1"}}
    - {{name: pinned-liar, image: "python:3.12-slim@{PY38}"}}
    - {{name: undescribed, image: "ghcr.io/acme/nowhere:1"}}
"""

#: container -> (verdict, rules): what each described image must give.
EXPECTED = {
    "full": ("deny", ["base-not-allowed"]),
    "old": ("deny", ["deprecated-base"]),
    "detected": ("allow", []),
    "stale": ("deny", ["stale-base"]),
    "stale-by-hand": ("deny", ["stale-base"]),
    "liar": ("deny", ["base-not-allowed", "lineage-mismatch"]),
    "mystery": ("deny", ["unknown-base"]),
    "pinned-liar": ("deny", ["deprecated-base", "tag-mismatch"]),
    "undescribed": ("deny", ["lookup-failed"]),
}


def results(expected: dict[str, tuple[str, list[str]]]) -> str:
    lines = ["results:"]
    for container, (verdict, rules) in expected.items():
        lines.append(
            f"  - {{resource: Pod/shop/api, container: {container}, verdict: {verdict}, "
            f"rules: [{', '.join(rules)}]}}"
        )
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "pod.yaml").write_text(POD)
    head = 'policies: [policy.yaml]\nresources: [pod.yaml]\nnow: "2026-11-23"\n'
    (tmp_path / "baseguard-test.yaml").write_text(head + textwrap.dedent(body))
    return tmp_path


def test_every_lineage_rule_fires_from_described_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, IMAGES + results(EXPECTED))
    code = main(["test", str(root)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert out.endswith("1 passed, 0 failed\n")


@pytest.mark.parametrize("container", list(EXPECTED))
def test_each_rule_is_really_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], container: str
) -> None:
    """Expecting an allow where the described image gives a finding fails, naming it (exit 1)."""
    verdict, rules = EXPECTED[container]
    wrong = {container: ("warn", ["unpinned"]) if not rules else ("allow", [])}
    root = write(tmp_path, IMAGES + results(wrong))
    code = main(["test", str(root)])
    out, _ = capsys.readouterr()
    assert code == 1, out
    assert f"expected {wrong[container][0]} {sorted(wrong[container][1])}, got {verdict} {sorted(rules)}" in out
    for rule in rules:
        assert f"       found {rule} [team] deny: " in out


def test_a_wrong_expectation_shows_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path, IMAGES + results({"old": ("warn", ["base-not-allowed"])}))
    assert main(["test", str(root)]) == 1
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[1] == (
        "     Pod/shop/api container old (ghcr.io/acme/old:1): expected warn ['base-not-allowed'], "
        "got deny ['deprecated-base']"
    )
    assert lines[2:5] == [
        "       verdict: expected warn, got deny",
        "       missing rules: base-not-allowed",
        "       unexpected rules: deprecated-base",
    ]
    assert lines[5].startswith(
        "       found deprecated-base [team] deny: image ghcr.io/acme/old:1 is built on "
        "docker.io/library/python:3.8-slim (deprecated: Python 3.8 is end of life)"
    )


def test_an_undescribed_image_is_a_lookup_failure_that_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, IMAGES + results({"undescribed": ("allow", [])}))
    assert main(["test", str(root)]) == 1
    out, _ = capsys.readouterr()
    assert "docker.io/ghcr.io" not in out
    assert "ghcr.io/acme/nowhere:1: not described in this test's images" in out


def test_described_images_give_the_same_answer_every_run(tmp_path: Path) -> None:
    from controller.cli.fixtures import DescribedRegistry
    from controller.documents import yaml_data

    images = yaml_data(IMAGES, source="x")["images"]
    one, two = DescribedRegistry.build(images), DescribedRegistry.build(images)
    assert one[1] == two[1] == []
    assert one[0]._tags == two[0]._tags


BAD_IMAGES = {
    "unknown-key": ("images:\n  - {name: 'python:3.12', layer: [a]}\n", "images[0].layer: unknown field (did you mean 'layers'?)"),
    "bad-from": ("images:\n  - {name: 'a:1', from: 'b:2'}\n", "images[0].from: 'b:2' is not a described image"),
    "bad-digest": ("images:\n  - {name: 'a:1', digest: 'sha256:abc'}\n", "images[0].digest: 'sha256:abc' is not a digest"),
    "bad-platform": ("images:\n  - {name: 'a:1', platforms: [linux]}\n", "images[0].platforms[0]: bad platform 'linux'"),
    "bad-created": ("images:\n  - {name: 'a:1', created: soon}\n", "images[0].created: 'soon' is not a date"),
    "layers-string": ("images:\n  - {name: 'a:1', layers: app}\n", "images[0].layers: expected a list, got a string"),
    "bad-name": ("images:\n  - {name: 'UPPER:1'}\n", "images[0].name: "),
    "shared-tag": (
        "images:\n  - {name: 'a:1', layers: [x]}\n  - {name: 'a:1', layers: [y]}\n",
        "images[1].tags: docker.io/library/a:1 already names another described image",
    ),
    "loop": (
        "images:\n  - {name: 'a:1', from: 'b:1'}\n  - {name: 'b:1', from: 'a:1'}\n",
        "from: the from images form a loop",
    ),
    "annotations-without-from": (
        "images:\n  - {name: 'a:1', baseAnnotations: true}\n",
        "images[0].baseAnnotations: needs from: (the base it names)",
    ),
    "online-with-images": (
        "offline: false\nimages:\n  - {name: 'a:1'}\n",
        "images: an online test (offline: false) asks the real registries",
    ),
}


@pytest.mark.parametrize(("images", "message"), list(BAD_IMAGES.values()), ids=list(BAD_IMAGES))
def test_a_malformed_image_description_is_exit_2_with_its_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], images: str, message: str
) -> None:
    root = write(tmp_path, images + results({"full": ("deny", ["base-not-allowed"])}))
    code = main(["test", str(root)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert message in out


def test_a_multi_platform_image_is_an_index_judged_per_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from controller.cli.fixtures import DescribedRegistry
    from controller.documents import yaml_data
    from controller.reference import parse
    from controller.registry.media import ImageIndex

    images = """\
        images:
          - {name: "python:3.12", platforms: [linux/amd64, linux/arm64], layers: [full]}
          - {name: "ghcr.io/acme/full:1", from: "python:3.12", baseAnnotations: true, layers: [app]}
        """
    root = write(tmp_path, textwrap.dedent(images) + results({"full": ("deny", ["base-not-allowed"])}))
    assert main(["test", str(root)]) == 0, capsys.readouterr().out
    registry, problems = DescribedRegistry.build(yaml_data(textwrap.dedent(images), source="x")["images"])
    assert problems == []
    top = asyncio.run(registry.fetch_manifest(parse("ghcr.io/acme/full:1"))).manifest
    assert isinstance(top, ImageIndex)
    assert sorted(str(d.platform) for d in top.manifests) == ["linux/amd64", "linux/arm64"]
    # The arm64 image's layers are not the amd64 image's: detection is per platform.
    configs = [
        asyncio.run(registry.fetch_config(parse("ghcr.io/acme/full:1"), asyncio.run(
            registry.fetch_manifest(parse("ghcr.io/acme/full:1"), d.digest)).manifest))  # type: ignore[arg-type]
        for d in top.manifests
    ]
    assert configs[0].diff_ids != configs[1].diff_ids


def test_an_online_test_asks_the_real_registry(
    registry: Any, unique_repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``offline: false``: the same test file, judged against a real registry's images."""
    from controller.registry.media import BASE_DIGEST, BASE_NAME
    from tests.support.images import layer

    os_layer, py_layer = layer({"etc/os-release": "ID=debian\n"}), layer({"usr/bin/python3.8": "3.8\n"})
    base = registry.push_image(f"{unique_repo}/python", "3.8-slim", [os_layer, py_layer])
    claim = {BASE_NAME: f"{registry.host}/{unique_repo}/python:3.8-slim", BASE_DIGEST: base.digest}
    registry.push_image(f"{unique_repo}/app", "1.0.0", [os_layer, py_layer, layer({"app": "x"})], annotations=claim)
    (tmp_path / "policy.yaml").write_text(
        "apiVersion: baseguard.io/v1alpha1\nkind: ClusterBaseImagePolicy\nmetadata: {name: team}\n"
        f"spec:\n  mode: Enforce\n  bases:\n    deprecated:\n"
        f'      - {{image: "{registry.host}/{unique_repo}/python", tags: ["3.8*"], reason: EOL}}\n'
    )
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop}\n"
        f'spec: {{containers: [{{name: app, image: "{registry.host}/{unique_repo}/app:1.0.0"}}]}}\n'
    )
    (tmp_path / "baseguard-test.yaml").write_text(
        'policies: [policy.yaml]\nresources: [pod.yaml]\nnow: "2026-11-23"\noffline: false\n'
        + results({"app": ("deny", ["deprecated-base"])})
    )
    config = tmp_path / "registries.yaml"
    config.write_text(f'registries:\n  - {{host: "{registry.host}", insecure: true}}\n')
    assert main(["test", str(tmp_path), "--registry-config", str(config)]) == 0, capsys.readouterr().out
    # Without the registry's settings the lookup fails (plain HTTP refused): the test says so.
    assert main(["test", str(tmp_path)]) == 1
    assert "lookup-failed" in capsys.readouterr().out
    assert main(["test", str(tmp_path), "--registry-config", str(config)]) == 0
    assert "not used" not in capsys.readouterr().err  # an online test used it


def test_registry_options_no_online_test_used_are_said_to_be_unused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, IMAGES + results({"full": ("deny", ["base-not-allowed"])}))
    assert main(["test", str(root), "--registry-config", str(root / "none.yaml")]) == 0
    assert capsys.readouterr().err == (
        "baseguard test: --registry-config not used: no test ran online (offline: false); "
        "the others answer from their described images, or make no lookups\n"
    )


def test_the_bundled_library_tests_lineage_rules_from_described_images(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The library's own tests prove what its lists do to images by their lineage."""
    from controller.documents import yaml_data

    root = Path(__file__).resolve().parents[2] / "policies"
    expected: dict[tuple[str, str], set[str]] = {}
    for path in root.rglob("baseguard-test.yaml"):
        data = yaml_data(path.read_text(), source=str(path))
        if "images" in data:
            for item in data["results"]:
                expected[(path.parent.name, item.get("container", ""))] = set(item.get("rules", ()))
    assert expected[("slim-and-distroless", "python-full")] == {"base-not-allowed"}
    assert expected[("slim-and-distroless", "on-python-full")] == {"base-not-allowed"}
    assert expected[("slim-and-distroless", "unknown")] == {"unknown-base"}
    assert expected[("python-lineage", "app")] == {"deprecated-base"}
    assert expected[("python-lineage", "cron")] == {"deprecated-base", "tag-mismatch"}
    assert main(["test", str(root / "allowlists"), str(root / "eol" / "tests" / "python-lineage")]) == 0
    assert capsys.readouterr().out.endswith("2 passed, 0 failed\n")


def test_the_docs_describe_every_image_key_and_their_example_builds() -> None:
    from controller.cli.fixtures import IMAGE_SCHEMA, DescribedRegistry
    from controller.documents import yaml_data

    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy-tests.md").read_text()
    section = docs.split("## Described images", 1)[1]
    for key in IMAGE_SCHEMA["properties"]:
        assert f"| `{key}` |" in section, key
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    registry, problems = DescribedRegistry.build(yaml_data(example, source="docs")["images"])
    assert problems == []
    assert registry.history().known("docker.io/library/python", "sha256:" + "1" * 64) is not None


def test_a_described_created_date_makes_an_old_base_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``created`` is the config's date: ``maxBaseAge`` judges it against the test's ``now``."""
    aged = POLICY.replace("staleBase: Deny\n", "staleBase: Deny\n    maxBaseAge: 180d\n")
    images = """\
        images:
          - {name: "python:3.12-slim", layers: [slim], created: "2026-01-02"}
          - {name: "ghcr.io/acme/detected:1", from: "python:3.12-slim", baseAnnotations: true, layers: [app]}
        """
    root = write(tmp_path, textwrap.dedent(images) + results({"detected": ("deny", ["stale-base"])}))
    (root / "policy.yaml").write_text(aged)
    assert main(["test", str(root)]) == 0, capsys.readouterr().out
    (root / "baseguard-test.yaml").write_text(
        (root / "baseguard-test.yaml").read_text().replace('"2026-01-02"', '"2026-10-01"')
    )
    assert main(["test", str(root)]) == 1
    assert "got allow []" in capsys.readouterr().out


def test_the_docs_example_gives_what_its_comments_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy-tests.md").read_text()
    example = docs.split("## Described images", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop}\nspec:\n  containers:\n"
        + "".join(
            f'    - {{name: {n}, image: "ghcr.io/acme/{n}:{v}"}}\n'
            for n, v in [("api", "2.0"), ("worker", "2.0"), ("batch", "2.0"), ("liar", "1.0"), ("mystery", "1.0")]
        )
        + f'    - {{name: pinned, image: "python:3.12-slim@sha256:{"38" * 32}"}}\n'
    )
    root = write(
        tmp_path,
        example
        + results(
            {
                "api": ("allow", []),
                "worker": ("deny", ["stale-base"]),
                "batch": ("deny", ["stale-base"]),
                "liar": ("deny", ["base-not-allowed", "lineage-mismatch"]),
                "mystery": ("deny", ["unknown-base"]),
                "pinned": ("deny", ["deprecated-base", "tag-mismatch"]),
            }
        ),
    )
    (root / "pod.yaml").write_text(pod)
    code = main(["test", str(root)])
    assert code == 0, capsys.readouterr().out


def test_junit_gives_the_difference_first_line_as_message_and_all_of_it_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    root = write(tmp_path, IMAGES + results({"old": ("warn", ["base-not-allowed"])}))
    assert main(["test", str(root), "--format", "junit"]) == 1
    failure = ET.fromstring(capsys.readouterr().out).find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == (
        "Pod/shop/api container old (ghcr.io/acme/old:1): expected warn ['base-not-allowed'], "
        "got deny ['deprecated-base']"
    )
    assert "  missing rules: base-not-allowed\n  unexpected rules: deprecated-base\n" in (failure.text or "")
