"""Help that helps (every argument explained, every command pointing to its docs), and the
``lineage`` tree saying each digest once."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.main import build_parser, main
from controller.cli.output import write_lineage_text
from controller.lineage.model import End, Level, Lineage, PlatformLineage, Source
from controller.reference import parse

ROOT = Path(__file__).resolve().parents[2]
INDEX = "sha256:" + "1" * 64
AMD = "sha256:" + "a" * 64
BASE = "sha256:" + "b" * 64


def parsers(parser: argparse.ArgumentParser, prefix: str = "baseguard") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{prefix} {name}")


def test_every_argument_has_help_and_every_command_points_to_its_docs() -> None:
    for name, parser in parsers(build_parser()):
        assert parser.epilog and "Documentation: " in parser.epilog, name
        page = parser.epilog.split("Documentation: ", 1)[1].split()[0]
        if page.startswith("docs/") and page.endswith(".md"):
            assert (ROOT / page).is_file(), (name, page)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"


def test_lineage_max_depth_is_capped_as_in_a_policy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["lineage", "python:3.12-slim", "--max-depth", "50"])
    assert caught.value.code == 2
    assert "argument --max-depth: 50 is out of range: 0..10 (a policy's lineage.maxDepth has the same cap)" in capsys.readouterr().err


def test_the_lineage_tree_says_each_digest_once() -> None:
    base_ref = parse(f"docker.io/library/python:3.12-slim@{BASE}")
    lineage = Lineage(
        reference=parse("registry.example/shop/api:1.4.2"),
        digest=INDEX,
        platforms=(
            PlatformLineage(
                "linux/amd64",
                (
                    Level(parse("registry.example/shop/api:1.4.2"), AMD, Source.IMAGE, None),
                    Level(base_ref, BASE, Source.ANNOTATION, True),
                ),
                End.UNCLAIMED,
            ),
        ),
    )
    out = io.StringIO()
    write_lineage_text(lineage, out)
    text = out.getvalue()
    assert text.splitlines()[:4] == [
        f"registry.example/shop/api:1.4.2  ({INDEX})",
        "  linux/amd64",
        "    registry.example/shop/api:1.4.2  [image] sha256:aaaaaaaaaaaa…",
        "       └─ docker.io/library/python:3.12-slim  [annotation, verified] sha256:bbbbbbbbbbbb…",
    ]
    for digest in (INDEX, AMD, BASE):
        assert text.count(digest[:19]) == 1, digest
