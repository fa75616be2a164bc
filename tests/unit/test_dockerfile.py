"""Dockerfile FROM lines: ARG substitution, stage aliases, scratch, roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dockerfile import FromLine, dockerfile_workload, parse_dockerfile
from controller.errors import InputError
from controller.roles import ImageRole

DATA = Path(__file__).resolve().parent.parent / "data" / "dockerfiles"
BASE, BUILD = ImageRole.BASE, ImageRole.BUILD


def froms(
    text: str, *, build_args: dict[str, str] | None = None, target: str | None = None
) -> list[tuple[str, ImageRole, int | None]]:
    """(image, role, stage_ref) per FROM: what the cases below compare."""
    lines = parse_dockerfile(text, build_args=build_args, target=target)
    return [(f.image, f.role, f.stage_ref) for f in lines]


CASES = [
    ("single", "FROM python:3.12-slim\n", {}, [("python:3.12-slim", BASE, None)]),
    (
        "builder-copied-from-is-build-only",
        "FROM golang:1.22 AS build\nRUN go build\nFROM alpine:3.20\nCOPY --from=build /app /app\n",
        {},
        [("golang:1.22", BUILD, None), ("alpine:3.20", BASE, None)],
    ),
    (
        "alias-chain-makes-every-link-a-base",
        "FROM debian:12 AS os\nFROM os AS deps\nFROM node:20 AS unrelated\nFROM deps\n",
        {},
        [("debian:12", BASE, None), ("os", BASE, 0), ("node:20", BUILD, None), ("deps", BASE, 1)],
    ),
    (
        "alias-matched-case-insensitively",
        "FROM alpine:3.20 AS Builder\nFROM BUILDER\n",
        {},
        [("alpine:3.20", BASE, None), ("BUILDER", BASE, 0)],
    ),
    (
        "alias-only-refers-backwards",
        "FROM app AS base\nFROM alpine AS app\n",
        {},
        [("app", BUILD, None), ("alpine", BASE, None)],
    ),
    (
        "a-stage-named-like-its-image-is-still-the-image",
        "FROM nginx AS nginx\n",
        {},
        [("nginx", BASE, None)],
    ),
    (
        "tagged-name-is-not-an-alias",
        "FROM alpine AS base\nFROM base:1.0\n",
        {},
        [("alpine", BUILD, None), ("base:1.0", BASE, None)],
    ),
    (
        "global-arg-before-from",
        "ARG PY=3.12\nFROM python:${PY}-slim\n",
        {},
        [("python:3.12-slim", BASE, None)],
    ),
    (
        "dollar-without-braces",
        "ARG TAG=3.20\nFROM alpine:$TAG\n",
        {},
        [("alpine:3.20", BASE, None)],
    ),
    (
        "build-arg-overrides-default",
        "ARG PY=3.12\nFROM python:${PY}-slim\n",
        {"build_args": {"PY": "3.13"}},
        [("python:3.13-slim", BASE, None)],
    ),
    (
        "undeclared-build-arg-is-invisible",
        "FROM python:${PY:-3.11}\n",
        {"build_args": {"PY": "3.13"}},
        [("python:3.11", BASE, None)],
    ),
    (
        "automatic-platform-arg-from-build-args",
        "FROM golang:1.22-${TARGETARCH}\n",
        {"build_args": {"TARGETARCH": "arm64"}},
        [("golang:1.22-arm64", BASE, None)],
    ),
    (
        "default-when-unset",
        "ARG REGISTRY\nFROM ${REGISTRY:-docker.io}/library/alpine:3.20\n",
        {},
        [("docker.io/library/alpine:3.20", BASE, None)],
    ),
    (
        "colon-dash-default-when-empty",
        "ARG REGISTRY=\nFROM ${REGISTRY:-ghcr.io}/acme/app:1\n",
        {},
        [("ghcr.io/acme/app:1", BASE, None)],
    ),
    (
        "dash-default-only-when-unset",
        'ARG SUFFIX=""\nFROM alpine:3.20${SUFFIX-oops}\n',
        {},
        [("alpine:3.20", BASE, None)],
    ),
    (
        "plus-alternative",
        "ARG SLIM=1\nFROM python:3.12${SLIM:+-slim}\n",
        {},
        [("python:3.12-slim", BASE, None)],
    ),
    (
        "nested-default",
        "ARG V=3.20\nFROM alpine:${TAG:-${V}}\n",
        {},
        [("alpine:3.20", BASE, None)],
    ),
    (
        "arg-defaults-use-earlier-args-and-quotes",
        'ARG PY=3.12\nARG BASE="python:${PY}-slim" OTHER=x\nFROM $BASE\n',
        {},
        [("python:3.12-slim", BASE, None)],
    ),
    (
        "args-inside-a-stage-do-not-reach-later-froms",
        "FROM alpine:3.20 AS a\nARG TAG=9\nFROM alpine:${TAG:-3.19}\n",
        {},
        [("alpine:3.20", BUILD, None), ("alpine:3.19", BASE, None)],
    ),
    (
        "alias-through-an-arg",
        "ARG STAGE=build\nFROM alpine AS build\nFROM ${STAGE}\n",
        {},
        [("alpine", BASE, None), ("build", BASE, 0)],
    ),
    (
        "platform-flag-ignored",
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS b\nFROM --platform=linux/amd64 alpine\n",
        {},
        [("golang:1.22", BUILD, None), ("alpine", BASE, None)],
    ),
    (
        "lowercase-instructions",
        "arg V=3.20\nfrom alpine:${V} as build\nfrom build\n",
        {},
        [("alpine:3.20", BASE, None), ("build", BASE, 0)],
    ),
    (
        "comments-and-continuations",
        "# FROM commented:out\nFROM \\\n  # a comment inside the instruction\n  python:3.12 \\\n  AS app\n",
        {},
        [("python:3.12", BASE, None)],
    ),
    (
        "heredoc-body-is-not-an-instruction",
        "FROM python:3.12\nCOPY <<EOF /app/main.py\nfrom flask import Flask\nFROM evil:1\nEOF\nRUN <<-SH\n\tfrom x\n\tSH\n",
        {},
        [("python:3.12", BASE, None)],
    ),
    (
        "target-picks-the-final-stage",
        "FROM golang:1.22 AS build\nFROM build AS test\nFROM alpine AS release\n",
        {"target": "TEST"},
        [("golang:1.22", BASE, None), ("build", BASE, 0), ("alpine", BUILD, None)],
    ),
    (
        "digest-pinned",
        "FROM python:3.12-slim@sha256:" + "a" * 64 + "\n",
        {},
        [("python:3.12-slim@sha256:" + "a" * 64, BASE, None)],
    ),
]


@pytest.mark.parametrize(("text", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_from_lines(text: str, kwargs: dict[str, Any], expected: list[tuple[str, ImageRole, int | None]]) -> None:
    assert froms(text, **kwargs) == expected


@pytest.mark.parametrize(
    ("text", "image", "unresolved"),
    [
        ("ARG BASE\nFROM ${BASE}\n", "${BASE}", ("BASE",)),
        ("FROM python:${PY}-slim\n", "python:${PY}-slim", ("PY",)),
        ("FROM $BASE\n", "$BASE", ("BASE",)),
        ("ARG PY\nARG BASE=python:${PY}\nFROM ${BASE}\n", "${BASE}", ("BASE",)),
        ("FROM ${BASE:?required}\n", "${BASE:?required}", ("BASE",)),
        ("FROM alpine:${V:0:2}\n", "alpine:${V:0:2}", ("V",)),
        ("FROM alpine:${}\n", "alpine:${}", ("alpine:${}",)),
        ("FROM alpine:${V:-3\n", "alpine:${V:-3", ("V",)),
        ("FROM alpine:${V\n", "alpine:${V", ("V",)),
    ],
    ids=["no-default", "in-a-tag", "unbraced", "through-another-arg", "required", "substring", "empty-name", "unclosed-default", "unclosed"],
)
def test_unresolvable_variables_leave_the_literal_text(text: str, image: str, unresolved: tuple[str, ...]) -> None:
    [line] = parse_dockerfile(text)
    assert (line.image, line.unresolved, line.stage_ref, line.is_external) == (image, unresolved, None, True)


def test_a_build_arg_resolves_what_the_default_could_not() -> None:
    [line] = parse_dockerfile("ARG BASE\nFROM ${BASE}\n", build_args={"BASE": "alpine:3.20"})
    assert (line.image, line.unresolved) == ("alpine:3.20", ())


def test_an_unused_default_does_not_count_as_unresolved() -> None:
    [line] = parse_dockerfile("ARG V=3.20\nFROM alpine:${V:-${NOPE}}\n")
    assert (line.image, line.unresolved) == ("alpine:3.20", ())


def test_scratch_is_understood_and_never_an_image() -> None:
    lines = parse_dockerfile((DATA / "scratch.Dockerfile").read_text())
    assert lines == [
        FromLine(0, "build", "rust:1.79-alpine", 1, BUILD),
        FromLine(1, None, "scratch", 3, BASE, is_scratch=True),
    ]
    workload = dockerfile_workload((DATA / "scratch.Dockerfile").read_text(), source="scratch.Dockerfile")
    assert [(i.container, i.image, i.role) for i in workload.images] == [("build", "rust:1.79-alpine", BUILD)]


def test_the_multistage_fixture_as_a_workload() -> None:
    source = "svc/Dockerfile.multistage"
    workload = dockerfile_workload((DATA / "Dockerfile.multistage").read_text(), source=source)
    assert (workload.kind, workload.name, workload.namespace, workload.source) == (
        "Dockerfile",
        source,
        None,
        source,
    )
    assert [(i.container, i.image, i.path, i.section, i.role) for i in workload.images] == [
        ("builder", "golang:1.22.4-bookworm", "line:6", "FROM", BUILD),
        ("runtime-base", "gcr.io/distroless/static-debian12:nonroot", "line:13", "FROM", BASE),
    ]


def test_the_python_fixture_follows_aliases_and_ignores_the_heredoc() -> None:
    text = (DATA / "python.Dockerfile").read_text()
    assert [(f.stage_name, f.image, f.line, f.role, f.stage_ref) for f in parse_dockerfile(text)] == [
        ("base", "docker.io/library/python:3.12.3-slim", 4, BASE, None),
        ("deps", "base", 6, BASE, 0),
        (None, "deps", 9, BASE, 1),
    ]
    overridden = parse_dockerfile(text, build_args={"REGISTRY": "mirror.example.com", "PYTHON_VERSION": "3.13.0"})
    assert overridden[0].image == "mirror.example.com/library/python:3.13.0-slim"


def test_an_unresolved_base_is_refused_naming_the_variable_and_the_build_arg() -> None:
    """``docker build`` refuses it too; reporting ``invalid-reference '${BASE}'`` blamed the
    user's syntax for what is a missing value."""
    text = (DATA / "Dockerfile.unresolved").read_text()
    with pytest.raises(InputError) as caught:
        dockerfile_workload(text, source="Dockerfile.unresolved")
    assert caught.value.message == (
        "Dockerfile.unresolved: line 2: the base of FROM ${BASE} is unresolved: BASE has no value "
        "(an ARG without a default, or not declared before the first FROM); "
        "pass --build-arg BASE=VALUE, as to docker build"
    )
    workload = dockerfile_workload(text, source="Dockerfile.unresolved", build_args={"BASE": "python:3.12-slim"})
    assert [(i.image, i.path, i.role) for i in workload.images] == [("python:3.12-slim", "line:2", BASE)]


