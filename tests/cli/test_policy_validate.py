"""``baseguard policy validate DIR``: every file reported, duplicates and expired exceptions flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.main import main

GOOD = """\
apiVersion: baseguard.io/v1alpha1
kind: ClusterBaseImagePolicy
metadata: {name: NAME}
spec: {mode: Enforce, pinning: {require: Version}}
"""


def test_every_bad_file_of_a_folder_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not load used to stop the run, hiding every file after it."""
    (tmp_path / "a-broken.yaml").write_text("kind: [\n")
    (tmp_path / "b-bad-enum.yaml").write_text(GOOD.replace("NAME", "b").replace("require: Version", "require: Versions"))
    (tmp_path / "c-workload.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    (tmp_path / "d-good.yaml").write_text(GOOD.replace("NAME", "d"))
    code = main(["policy", "validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2
    assert f"{tmp_path / 'a-broken.yaml'}: document 1: invalid YAML at line" in out
    assert f"{tmp_path / 'b-bad-enum.yaml'} (document 1, b): spec.pinning.require: unsupported value 'Versions'" in out
    assert f"{tmp_path / 'c-workload.yaml'}: document 1 (line 1): a Pod is not a policy" in out
    assert f"{tmp_path / 'd-good.yaml'} (document 1, d): ok" in out
    assert out.splitlines()[-1] == "2 policies, 1 invalid, 2 file(s) could not be read"


def test_two_policies_with_one_name_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("NAME", "pins"))
    (tmp_path / "b.yaml").write_text(GOOD.replace("NAME", "pins").replace("require: Version", "require: Digest"))
    namespaced = GOOD.replace("ClusterBaseImagePolicy", "BaseImagePolicy")
    (tmp_path / "c.yaml").write_text(namespaced.replace("NAME", "pins") + "---\n" + namespaced.replace("{name: NAME}", "{name: pins, namespace: shop}"))
    code = main(["policy", "validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2
    assert (
        f"{tmp_path / 'b.yaml'} (document 1, pins): metadata.name: ClusterBaseImagePolicy pins is also "
        f"defined in {tmp_path / 'a.yaml'} (document 1, pins); the second would replace the first when applied"
    ) in out
    assert "c.yaml (document 1, pins): ok" in out and "c.yaml (document 2, pins): ok" in out  # other kind / namespace
    assert out.splitlines()[-1] == "4 policies, 1 invalid"


def test_an_expired_exception_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = GOOD.replace("NAME", "pins").replace(
        "pinning: {require: Version}}",
        "pinning: {require: Version},\n  exceptions: [{images: ['docker.io/acme/*'], until: '2026-01-31', reason: OPS-1},"
        " {images: ['docker.io/acme/x'], until: '2027-01-31', reason: OPS-2}]}",
    )
    (tmp_path / "p.yaml").write_text(policy)
    code = main(["policy", "validate", str(tmp_path), "--now", "2026-11-23"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert (
        "p.yaml (document 1, pins): warning: spec.exceptions[0].until: expired on 2026-01-31: it waives "
        "nothing now; remove it, or extend it if the work is still under way"
    ) in out
    assert "exceptions[1]" not in out
    assert out.splitlines()[-1] == "1 policies, 0 invalid, 1 warning(s)"
    assert main(["policy", "validate", str(tmp_path), "--now", "2026-01-15"]) == 0
    assert "expired on" not in capsys.readouterr().out


def test_a_duration_or_date_past_its_bound_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``99999999999d`` used to raise OverflowError out of ``policy validate``; ``900000000d`` passed."""
    for name, age in (("far", "900000000d"), ("farther", "99999999999d")):
        (tmp_path / f"{name}.yaml").write_text(
            GOOD.replace("NAME", name).replace("pinning: {require: Version}", f"lineage: {{maxBaseAge: {age}}}")
        )
    (tmp_path / "waiver.yaml").write_text(
        GOOD.replace("NAME", "waiver").replace(
            "pinning: {require: Version}}",
            "pinning: {require: Version},\n  exceptions: [{namespaces: [a], until: '9999-12-31'}]}",
        )
    )
    code = main(["policy", "validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2
    for name, age in (("far", "900000000d"), ("farther", "99999999999d")):
        assert (
            f"{name}.yaml (document 1, {name}): spec.lineage.maxBaseAge: '{age}' is longer than 100 years: "
            "at most 36525d, 876600h or 5217w"
        ) in out
    assert (
        "waiver.yaml (document 1, waiver): spec.exceptions[0].until: '9999-12-31' is out of range: "
        "a date must be between 1970-01-01 and 2999-12-31"
    ) in out
    assert out.splitlines()[-1] == "3 policies, 3 invalid"


def test_an_unclosed_bracket_in_a_registry_glob_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        GOOD.replace("NAME", "regs").replace(
            "pinning: {require: Version}", "registries: {allowed: ['docker.io/library/[abc']}"
        )
    )
    code = main(["policy", "validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2
    assert (
        "spec.registries.allowed[0]: bad glob 'docker.io/library/[abc': globs support only * (any run of "
        "characters) and ? (one character), with no [...] classes"
    ) in out


def _patterns(name: str, count: int, namespace: str = "team-a") -> str:
    names = ", ".join(f"docker.io/acme/app{i}" for i in range(count))
    return (
        "apiVersion: baseguard.io/v1alpha1\nkind: BaseImagePolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{mode: Audit, registries: {{allowed: [{names}]}}}}\n"
    )


def test_pattern_caps_per_policy_and_per_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Oversized lists, a policy past 1,000 patterns, and a namespace past 2,000 are refused with paths."""
    huge = _patterns("huge", 513).replace("team-a", "team-c")
    (tmp_path / "a.yaml").write_text(huge)
    for name in ("b1", "b2", "b3", "b4"):  # 500 each: the fifth would reach 2,500
        (tmp_path / f"{name}.yaml").write_text(_patterns(name, 500))
    (tmp_path / "b5.yaml").write_text(_patterns("b5", 1))
    (tmp_path / "c.yaml").write_text(_patterns("other", 500, namespace="team-b"))
    code = main(["policy", "validate", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 2
    assert "a.yaml (document 1, huge): spec.registries.allowed: has 513 entries, more than the 512 allowed" in out
    for name in ("b1", "b2", "b3", "b4"):
        assert f"{name}.yaml (document 1, {name}): ok" in out
    assert (
        "b5.yaml (document 1, b5): spec.registries.allowed[0]: the BaseImagePolicy objects of namespace "
        "team-a would hold 2001 patterns together (2000 in the others, 1 in this one), more than the 2000 "
        "one namespace may hold"
    ) in out
    assert "c.yaml (document 1, other): ok" in out
    assert out.splitlines()[-1] == "7 policies, 2 invalid"
