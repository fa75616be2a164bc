"""A policy test file (``baseguard-test.yaml``) → :class:`TestSpec`, or every problem with its field path.

A test a policy author cannot trust is worse than none: a misspelled key
(``policy:``) silently ignored, a string where a list belongs (``rules:
deprecated-base``) read character by character, or a file with nothing to
check counted as passed. So a test file is held to a schema, with the same
field-path messages ``policy validate`` gives (``results[0].rules: expected a
list, got a string``), and dates are checked against the calendar.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli.fixtures import IMAGE_SCHEMA, DescribedRegistry
from controller.documents import yaml_data
from controller.errors import InputError
from controller.policy.model import RuleCode

if TYPE_CHECKING:
    import jsonschema

TEST_FILE = "baseguard-test.yaml"
VERDICTS = ("deny", "warn", "audit", "allow")

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_DATE = r"^\d{4}-\d{2}-\d{2}$"

#: The test file's shape. Every key is described: ``docs/policy-tests.md`` lists them.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["policies", "resources", "results"],
    "properties": {
        "name": {"type": "string", "description": "for people; shown nowhere else"},
        "policies": {**_STRINGS, "minItems": 1, "description": "policy files or folders"},
        "resources": {**_STRINGS, "minItems": 1, "description": "manifests and Dockerfiles"},
        "now": {"type": "string", "pattern": _DATE, "description": "the clock, YYYY-MM-DD"},
        "offline": {"type": "boolean", "description": "false: lookups ask the real registries"},
        "images": {
            "type": "array",
            "description": "the images lookups are answered from (no registry asked)",
            "items": IMAGE_SCHEMA,
        },
        "results": {
            "type": "array",
            "description": "the expectations",
            "items": {
                "type": "object",
                "required": ["resource", "verdict"],
                "properties": {
                    "resource": {"type": "string", "minLength": 1},
                    "container": {"type": "string", "minLength": 1},
                    "image": {"type": "string", "minLength": 1},
                    "verdict": {"type": "string", "enum": list(VERDICTS)},
                    "rules": {
                        "type": "array",
                        "description": "the exact set of rule codes",
                        "items": {"type": "string", "enum": [code.value for code in RuleCode]},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Expectation:
    """One expected result: the image it names, its verdict and its exact set of rule codes."""

    resource: str
    container: str | None
    image: str | None
    verdict: str
    rules: frozenset[str]

    @property
    def label(self) -> str:
        return self.resource + (f" container {self.container}" if self.container else "")


@dataclass(frozen=True)
class TestSpec:
    """A validated test file; paths are resolved against the file's folder."""

    __test__ = False  # not a pytest class, whatever its name

    path: Path
    policies: tuple[str, ...]
    resources: tuple[str, ...]
    now: dt.datetime
    expectations: tuple[Expectation, ...]
    #: The described images lookups are answered from; ``None``: no lookups (or online).
    registry: DescribedRegistry | None = field(default=None, compare=False)
    #: ``offline: false``: lookups ask the real registries (``--registry-config`` of ``test``).
    online: bool = False


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(SCHEMA)
    return validator


def _problems(data: object) -> list[str]:
    from controller.policy.schema import schema_problems

    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        return [f"a test file is a mapping with policies, resources and results; this one is {what}"]
    problems = []
    for where, reason in schema_problems(data, _validator()):
        if reason.startswith("must not be empty"):
            reason = "must not be empty: a test needs something to run"
        if where == "now" and "does not match" in reason:
            reason = f"{data['now']!r} is not a date: expected YYYY-MM-DD"
        problems.append(f"{where}: {reason}" if where else reason)
    now = data.get("now")
    if isinstance(now, str) and not any(p.startswith("now:") for p in problems):
        try:
            dt.date.fromisoformat(now)
        except ValueError as exc:
            problems.append(f"now: {now!r} is not a calendar date ({exc})")
    if data.get("offline", True) is False and "images" in data:
        problems.append(
            "images: an online test (offline: false) asks the real registries; "
            "drop images:, or drop offline: false"
        )
    images = data.get("images")
    if isinstance(images, list) and not any(p.startswith("images") for p in problems):
        problems.extend(DescribedRegistry.build(images)[1])
    return problems


def read_test_file(path: Path, *, today: dt.date) -> TestSpec:
    """Load and validate one test file; an :class:`InputError` lists every problem at once.

    Without ``now`` the test runs as of ``today`` (and can change its result
    one day: the docs say to set it).
    """
    from controller.documents import read_text

    data = yaml_data(read_text(str(path)), source=str(path))
    problems = _problems(data)
    if problems:
        raise InputError(f"{path}: invalid test file:\n  " + "\n  ".join(problems))
    assert isinstance(data, dict)
    day = dt.date.fromisoformat(data["now"]) if "now" in data else today
    base = path.parent
    registry = DescribedRegistry.build(data["images"])[0] if "images" in data else None
    return TestSpec(
        path=path,
        policies=tuple(str(base / p) for p in data["policies"]),
        resources=tuple(str(base / r) for r in data["resources"]),
        now=dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC),
        expectations=tuple(
            Expectation(
                resource=item["resource"],
                container=item.get("container"),
                image=item.get("image"),
                verdict=item["verdict"],
                rules=frozenset(item.get("rules", ())),
            )
            for item in data["results"]
        ),
        registry=registry,
        online=data.get("offline", True) is False,
    )
