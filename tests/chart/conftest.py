"""Fixtures for the chart tests: one rendering per named value set."""

from __future__ import annotations

import pytest
from support.chart import VALUE_SETS, Rendered, rendered


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def chart(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)