def test_windows_escape_directive() -> None:
    text = "# escape=`\nARG TAG=ltsc2022\nFROM mcr.microsoft.com/windows/servercore:`\n${TAG}\n"
    assert froms(text) == [("mcr.microsoft.com/windows/servercore:ltsc2022", BASE, None)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FROM instruction"),
        ("# just a comment\nRUN echo hi\n", "no FROM instruction"),
        ("FROM\n", "line 1: FROM takes an image"),
        ("ARG A=1\nFROM alpine AS\n", "line 2: FROM takes an image and an optional 'AS name', got 'alpine AS'"),
        ("FROM alpine extra words here\n", "line 1: FROM takes an image"),
        ("ARG E=\nFROM ${E}\n", "line 2: FROM names no image"),
        ("FROM alpine AS a\nFROM debian AS A\n", "line 2: duplicate stage name 'A'"),
    ],
    ids=["empty", "no-from", "bare-from", "dangling-as", "extra-words", "expands-to-nothing", "duplicate-stage"],
)
def test_what_docker_build_refuses_is_an_input_error(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_dockerfile(text)
    assert message in str(caught.value)


def test_workload_errors_name_the_file() -> None:
    with pytest.raises(InputError, match=r"^app/Dockerfile: line 1: FROM takes"):
        dockerfile_workload("FROM\n", source="app/Dockerfile")


def test_unknown_target_is_an_input_error() -> None:
    with pytest.raises(InputError, match="target stage 'nope' is not defined"):
        parse_dockerfile("FROM alpine AS a\n", target="nope")


_PIECES = [*"FROMARGfromarg ${}:-+?=\"'\\\n\t#abc123_.", "FROM ", "ARG ", "${", " AS ", "scratch", "<<EOF\n", "\nEOF\n"]


@settings(max_examples=100, deadline=None)
@given(
    text=st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
    build_args=st.dictionaries(st.sampled_from(["A", "abc", "TARGETARCH"]), st.text(max_size=5)),
)
def test_any_text_parses_or_is_an_input_error(text: str, build_args: dict[str, str]) -> None:
    try:
        lines = parse_dockerfile(text, build_args=build_args)
    except InputError:
        return
    assert lines
    assert all(f.image for f in lines)
    assert lines[-1].role is BASE
