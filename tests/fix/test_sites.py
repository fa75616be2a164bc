"""Where ``fix`` finds image references, to the character: Dockerfiles, manifests, kustomizations.

Pure finders: each test edits every site it found and compares the whole file,
so an edit that touched anything but the reference shows up as a diff.
"""

from __future__ import annotations

import pytest

from controller.errors import InputError
from controller.fix.dockerfile import dockerfile_sites
from controller.fix.manifests import manifest_sites
from controller.fix.plan import Unresolved, edits_for
from controller.fix.sites import Edit, apply_edits, split_reference


def renamed(text: str, found_sites: list, new: dict[str, str]) -> str:  # type: ignore[type-arg]
    return apply_edits(text, [Edit(s.span[0], s.span[1], new[s.image]) for s in found_sites])


DOCKERFILE = (
    "# syntax=docker/dockerfile:1.7\r\n"
    "# escape=\\\r\n"
    "ARG BASE=python:3.8-slim\r\n"
    "ARG TOOLS=\"golang:1.22\"\r\n"
    "# the builder\r\n"
    "from --platform=$BUILDPLATFORM ${TOOLS} AS Build\r\n"
    "RUN <<EOF\r\n"
    "FROM not-an-instruction:1\r\n"
    "EOF\r\n"
    "FROM build AS again\r\n"
    "FROM scratch AS empty\r\n"
    "From \\\r\n"
    "  # a comment inside a continuation\r\n"
    "  ${BASE} \\\r\n"
    "  as final\r\n"
    "FROM $BASE AS twice\r\n"
    "COPY --from=Build /out /out\r\n"
)


def test_a_dockerfile_edits_only_references_and_arg_defaults() -> None:
    found = dockerfile_sites(DOCKERFILE, "Dockerfile")
    assert [(s.image, s.where) for s in found.sites] == [
        ("golang:1.22", "ARG TOOLS (line 4, the FROM of line 6)"),
        ("python:3.8-slim", "ARG BASE (line 3, the FROM of line 12)"),  # once, for two FROMs
    ]
    out = renamed(DOCKERFILE, found.sites, {"golang:1.22": "golang:1.23", "python:3.8-slim": "python:3.13-slim"})
    assert out == DOCKERFILE.replace('"golang:1.22"', '"golang:1.23"').replace(
        "BASE=python:3.8-slim", "BASE=python:3.13-slim"
    )
    assert out.count("\r\n") == DOCKERFILE.count("\r\n")


def test_a_literal_from_is_edited_in_place_keeping_platform_alias_and_case() -> None:
    text = "# syntax=docker/dockerfile:1\nfrom --platform=linux/arm64 python:3.12-slim as base\nFROM base\n"
    found = dockerfile_sites(text, "Dockerfile")
    assert [(s.image, s.line) for s in found.sites] == [("python:3.12-slim", 2)]
    assert renamed(text, found.sites, {"python:3.12-slim": "python:3.12-slim@sha256:" + "a" * 64}) == (
        "# syntax=docker/dockerfile:1\nfrom --platform=linux/arm64 python:3.12-slim@sha256:"
        + "a" * 64
        + " as base\nFROM base\n"
    )


def test_a_from_mixing_text_and_variables_is_reported_not_edited() -> None:
    found = dockerfile_sites("ARG PY=3.12\nFROM python:${PY}-slim\n", "Dockerfile")
    assert found.sites == []
    assert found.notes == [
        "Dockerfile:2: FROM python:${PY}-slim is built from variables with no literal ARG default "
        "to edit; not edited"
    ]


def test_a_dockerfile_docker_refuses_is_bad_input() -> None:
    with pytest.raises(InputError, match="no FROM instruction"):
        dockerfile_sites("RUN true\n", "Dockerfile")


MANIFESTS = """\
# the shop, two documents
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      initContainers:
        - {name: init, image: "busybox:1.36"}
      containers:
        - name: web
          image: nginx:1.25   # the front end
      ephemeralContainers:
        - name: debug
          image: 'alpine:3.19'
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: redis:7.2
---
kind: ConfigMap
metadata: {name: not-a-workload}
data: {image: "nginx:1.25"}
"""


