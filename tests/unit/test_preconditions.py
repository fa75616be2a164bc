"""A missing precondition fails under every usual spelling of ``CI``, and only skips on a laptop."""

from __future__ import annotations

import pytest
from support.preconditions import unavailable


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "on", " true "])
def test_ci_spellings_turn_a_missing_binary_into_a_failure(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="docker-registry is not installed"):
        unavailable("docker-registry is not installed")


@pytest.mark.parametrize("value", [None, "", "false", "0", "no"])
def test_outside_ci_a_missing_binary_skips_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="docker-registry is not installed"):
        unavailable("docker-registry is not installed")
