"""JSON-lines logs on stderr: one object per line, made for ``kubectl logs | jq``.

A line is ``{"ts", "level", "logger", "msg", ...fields}``; structured fields go
in ``extra={"fields": {...}}``. Each admission review logs exactly one
``decision`` line (see :mod:`controller.webhook.handlers`).

Credentials never belong in a log. Nothing baseguard logs should carry one,
but a registry's error text or an exception message is not ours to vouch
for, so every string of every line passes through :func:`redact`, and a field
named like a secret (``password``, ``token`` …) is masked whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

ROOT = "baseguard"

_SECRET = re.compile(
    r"(?i)\b(authorization|proxy-authorization|password|passwd|token|access_token|"
    r"refresh_token|secret|auth|identitytoken)(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic)\s+)?[^\s\"',;}&]+"
)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@\"']+:[^/\s@\"']+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Mask ``password=…``, ``Authorization: Bearer …``, ``https://user:pass@host`` and the like."""
    if not any(word in text.lower() for word in ("auth", "pass", "token", "secret", "://")):
        return text  # the common case, without running the expressions
    text = _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    return _USERINFO.sub(r"\1***:***@", text)


_SECRET_KEYS = frozenset(
    {
        "authorization",
        "password",
        "passwd",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "auth",
    }
)


def _scrub(value: Any, depth: int = 0) -> Any:
    """``value`` with every string redacted and every secret-named key masked."""
    if isinstance(value, str):
        return redact(value)
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {
            k: "***" if str(k).lower() in _SECRET_KEYS else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line, credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in _scrub(fields).items():
                out.setdefault(str(key), value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":"))


def configure(*, level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send every log line (ours, aiohttp's) to ``stream`` as JSON; returns the handler.

    Called by ``serve`` at start-up, never at import. The caller removes the
    handler again with :func:`unconfigure` when it is done (tests run ``serve``
    several times in one process).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler


def unconfigure(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
