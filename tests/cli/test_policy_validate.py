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
