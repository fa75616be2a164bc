"""A circuit breaker: after a few failed calls in a row, the database is not asked for a while.

A Redis that is down answers "connection refused" fast, but one that is unreachable
(a dropped route, a full node) lets every call wait its whole timeout. Once
:attr:`Breaker.threshold` calls in a row have failed the breaker opens: every call
is skipped at no cost until the cool-down passes; then one call probes. A probe that
succeeds closes it; one that fails opens it again for twice as long (up to
:attr:`Breaker.max_cooldown`). Pure, with an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_THRESHOLD = 3
DEFAULT_COOLDOWN = 2.0
DEFAULT_MAX_COOLDOWN = 30.0


class Breaker:
    """Consecutive failures open it; a successful probe after the cool-down closes it."""

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.failures = 0
        self.open_until: float | None = None
        self.probing = False
        self._current = cooldown
        self.opened = 0  # times it opened (a metric and the tests read it)

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def allow(self) -> bool:
        """Whether a call may go out now (when open: one probe once the cool-down is over)."""
        if self.open_until is None:
            return True
        if self.probing or self.clock() < self.open_until:
            return False
        self.probing = True
        return True

    def succeeded(self) -> bool:
        """A call answered; ``True`` when that closed an open breaker."""
        was_open = self.open_until is not None
        self.failures = 0
        self.open_until = None
        self.probing = False
        self._current = self.cooldown
        return was_open

    def failed(self) -> bool:
        """A call failed; ``True`` when that opened the breaker."""
        self.failures += 1
        if self.probing:
            self.probing = False
            self._current = min(self._current * 2, self.max_cooldown)
            self.open_until = self.clock() + self._current
            return False
        if self.open_until is None and self.failures >= self.threshold:
            self.open_until = self.clock() + self._current
            self.opened += 1
            return True
        return False

    def abandoned(self) -> None:
        """A call was cancelled by its caller before it answered: it proves nothing."""
        self.probing = False
