"""``check -p`` and ``policy validate`` with exception files: what a developer and CI see.

An exception file sits next to the platform's policies (``-p policies/ -p exceptions/``); a
waived finding says which exception waived it; an exception in one namespace never waives a
workload of another; a policy's exception by namespace labels takes the labels of the
``Namespace`` objects among the inputs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from controller.cli.main import main

NOW = ("--now", "2026-12-05")

PINS = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: pins}
spec:
  pinning: {require: Version}
"""

LABELLED = PINS + """\
  exceptions:
    - namespaceSelector: {matchLabels: {tier: legacy}}
      until: "2027-01-01"
      reason: legacy tier OPS-2
"""

EXCEPTION = """\
apiVersion: baseguard.io/v1alpha1
kind: BaseImagePolicyException
metadata: {name: python-migration, namespace: shop}
spec:
  policy: {kind: ClusterBaseImagePolicy, name: pins}
  rules: [unpinned]
  images: [docker.io/library/python]
  until: "2027-01-31"
  reason: SHOP-12 moving to 3.13
"""

WAIVED = (
    "unpinned [pins] waived until 2027-01-31 by BaseImagePolicyException shop/python-migration: "
    "SHOP-12 moving to 3.13: image docker.io/library/python:3.12-slim"
)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def pod(name: str, namespace: str, image: str = "python:3.12-slim") -> str:
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{containers: [{{name: app, image: '{image}'}}]}}\n"
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_with_an_exception_file_says_which_exception_waived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "policies" / "pins.yaml", PINS)
    exception = write(tmp_path / "exceptions" / "shop.yaml", EXCEPTION)
    manifest = write(tmp_path / "pod.yaml", pod("a", "shop"))
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "--offline", *NOW)
    assert code == 1  # without the exception: denied
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "-p", exception, "--offline", *NOW)
    assert code == 0, out
    assert "ALLOW Pod/shop/a" in out
    assert WAIVED in out
    _, out, _ = run(capsys, "check", manifest, "-p", policy, "-p", exception, "--offline", "--format", "json", *NOW)
    [violation] = json.loads(out)["results"][0]["violations"]
    assert violation["waived"].startswith("waived until 2027-01-31 by BaseImagePolicyException shop/python-migration")
    assert violation["waivedBy"] == "BaseImagePolicyException shop/python-migration"


def test_an_exception_in_one_namespace_never_waives_in_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(tmp_path / "p.yaml", PINS + "---\n" + EXCEPTION)
    manifest = write(tmp_path / "pods.yaml", pod("a", "shop") + "---\n" + pod("b", "billing"))
    code, out, _ = run(capsys, "check", manifest, "-p", policies, "--offline", *NOW)
    assert code == 1
    assert "ALLOW Pod/shop/a" in out
    assert "DENY  Pod/billing/b" in out
    assert "unpinned [pins] deny: image docker.io/library/python:3.12-slim" in out


def test_a_dockerfile_is_waived_only_when_judged_as_in_the_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(tmp_path / "p.yaml", PINS + "---\n" + EXCEPTION)
    dockerfile = write(tmp_path / "Dockerfile", "FROM python:3.12-slim\n")
    code, _, _ = run(capsys, "check", dockerfile, "-p", policies, "--offline", *NOW)
    assert code == 1  # outside the cluster no namespace's exception applies
    code, out, _ = run(capsys, "check", dockerfile, "-p", policies, "--offline", "--namespace", "shop", *NOW)
    assert code == 0, out
    assert "by BaseImagePolicyException shop/python-migration: SHOP-12" in out
    code, _, _ = run(capsys, "check", dockerfile, "-p", policies, "--offline", "--namespace", "billing", *NOW)
    assert code == 1


def test_an_expired_exception_file_waives_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policies = write(tmp_path / "p.yaml", PINS + "---\n" + EXCEPTION)
    manifest = write(tmp_path / "pod.yaml", pod("a", "shop"))
    code, out, _ = run(capsys, "check", manifest, "-p", policies, "--offline", "--now", "2027-02-01")
    assert code == 1
    assert "waived" not in out


