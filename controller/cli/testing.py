"""``baseguard test``: policy tests a platform team writes beside its policies.

A test is a ``baseguard-test.yaml`` file (found recursively under each DIR)::

    name: python-eol
    policies: [../../eol-python.yaml]        # relative to this file
    resources: [deployment.yaml, Dockerfile]  # manifests and Dockerfiles
    now: "2026-11-23"                         # the clock for enforceAfter and exceptions
    offline: true                             # the default, and the only mode today
    results:
      - resource: Deployment/shop/api         # Kind/namespace/name; Dockerfile/<relative path>
        container: app                        # stage name for a Dockerfile (omit if unnamed)
        image: python:3.8-slim                # optional, to tell images apart
        verdict: warn                         # deny | warn | audit | allow
        rules: [deprecated-base]              # exact set of (unwaived) rule codes

Every expected result must match exactly one image; a result the test does not
mention is not checked (so a test can focus on one container). The file is
validated first (:mod:`controller.cli.testfile`): a bad one is reported with
field paths and exit 2, and the other tests still run. A test with no results
fails: it asserts nothing. Documented for users in ``docs/policy-tests.md``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from controller.cli.testfile import TEST_FILE, Expectation, TestSpec, read_test_file
from controller.errors import BaseguardError, ExitCode, InputError

if TYPE_CHECKING:
    from controller.assess import Assessor, WorkloadResult
    from controller.policy.verdict import ImageResult

T = TypeVar("T")


@dataclass
class Outcome:
    """One test file's result: ``error`` when it could not run, else its failures (none: passed)."""

    path: Path
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    checked: int = 0
    online: bool = False  # it asked the real registries (offline: false)

    @property
    def status(self) -> str:
        return "ERROR" if self.error else "FAIL" if self.failures else "PASS"


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


def _resource_id(workload: Any, base: Path) -> str:
    if workload.kind == "Dockerfile":
        return f"Dockerfile/{os.path.relpath(workload.source, base)}"
    return f"{workload.kind}/{workload.namespace or 'default'}/{workload.name}"


@dataclass(frozen=True)
class Registries:
    """Where an online test's lookups go (``test --registry-config/--docker-config``)."""

    config: str | None = None
    docker_config: str | None = None


async def _assess(spec: TestSpec, registries: Registries, work: Callable[[Assessor], Awaitable[T]]) -> T:
    """Run ``work`` with the assessor the test asks for, through the one assessment path.

    Described images: the real resolver and identity index over a
    :class:`~controller.cli.fixtures.DescribedRegistry` (no network). Online
    (``offline: false``): over the real registries. Otherwise no lookups.
    """
    from controller.assess import Assessor
    from controller.lineage.resolve import LineageResolver

    if spec.registry is not None:
        resolver = LineageResolver(spec.registry, catalog=spec.registry.catalog(), sources=())
        return await work(Assessor(resolver))
    if not spec.online:
        return await work(Assessor(None))
    from controller.registry.client import RegistryClient
    from controller.registry.config import load_registry_config

    config = load_registry_config(registries.config, docker_config=registries.docker_config)
    async with RegistryClient(config) as client:
        return await work(Assessor(LineageResolver(client)))


def _difference(exp: Expectation, verdict: str, rules: frozenset[str], got: ImageResult) -> str:
    """What differs, line by line: a reader sees at once which rule is missing or extra, and why."""
    image = got.facts.reference.normalized if got.facts.reference else got.facts.image
    lines = [
        f"{exp.label} ({image}): expected {exp.verdict} {sorted(exp.rules)}, got {verdict} {sorted(rules)}"
    ]
    if verdict != exp.verdict:
        lines.append(f"  verdict: expected {exp.verdict}, got {verdict}")
    if exp.rules - rules:
        lines.append(f"  missing rules: {', '.join(sorted(exp.rules - rules))}")
    if rules - exp.rules:
        lines.append(f"  unexpected rules: {', '.join(sorted(rules - exp.rules))}")
    lines.extend(
        f"  found {v.rule.value} [{v.policy}] {v.action.value}{' (waived)' if v.waived else ''}: {v.message}"
        for v in got.violations
    )
    return "\n".join(lines)


