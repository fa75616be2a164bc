"""docs/ cannot drift: generated parts are current, links resolve, and every name the
prose relies on (a values key, a test, a field) exists.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from support.chart import CHART, ROOT

from controller.policy.compile import check_policy
from controller.policy.schema import openapi_schema

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = load_script("gen_docs")


def test_generated_docs_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--check"]) == 0, capsys.readouterr().err


def test_every_schema_field_has_a_description() -> None:
    assert gen.missing_descriptions(openapi_schema()) == []


def test_a_field_without_description_is_refused() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "description": "d", "properties": {"mode": {"type": "string"}}}}}
    assert gen.missing_descriptions(schema) == ["spec.mode"]


def test_policy_reference_covers_every_field() -> None:
    text = (DOCS / "policy-reference.md").read_text()
    for path, node, _ in gen.object_sections(openapi_schema(), ""):
        for name in node.get("properties", {}):
            if path or name not in gen.STANDARD_FIELDS:
                assert re.search(rf"\| \[?`{re.escape(name)}`", text), f"{path}.{name}"
        if path:
            assert f"### {path}\n" in text


def test_the_reference_example_is_a_valid_policy_using_every_section() -> None:
    doc = yaml.safe_load(gen.EXAMPLE)
    assert check_policy(doc) == []
    assert set(doc["spec"]) == set(openapi_schema()["properties"]["spec"]["properties"])


def test_a_command_without_a_block_in_cli_md_is_refused() -> None:
    text = (DOCS / "cli.md").read_text().replace("<!-- BEGIN GENERATED: cli lineage -->", "")
    with pytest.raises(SystemExit, match="lineage"):
        gen.cli_reference(text)


def test_cli_md_covers_the_commands_of_spec_section_8() -> None:
    text = (DOCS / "cli.md").read_text()
    for command in ("check", "lineage", "policy validate", "policy crds", "test", "serve", "run", "audit"):
        assert f"## `baseguard {command}`" in text
        assert f"<!-- BEGIN GENERATED: cli {command} -->" in text
    assert "not in this build yet" not in text, "regenerate: python scripts/gen_docs.py"


# --- links and names -------------------------------------------------------------------


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


LINK = re.compile(r"\]\((?!https?://)([^)#\s]*)(?:#([^)\s]+))?\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text()
    for target, anchor in LINK.findall(text):
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text()), f"{page.name}: {target}#{anchor}"


VALUES_KEYS = re.compile(
    r"`((?:webhook|certificates|registryCredentials|registryConfig|audit|policies|metrics|"
    r"networkPolicy|image|podDisruptionBudget|leaderElection|serviceAccount|sharedCache)(?:\.[A-Za-z]+)+)"
    r"(?:=[^`]*)?`"
)


def resolve(values: Any, dotted: str) -> bool:
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("page", ["install.md", "rollout.md", "threat-model.md", "shared-cache.md"])
def test_values_keys_named_in_the_docs_exist(page: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    named = VALUES_KEYS.findall((DOCS / page).read_text())
    assert named, "the page should name chart values"
    assert [key for key in named if not resolve(values, key)] == []


def test_tests_named_in_the_threat_model_exist() -> None:
    named = set(re.findall(r"`(test_\w+)`", (DOCS / "threat-model.md").read_text()))
    assert len(named) > 10
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    assert sorted(named - defined) == []


def test_test_files_named_in_the_docs_exist() -> None:
    for page in PAGES:
        for path in re.findall(r"`(tests/[\w/]+\.py)`", page.read_text()):
            assert (ROOT / path).exists(), f"{page.name}: {path}"


# --- metric names --------------------------------------------------------------------

METRIC = re.compile(r"\bbaseguard_[a-z_]*[a-z]\b\*?")


def exposed_metric_names() -> set[str]:
    """Every family name ``/metrics`` exposes, with each counter and gauge given a sample
    (a family with no sample is not written), as Prometheus users query them (``_total``)."""
    from prometheus_client import generate_latest

    from controller.policy.store import PolicyStore
    from controller.registry.client import RegistryClient
    from controller.registry.config import RegistryConfig
    from controller.webhook.metrics import Metrics

    store = PolicyStore()
    client = RegistryClient(RegistryConfig())
    stats = client.stats
    stats.rate_limited["r.example"] = stats.held_off["r.example"] = 1
    stats.by_kind[("GET", "manifest")] = 1
    metrics = Metrics(snapshot=lambda: store.snapshot, registry_stats=lambda: stats)
    metrics.answered("validate", "Pod", "allow", 0.01)
    metrics.refused("validate")
    metrics.connection_closed("slow-headers")
    metrics.violated("p", "unpinned", "deny")
    metrics.patched("pin")
    from controller.sharedcache.stats import SharedCacheCollector, SharedCacheStats

    metrics.registry.register(SharedCacheCollector(SharedCacheStats(), lambda: False))  # as serve does
    names = set()
    for line in generate_latest(metrics.registry).decode().splitlines():
        name = line.split("{")[0].split()[0] if line.startswith("baseguard_") else ""
        if name and not name.endswith("_created"):  # prometheus_client's creation-time series
            names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names


def test_every_metric_the_docs_name_is_one_metrics_exposes() -> None:
    """Names as a dashboard queries them: counters end in ``_total``; ``baseguard_registry_*``
    stands for a family prefix."""
    exposed = exposed_metric_names()
    assert "baseguard_admission_requests_total" in exposed  # the scrape is real
    wrong = set()
    for page in [*PAGES, ROOT / "README.md", *sorted((CHART / "templates").glob("*"))]:
        for name in METRIC.findall(page.read_text()):
            if name.endswith("*"):
                ok = any(e.startswith(name[:-1]) for e in exposed)
            else:
                ok = name in exposed or not name.startswith(("baseguard_admission", "baseguard_registry",
                                                              "baseguard_polic", "baseguard_connections",
                                                              "baseguard_shared_cache"))
            if not ok:
                wrong.add(f"{page.relative_to(ROOT)}: {name}")
    assert not wrong, sorted(wrong)
