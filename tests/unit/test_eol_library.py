"""The end-of-life library turned into Enforce copies (``generate.py --mode Enforce``, the
chart's ``policies.mode=Enforce``) must not deny every image while the registry cannot
be read, nor judge images whose base is unknown: a deny-list judges what it can establish.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from controller.lineage.model import Lineage
from controller.policy import evaluate as ev
from controller.policy.compile import compile_policy
from controller.policy.facts import ImageFacts, ObjectFacts
from controller.policy.model import Action, CompiledPolicy, RuleCode
from controller.reference import parse

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
PROD = ObjectFacts(kind="Pod", name="api", namespace="shop")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eol_generate", ROOT / "policies" / "eol" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["eol_generate"] = module
    spec.loader.exec_module(module)
    return module


def enforce_copies() -> list[CompiledPolicy]:
    files = generator().generate(mode="Enforce")
    return [compile_policy(yaml.safe_load(text)) for text in files.values()]


def chart_enforce_copies() -> list[CompiledPolicy]:
    """What the chart installs with policies.mode=Enforce: the shipped files, mode forced."""
    out = []
    for path in sorted((ROOT / "charts" / "baseguard" / "policies" / "eol").glob("eol-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["spec"]["mode"] = "Enforce"
        out.append(compile_policy(doc))
    return out


def unreadable(image: str) -> ImageFacts:
    ref = parse(image)
    lineage = Lineage(reference=ref, digest=None, platforms=(), failure="connection refused")
    return ImageFacts(image=image, container="app", reference=ref, lineage=lineage)


@pytest.mark.parametrize("copies", [enforce_copies, chart_enforce_copies], ids=["generate-enforce", "chart-enforce"])
def test_an_enforce_copy_warns_when_the_registry_cannot_be_read(copies: object) -> None:
    policies = copies()  # type: ignore[operator]
    assert len(policies) == 6 and all(p.mode.value == "Enforce" for p in policies)
    [result] = ev.evaluate(policies, PROD, [unreadable("registry.corp.example/shop/api:1.0.0")], now=NOW)
    assert result.verdict is Action.WARN
    assert {v.rule for v in result.violations} == {RuleCode.LOOKUP_FAILED}
    assert all("(lineage.onLookupFailure: Warn)" in v.message for v in result.violations)


def test_an_enforce_copy_still_denies_an_end_of_life_image_it_can_see() -> None:
    [result] = ev.evaluate(enforce_copies(), PROD, [unreadable("python:3.8-slim")], now=NOW)
    assert result.verdict is Action.DENY
    assert {v.rule for v in result.violations if v.action is Action.DENY} == {RuleCode.DEPRECATED_BASE}


def test_no_eol_policy_judges_an_unknown_base() -> None:
    for policy in enforce_copies():
        assert policy.lineage.on_unknown_base.value == "Allow", policy.name