def test_every_workload_kind_and_container_list_across_documents() -> None:
    found = manifest_sites(MANIFESTS, "app.yaml")
    assert [(s.where, s.line, s.namespace) for s in found.sites] == [
        ("Deployment/web containers web", 12, "shop"),
        ("Deployment/web initContainers init", 9, "shop"),
        ("Deployment/web ephemeralContainers debug", 15, "shop"),
        ("CronJob/nightly containers job", 28, "default"),
    ]
    pin = "@sha256:" + "b" * 64
    out = renamed(MANIFESTS, found.sites, {s.image: s.image + pin for s in found.sites})
    expected = (
        MANIFESTS.replace('image: "busybox:1.36"', f'image: "busybox:1.36{pin}"')
        .replace("image: nginx:1.25   #", f"image: nginx:1.25{pin}   #")
        .replace("image: 'alpine:3.19'", f"image: 'alpine:3.19{pin}'")
        .replace("image: redis:7.2\n", f"image: redis:7.2{pin}\n")
    )
    assert out == expected
    assert 'data: {image: "nginx:1.25"}' in out  # not a workload: not touched


def test_crlf_manifests_keep_their_line_endings() -> None:
    text = MANIFESTS.replace("\n", "\r\n")
    found = manifest_sites(text, "app.yaml")
    out = renamed(text, found.sites, {s.image: "x.example/y:1" for s in found.sites})
    assert out.count("\r\n") == text.count("\r\n") and "\n" not in out.replace("\r\n", "")


def test_yaml_that_does_not_parse_is_bad_input() -> None:
    with pytest.raises(InputError, match=r"app\.yaml: document 1: invalid YAML at line 2"):
        manifest_sites("a: [\n", "app.yaml")


KUSTOMIZATION = """\
resources: [app.yaml]
images:
  - name: nginx
    newTag: "1.25"   # keep
  - name: redis
    newName: registry.example/mirror/redis
    newTag: 7.2
    digest: sha256:%s
  - {name: busybox, newTag: "1.36"}
""" % ("c" * 64)


def test_kustomize_images_set_fields_in_place_or_add_them_under_the_entry() -> None:
    found = manifest_sites(KUSTOMIZATION, "kustomization.yaml")
    assert [s.image for s in found.sites] == [
        "nginx:1.25",
        f"registry.example/mirror/redis:7.2@sha256:{'c' * 64}",
        "busybox:1.36",
    ]
    nginx, redis, busybox = found.sites
    d = "sha256:" + "d" * 64
    edits = [*edits_for(nginx, "nginx", "1.27", d), *edits_for(redis, *split_reference(redis.image)[:2], d)]
    assert apply_edits(KUSTOMIZATION, edits) == KUSTOMIZATION.replace(
        '    newTag: "1.25"   # keep\n', f'    newTag: "1.27"   # keep\n    digest: {d}\n'
    ).replace("c" * 64, "d" * 64)
    with pytest.raises(Unresolved, match="flow-style entry"):
        edits_for(busybox, "busybox", "1.36", d)


def test_copy_from_an_image_is_a_site_and_from_a_stage_is_not() -> None:
    text = "FROM python:3.12 AS b\nCOPY --from=b /a /a\ncopy --chown=1 --from=busybox:1.36 /bin/sh /sh\n"
    found = dockerfile_sites(text, "Dockerfile")
    assert [(s.image, s.where) for s in found.sites] == [
        ("python:3.12", "FROM (line 1)"),
        ("busybox:1.36", "COPY --from (line 3)"),
    ]
    assert renamed(text, found.sites, {"python:3.12": "python:3.13", "busybox:1.36": "busybox:1.37"}) == (
        "FROM python:3.12 AS b\nCOPY --from=b /a /a\ncopy --chown=1 --from=busybox:1.37 /bin/sh /sh\n".replace(
            "python:3.12", "python:3.13"
        )
    )


def test_a_kustomization_ending_without_a_newline_still_ends_without_one() -> None:
    text = "images:\r\n- name: nginx\r\n  newTag: '1.25'"
    (site,) = manifest_sites(text, "kustomization.yaml").sites
    d = "sha256:" + "e" * 64
    assert apply_edits(text, edits_for(site, "nginx", "1.25", d)) == text + f"\r\n  digest: {d}"