def run_spec(spec: TestSpec, registries: Registries | None = None) -> list[str]:
    """Run one validated test; return the failures (empty when it passes)."""
    from controller.cli.loaders import load_inputs
    from controller.policyfiles import load_policies
    from controller.reference import parse

    policies = load_policies(list(spec.policies), today=spec.now.date())  # exceptions: as of the test's clock
    loaded = load_inputs(list(spec.resources))

    async def work(assessor: Assessor) -> list[WorkloadResult]:
        return await assessor.assess(
            loaded.workloads, policies, now=spec.now, namespace_labels=loaded.namespaces
        )

    results = asyncio.run(_assess(spec, registries or Registries(), work))
    base = spec.path.parent
    failures = []
    if not spec.expectations:
        failures.append(
            "asserts nothing: results is empty; list the verdicts you expect "
            f"(found {sum(len(wr.results) for wr in results)} image(s) to expect something of)"
        )
    for exp in spec.expectations:
        wanted_image = parse(exp.image).normalized if exp.image else None
        matches = [
            r
            for wr in results
            if _resource_id(wr.workload, base) == exp.resource
            for r in wr.results
            if (exp.container is None or r.facts.container == exp.container)
            and (wanted_image is None or (r.facts.reference and r.facts.reference.normalized == wanted_image))
        ]
        if len(matches) != 1:
            failures.append(f"{exp.label}: expected one image, found {len(matches)}")
            continue
        got = matches[0]
        rules = frozenset(v.rule.value for v in got.violations if not v.waived)
        if got.verdict.value != exp.verdict or rules != exp.rules:
            failures.append(_difference(exp, got.verdict.value, rules, got))
    return failures


def run_one(path: Path, *, today: dt.date | None = None, registries: Registries | None = None) -> Outcome:
    """Validate and run one test file. A bad file (or a policy or resource it names that
    cannot be read) is an ``ERROR`` outcome, never an exception: the other tests still run."""
    try:
        spec = read_test_file(path, today=today or dt.date.today())
        return Outcome(
            path, failures=run_spec(spec, registries), checked=len(spec.expectations), online=spec.online
        )
    except BaseguardError as exc:
        return Outcome(path, error=str(exc))


def run_all(dirs: Sequence[str], registries: Registries | None = None) -> list[Outcome]:
    files = find_test_files(dirs)
    if not files:
        raise InputError(f"no {TEST_FILE} found under {', '.join(dirs)}")
    return [run_one(path, registries=registries) for path in files]


def unused_registry_options(registries: Registries, outcomes: Sequence[Outcome]) -> str | None:
    """A note when ``--registry-config``/``--docker-config`` were given and no online test ran.

    Not an error (which tests are online is the files' choice, and a CI job keeps its
    flags while tests come and go), but never silence: the reader of the log must not
    believe a registry was asked.
    """
    given = [
        flag
        for flag, value in (("--registry-config", registries.config), ("--docker-config", registries.docker_config))
        if value is not None
    ]
    if not given or any(o.online for o in outcomes):
        return None
    return (
        f"{' and '.join(given)} not used: no test ran online (offline: false); "
        "the others answer from their described images, or make no lookups"
    )


def exit_code(outcomes: Sequence[Outcome]) -> ExitCode:
    """A bad test file outranks a failing test: the run could not say what it was asked."""
    if any(o.error for o in outcomes):
        return ExitCode.USAGE
    return ExitCode.DENIED if any(o.failures for o in outcomes) else ExitCode.OK


def write_text(outcomes: Sequence[Outcome], out: TextIO, *, colour: bool = False) -> None:
    colours = {"PASS": "32", "FAIL": "31", "ERROR": "31"}
    for o in outcomes:
        mark = o.status
        if colour:
            mark = f"\x1b[{colours[mark]}m{mark}\x1b[0m"
        out.write(f"{mark} {o.path}\n")
        lines = o.error.splitlines() if o.error else [ln for f in o.failures for ln in f.splitlines()]
        for line in lines:
            out.write(f"     {line.strip()}\n" if o.error else f"     {line}\n")
    passed = sum(o.status == "PASS" for o in outcomes)
    failed = sum(o.status == "FAIL" for o in outcomes)
    errors = sum(o.status == "ERROR" for o in outcomes)
    out.write(f"{passed} passed, {failed} failed")
    out.write(f", {errors} could not run (bad test file)\n" if errors else "\n")


def run_tests(dirs: Sequence[str], out: TextIO, *, colour: bool = False) -> int:
    outcomes = run_all(dirs)
    write_text(outcomes, out, colour=colour)
    return exit_code(outcomes)