def test_a_policy_exception_by_namespace_labels_takes_the_namespaces_among_the_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.yaml", LABELLED)
    namespaces = (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: old, labels: {tier: legacy}}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: new, labels: {tier: current}}\n"
    )
    manifest = write(tmp_path / "all.yaml", namespaces + "---\n" + pod("a", "old") + "---\n" + pod("b", "new"))
    code, out, _ = run(capsys, "check", manifest, "-p", policy, "--offline", *NOW)
    assert code == 1
    assert "ALLOW Pod/old/a" in out
    assert "unpinned [pins] waived until 2027-01-01: legacy tier OPS-2 (exception #0)" in out
    assert "DENY  Pod/new/b" in out


def test_an_exception_past_its_bound_is_refused_with_its_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(tmp_path / "p.yaml", PINS + "---\n" + EXCEPTION.replace("2027-01-31", "2027-06-30"))
    manifest = write(tmp_path / "pod.yaml", pod("a", "shop"))
    code, _, err = run(capsys, "check", manifest, "-p", policies, "--offline", *NOW)
    assert code == 2
    assert (
        "(document 2): spec.until: 2027-06-30 is more than 90 days away (the latest is 2027-03-05): "
        "an exception is time-boxed; file a new one when it ends"
    ) in err


def test_policy_validate_reads_exceptions_and_warns_when_they_expired_or_name_no_given_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = write(tmp_path / "p.yaml", PINS + "---\n" + EXCEPTION)
    code, out, _ = run(capsys, "policy", "validate", policies, *NOW)
    assert code == 0
    assert f"{policies} (document 2, python-migration): ok" in out
    code, out, _ = run(capsys, "policy", "validate", policies, "--now", "2027-02-01")
    assert code == 0
    assert (
        f"{policies} (document 2, python-migration): warning: spec.until: expired on 2027-01-31: it waives "
        "nothing (file a new one if it is still needed)"
    ) in out
    other = write(tmp_path / "q.yaml", PINS.replace("name: pins", "name: other") + "---\n" + EXCEPTION)
    code, out, _ = run(capsys, "policy", "validate", other, *NOW)
    assert code == 0
    assert (
        "warning: spec.policy: ClusterBaseImagePolicy pins is not among the policies given; the exception "
        "waives nothing unless that policy is in force"
    ) in out
    broken = write(tmp_path / "r.yaml", EXCEPTION.replace("  images: [docker.io/library/python]\n", ""))
    code, out, _ = run(capsys, "policy", "validate", broken, *NOW)
    assert code == 2
    assert f"{broken} (document 1, python-migration): spec.images: required field is missing" in out


def test_check_namespace_takes_the_labels_of_a_namespace_given_among_the_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Dockerfile judged ``--namespace old`` is waived by a label exception when a
    ``Namespace`` object among the inputs gives ``old`` its labels; without it, not."""
    policy = write(tmp_path / "p.yaml", LABELLED)
    dockerfile = write(tmp_path / "Dockerfile", "FROM python:3.12-slim\n")
    namespace = write(tmp_path / "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: old, labels: {tier: legacy}}\n")
    code, _, _ = run(capsys, "check", dockerfile, "-p", policy, "--offline", "--namespace", "old", *NOW)
    assert code == 1
    code, out, _ = run(capsys, "check", dockerfile, namespace, "-p", policy, "--offline", "--namespace", "old", *NOW)
    assert code == 0, out
    assert "waived until 2027-01-01: legacy tier OPS-2 (exception #0)" in out


def test_baseguard_test_judges_exceptions_as_of_the_tests_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A team can unit-test its exception: bounded and applied as of the test file's ``now``."""
    write(tmp_path / "pins.yaml", PINS)
    # Far in the future: within 90 days of the test's clock, never of the day the suite runs.
    write(tmp_path / "shop.yaml", EXCEPTION.replace("2027-01-31", "2990-07-31"))
    write(tmp_path / "t" / "pod.yaml", pod("api", "shop"))
    write(
        tmp_path / "t" / "baseguard-test.yaml",
        """\
        policies: [../pins.yaml, ../shop.yaml]
        resources: [pod.yaml]
        now: "2990-06-01"
        results:
          - {resource: Pod/shop/api, container: app, verdict: allow}
        """,
    )
    code, out, _ = run(capsys, "test", str(tmp_path / "t"))
    assert code == 0, out
