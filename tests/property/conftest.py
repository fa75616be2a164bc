"""Hypothesis profiles for the property suite.

``dev`` (the default) explores with fresh random examples each run and keeps
failures in the local example database, so a failure found once is replayed
first next time. ``ci`` (loaded when ``CI`` is truthy) is derandomized and keeps no
database: the same examples every run, so CI never fails on a run of luck and
a red build is reproducible on a laptop with ``CI=true pytest tests/property``.
Deadlines are off in both: a shared 2-core runner has pauses that say nothing
about the code. Example counts stay modest so the whole suite runs in seconds;
search harder locally with ``HYPOTHESIS_PROFILE=deep pytest tests/property``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from support.preconditions import in_ci

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

settings.register_profile("dev", max_examples=150, **_COMMON)
settings.register_profile("ci", max_examples=150, derandomize=True, database=None, **_COMMON)
settings.register_profile("deep", max_examples=5_000, **_COMMON)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev")
)
