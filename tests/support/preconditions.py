"""What a suite needs from the machine: skipped on a developer's laptop, a failure in CI.

A skipped test proves nothing, and CI must never go green by quietly leaving out
the real-registry, SSRF or control-plane suites, so under ``CI`` set to any of the
usual truthy spellings (``true``, ``1``, ``yes``, ``on``, any case) a missing
precondition fails. CI services disagree on the spelling; the exact string ``true``
alone let ``CI=1`` turn whole suites into skips.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

TRUTHY = frozenset({"true", "1", "yes", "y", "on"})


def in_ci() -> bool:
    """Whether ``$CI`` says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def unavailable(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
