"""``--format junit`` for ``check`` and ``test``: the XML report every CI shows as tests.

CI systems (GitLab, Jenkins, GitHub via test-report actions) read JUnit XML
and show each case with its message. For ``check`` a case is one image of one
input (a container of a workload, a ``FROM`` of a Dockerfile): a denial is a
``<failure>``, warnings and audit findings go to the case's ``<system-out>``
(they do not fail a build), an image no policy applied to is ``<skipped>``.
For ``test`` a case is one test file: a failed expectation is a
``<failure>``, a bad test file an ``<error>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from controller.policy.model import Action

if TYPE_CHECKING:
    from controller.assess import WorkloadResult
    from controller.cli.testing import Outcome


def _document(suite: ET.Element) -> str:
    root = ET.Element("testsuites", {k: suite.get(k, "0") for k in ("tests", "failures", "errors", "skipped")})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _case_name(wr: WorkloadResult) -> str:
    wl = wr.workload
    if wl.kind == "Dockerfile":
        return wl.source
    return "/".join(p for p in (wl.kind, wl.namespace, wl.name) if p)


def check_junit(results: Sequence[WorkloadResult], *, skipped: Sequence[str]) -> str:
    """One ``<testcase>`` per image; ``classname`` is the input file, ``name`` the object and image."""
    suite = ET.Element("testsuite", {"name": "baseguard check"})
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    for wr in results:
        for result in wr.results:
            who = result.facts.container or "-"
            shown = result.facts.reference.normalized if result.facts.reference else result.facts.image
            case = ET.SubElement(
                suite,
                "testcase",
                {"classname": wr.workload.source, "name": f"{_case_name(wr)} {who}: {shown}"},
            )
            counts["tests"] += 1
            lines = [
                f"{v.rule.value} [{v.policy}] "
                f"{v.waived or v.action.value}: {v.message}"
                for v in result.violations
            ]
            if result.verdict is Action.DENY:
                counts["failures"] += 1
                denials = [v for v in result.violations if v.action is Action.DENY]
                failure = ET.SubElement(
                    case,
                    "failure",
                    {"message": denials[0].message, "type": denials[0].rule.value},
                )
                failure.text = "\n".join(lines)
            elif not result.policies:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", {"message": "no policy applies to this input"})
            elif lines:
                ET.SubElement(case, "system-out").text = "\n".join(lines)
    if skipped:
        ET.SubElement(suite, "system-out").text = "skipped (not judged):\n" + "\n".join(skipped)
    suite.attrib.update({k: str(v) for k, v in counts.items()} | {"errors": "0"})
    return _document(suite)


def policy_tests_junit(outcomes: Sequence[Outcome]) -> str:
    """One ``<testcase>`` per test file."""
    suite = ET.Element("testsuite", {"name": "baseguard test"})
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for outcome in outcomes:
        case = ET.SubElement(
            suite, "testcase", {"classname": "baseguard-test", "name": str(outcome.path)}
        )
        counts["tests"] += 1
        if outcome.error:
            counts["errors"] += 1
            first = outcome.error.splitlines()[0]
            ET.SubElement(case, "error", {"message": first, "type": "bad-test-file"}).text = outcome.error
        elif outcome.failures:
            counts["failures"] += 1
            failure = ET.SubElement(
                case, "failure", {"message": outcome.failures[0].splitlines()[0], "type": "expectation"}
            )
            failure.text = "\n".join(outcome.failures)
    suite.attrib.update({k: str(v) for k, v in counts.items()} | {"skipped": "0"})
    return _document(suite)


