"""One exception tree for everything baseguard refuses.

Each error carries a message meant for the user (no secrets, no stack) and a
``context`` mapping for logs. Adapters map the classes to their transport:
the CLI to exit code 2, the webhook to HTTP 400, lookups to ``lookup-failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What every command's exit status means, so CI can tell a denial from a typo.

    ``check``, ``test`` and ``audit`` answer DENIED (1) for "something would be
    denied / a test failed / a workload uses the base"; ``run`` answers it when
    the operator itself failed (``FAILED``, the same number). USAGE (2) is always the user's input: bad
    arguments, an unreadable file, a bad policy, an unreachable cluster.
    UNJUDGED (3) is ``check``'s "could not judge": nothing was denied by a rule, but
    an image could not be judged (a lookup failed, or did not happen ``--offline``)
    and its policy's ``onLookupFailure`` denies that; CI can retry it instead of
    sending the author to fix the image.
    """

    OK = 0
    DENIED = 1
    FAILED = 1  # ``run``: the operator itself failed (the same number, another reading)
    USAGE = 2
    UNJUDGED = 3
    INTERRUPTED = 130


class BaseguardError(Exception):
    """Base of every error baseguard raises on purpose."""

    def __init__(self, message: str, *, context: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context: Mapping[str, Any] = context or {}

    def __str__(self) -> str:
        return self.message


class InvalidReference(BaseguardError):
    """An image string that does not follow the distribution reference grammar."""


class InvalidGlob(BaseguardError):
    """A glob with characters that can never match in its position."""


class PolicyError(BaseguardError):
    """A policy that cannot be compiled; ``path`` is the field, e.g. ``spec.bases.allowed[2].tags[0]``."""

    def __init__(self, path: str, reason: str, *, context: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason, context=context)
        self.path = path
        self.reason = reason


class InputError(BaseguardError):
    """A file the user handed us that cannot be read: bad YAML, no kind, unreadable Dockerfile."""


class LookupFailed(BaseguardError):
    """The registry did not answer usefully: timeout, refusal, bad digest, oversized body."""


class BadReview(BaseguardError):
    """An AdmissionReview the webhook cannot parse; answered with HTTP 400."""
