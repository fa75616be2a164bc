"""``baseguard test``: policy tests a platform team writes beside its policies.

A test is a ``baseguard-test.yaml`` file (found recursively under each DIR)::

    name: python-eol
    policies: [../../eol-python.yaml]        # relative to this file
    resources: [deployment.yaml, Dockerfile]  # manifests and Dockerfiles
    now: "2026-11-23"                         # the clock for enforceAfter and exceptions
    offline: true                             # default; false needs `registryConfig:`
    results:
      - resource: Deployment/shop/api         # Kind/namespace/name; Dockerfile/<relative path>
        container: app                        # stage name for a Dockerfile (omit if unnamed)
        image: python:3.8-slim                # optional, to tell images apart
        verdict: warn                         # deny | warn | audit | allow
        rules: [deprecated-base]              # exact set of (unwaived) rule codes

Every expected result must match exactly one image; a result the test does not
mention is not checked (so a test can focus on one container).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from controller.errors import BaseguardError, ExitCode, InputError

TEST_FILE = "baseguard-test.yaml"


@dataclass(frozen=True)
class Expectation:
    resource: str
    container: str | None
    image: str | None
    verdict: str
    rules: frozenset[str]


def find_test_files(dirs: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for d in dirs:
        root = Path(d)
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p for p in root.rglob(TEST_FILE) if p.is_file()))
        else:
            raise InputError(f"{d}: no such file or directory")
    return found


def _expectations(spec: dict[str, Any], path: Path) -> list[Expectation]:
    out = []
    for i, item in enumerate(spec.get("results") or []):
        if not isinstance(item, dict) or "resource" not in item or "verdict" not in item:
            raise InputError(f"{path}: results[{i}] needs 'resource' and 'verdict'")
        verdict = str(item["verdict"]).lower()
        if verdict not in ("deny", "warn", "audit", "allow"):
            raise InputError(f"{path}: results[{i}].verdict {verdict!r} is not deny|warn|audit|allow")
        out.append(
            Expectation(
                resource=str(item["resource"]),
                container=item.get("container"),
                image=item.get("image"),
                verdict=verdict,
                rules=frozenset(str(r) for r in item.get("rules") or []),
            )
        )
    return out


def _resource_id(workload: Any, base: Path) -> str:
    if workload.kind == "Dockerfile":
        return f"Dockerfile/{os.path.relpath(workload.source, base)}"
    return f"{workload.kind}/{workload.namespace or 'default'}/{workload.name}"


def run_one(path: Path) -> list[str]:
    """Run one test file; return the failures (empty when it passes)."""
    from controller.assess import Assessor
    from controller.cli.loaders import load_inputs
    from controller.policyfiles import load_policies
    from controller.reference import parse

    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise InputError(f"{path}: a test file is a mapping with policies, resources and results")
    base = path.parent
    policies = load_policies([str(base / p) for p in spec.get("policies") or []])
    loaded = load_inputs([str(base / r) for r in spec.get("resources") or []])
    now_text = spec.get("now")
    day = dt.date.fromisoformat(str(now_text)) if now_text else dt.date.today()
    now = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    if spec.get("offline", True) is not True:
        raise InputError(f"{path}: online tests are not supported yet; use offline: true")

    results = asyncio.run(
        Assessor(None).assess(loaded.workloads, policies, now=now, namespace_labels=loaded.namespaces)
    )
    failures = []
    for exp in _expectations(spec, path):
        wanted_image = parse(exp.image).normalized if exp.image else None
        matches = [
            r
            for wr in results
            if _resource_id(wr.workload, base) == exp.resource
            for r in wr.results
            if (exp.container is None or r.facts.container == exp.container)
            and (wanted_image is None or (r.facts.reference and r.facts.reference.normalized == wanted_image))
        ]
        label = f"{exp.resource}" + (f" container {exp.container}" if exp.container else "")
        if len(matches) != 1:
            failures.append(f"{label}: expected one image, found {len(matches)}")
            continue
        got = matches[0]
        rules = frozenset(v.rule.value for v in got.violations if not v.waived)
        if got.verdict.value != exp.verdict or rules != exp.rules:
            detail = "; ".join(f"{v.rule.value} [{v.policy}] {v.action.value}: {v.message}" for v in got.violations)
            failures.append(
                f"{label}: expected {exp.verdict} {sorted(exp.rules)}, got {got.verdict.value} "
                f"{sorted(rules)}" + (f" ({detail})" if detail else "")
            )
    return failures


def run_tests(dirs: Sequence[str], out: TextIO, *, colour: bool = False) -> int:
    files = find_test_files(dirs)
    if not files:
        raise InputError(f"no {TEST_FILE} found under {', '.join(dirs)}")
    failed = 0
    for path in files:
        try:
            failures = run_one(path)
        except BaseguardError as exc:
            failures = [f"error: {exc}"]
        mark = "PASS" if not failures else "FAIL"
        if colour:
            mark = f"\x1b[{'32' if not failures else '31'}m{mark}\x1b[0m"
        out.write(f"{mark} {path}\n")
        for f in failures:
            out.write(f"     {f}\n")
        failed += bool(failures)
    out.write(f"{len(files) - failed} passed, {failed} failed\n")
    return ExitCode.DENIED if failed else ExitCode.OK
