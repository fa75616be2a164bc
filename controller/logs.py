"""JSON-lines logs on stderr: one object per line, made for ``kubectl logs | jq``.

A line is ``{"ts", "level", "logger", "msg", ...fields}``; structured fields go
in ``extra={"fields": {...}}``. Each admission review logs exactly one
``decision`` line (see :mod:`controller.webhook.handlers`). Shared by
``serve`` and the operator's ``run``; nothing here knows about either.

Credentials never belong in a log. Nothing baseguard logs should carry one,
but a registry's error text or an exception message is not ours to vouch
for, so every string of every line passes through :func:`redact`, and a field
named like a secret (``password``, ``token`` …) is masked whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import re
import sys
import time
from collections.abc import Mapping
from queue import SimpleQueue
from typing import Any, TextIO

import orjson

ROOT = "baseguard"

_SECRET = re.compile(
    r"(?i)\b(authorization|proxy-authorization|password|passwd|token|access_token|"
    r"refresh_token|secret|auth|identitytoken)(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic)\s+)?[^\s\"',;}&]+"
)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@\"']+:[^/\s@\"']+@", re.IGNORECASE)


_HINTS = ("auth", "pass", "token", "secret", "://")


def redact(text: str) -> str:
    """Mask ``password=…``, ``Authorization: Bearer …``, ``https://user:pass@host`` and the like."""
    # Every string of every line comes through here: rule out the common case with
    # substring tests. Both expressions need a ``:`` or ``=`` (and a hint word) to match.
    if ":" not in text and "=" not in text:
        return text
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
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


_PLAIN = frozenset({int, float, bool, type(None)})


def _scrub(value: Any, depth: int = 0) -> Any:
    """``value`` with every string redacted and every secret-named key masked."""
    kind = type(value)
    if kind in _PLAIN:  # most values: answered before any isinstance
        return value
    if kind is str or isinstance(value, str):
        return redact(value)
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {k: _entry(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _entry(key: Any, value: Any, depth: int) -> Any:
    """The value of ``key`` as logged: masked whole when the key names a secret, else scrubbed."""
    if str(key).lower() in _SECRET_KEYS:
        return "***"
    kind = type(value)
    if kind in _PLAIN or (kind is str and ":" not in value and "=" not in value):
        return value  # nothing to redact (see :func:`redact`), without the call
    return _scrub(value, depth)


#: orjson's output as :func:`json.dumps` (``default=str``) would give it: a dataclass or a
#: datetime becomes its ``str()`` (a dataclass's repr hides its secrets; orjson's own
#: dataclass encoding would not), keys that are not strings are written as strings.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)
#: For :func:`_clean_line`: string keys only, and dataclasses and datetimes to ``default``.
_PLAIN_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line, credentials masked.

    Every admission review logs a line at INFO, so this is on the hot path:
    the timestamp's seconds are formatted once per second, and orjson writes
    the line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        """``2025-06-01T12:00:00.123+00:00`` (UTC, milliseconds)."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        millis = min(int((created - second) * 1000), 999)
        return f"{self._stamp}.{millis:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if type(fields) is dict and not record.exc_info:
            line = _clean_line(out, fields)
            if line is not None:
                return line
        return self.format_scrubbed(record, out, fields)

    def format_scrubbed(
        self, record: logging.LogRecord, out: dict[str, Any], fields: object
    ) -> str:
        """The line with every field scrubbed one by one (:func:`_scrub`)."""
        if isinstance(fields, Mapping):
            for key, value in fields.items():  # _entry(), inlined: a dozen fields per review
                name = key if type(key) is str else str(key)
                if name in out:
                    continue
                kind = type(value)
                if name.lower() in _SECRET_KEYS:
                    out[name] = "***"
                elif kind in _PLAIN or (kind is str and ":" not in value and "=" not in value):
                    out[name] = value
                else:
                    out[name] = _scrub(value, 1)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        try:
            return orjson.dumps(out, default=str, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # what orjson cannot write (a tuple as a key, a lone surrogate)
            return json.dumps(out, default=str, separators=(",", ":"))  # ASCII: writes anything


def _not_plain(value: object) -> Any:
    raise TypeError  # leaves the line to JsonFormatter.format_scrubbed


def _clean_line(out: dict[str, Any], fields: dict[Any, Any]) -> str | None:
    """The whole line at once, when scrubbing it field by field could change nothing; else ``None``.

    Scrubbing changes a string only if it holds a hint word (:data:`_HINTS`),
    and masks a key only if its name holds one (every name in
    :data:`_SECRET_KEYS` does). orjson writes letters, ``:`` and ``/`` as
    they are, so a hint anywhere in the fields shows in the written line.
    A line without one is the answer as it stands: written with orjson in
    one call, then searched once. Anything unusual goes the long way: a field
    named like a base key (``ts``, ``msg``), a key that is not a string, or
    a value orjson would not write as plain JSON (``_not_plain``: a Mapping
    that is not a dict, a set, a dataclass, a datetime).
    """
    merged = {**out, **fields}
    if len(merged) != len(out) + len(fields):
        return None
    try:
        line = orjson.dumps(merged, default=_not_plain, option=_PLAIN_OPTIONS).decode()
    except TypeError:
        return None
    lowered = line.lower()
    for hint in _HINTS:
        if hint in lowered:
            return None
    return line


def info(logger: logging.Logger, msg: str, fields: Mapping[str, Any]) -> None:
    """``logger.info(msg, extra={"fields": fields})``, without finding the caller's file and line.

    :meth:`logging.Logger.info` walks the stack for ``pathname``/``lineno``,
    which no JSON line shows; the decision line of every review skips it.
    """
    if logger.isEnabledFor(logging.INFO):
        logger.handle(
            logger.makeRecord(
                logger.name, logging.INFO, "", 0, msg, (), None, extra={"fields": fields}
            )
        )


class _Record(logging.handlers.QueueHandler):
    """Formats the line on the caller's thread and queues the text; the listener writes it.

    Formatting in the listener thread (as this handler first did) moved the JSON
    work off the event loop but made the thread take the GIL for every line: the
    loop then waited for the interpreter's switch interval, and the webhook's p99
    at saturation was 1.8 times a bare server's (1.4 with the line formatted here,
    ``bench/webhook.py``). The thread now only joins and writes, a syscall that
    releases the GIL.
    """

    listener: logging.handlers.QueueListener

    def prepare(self, record: logging.LogRecord) -> Any:  # logging's own name
        return FORMATTER.format(record)

    def close(self) -> None:
        """Stop the listener: the lines still queued are written first."""
        try:
            if self.listener._thread is not None:  # closed twice: by unconfigure, then at exit
                self.listener.stop()
            for handler in self.listener.handlers:
                handler.flush()  # the lines that waited behind the listener's stop marker
        finally:
            super().close()


class _Listener(logging.handlers.QueueListener):
    """A ``QueueListener`` that lets lines gather: at most one wake-up per ``interval`` while busy.

    Waking the listener thread for every decision line cost a thread switch
    (and a hand-over of the GIL from the event loop) per review. After a
    record arrives on an empty queue, the thread waits ``interval`` for more,
    then formats and writes them all at once (:class:`_Lines`). A quiet
    process writes each line at most ``interval`` late; a crash loses at most
    that much of the log (the apiserver's audit log keeps the verdicts).
    """

    interval = 0.05

    def dequeue(self, block: bool) -> Any:  # logging's own name
        record = self.queue.get(block)  # type: ignore[call-arg]  # a SimpleQueue
        if record is not self._sentinel and self.queue.empty():  # type: ignore[attr-defined]
            time.sleep(self.interval)
        return record


class _Lines(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes in batches: a line waits until the queue is empty (or many wait), then one ``write``.

    Every review logs a decision line; a ``write`` and a ``flush`` per line
    were a syscall pair each. Lines go out as soon as no more are queued, so
    a quiet process writes at once and a busy one in batches.
    """

    def __init__(self, stream: TextIO, queue: SimpleQueue[Any], *, capacity: int = 256) -> None:
        super().__init__(stream)
        self._queue = queue
        self._capacity = capacity
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(record if isinstance(record, str) else self.format(record))
        except Exception:  # one bad record must not cost the others
            self.handleError(record)
        if len(self._pending) >= self._capacity or self._queue.empty():
            self.flush()

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed under us: nothing better to do
            pass


FORMATTER = JsonFormatter()


def configure(
    *, level: str | int = "INFO", stream: TextIO | None = None, batched: bool = False
) -> logging.Handler:
    """Send every log line (ours, aiohttp's) to ``stream`` as JSON; returns the handler.

    Called by ``serve`` and ``run`` at start-up, never at import. With
    ``batched=True`` the standard library's ``QueueHandler``/``QueueListener``
    pair takes the formatting and the writing off the caller's thread (the
    event loop): a record is queued, a listener thread formats it and writes
    lines in batches (:class:`_Lines`). The caller removes the handler again
    with :func:`unconfigure`, which writes what is still queued (tests run
    ``serve`` several times in one process, and read ``stream`` line by
    line, unbatched).
    """
    # The JSON lines show none of these; every LogRecord would otherwise look them up.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    target = stream or sys.stderr
    handler: logging.Handler
    if batched:
        queue: SimpleQueue[Any] = SimpleQueue()
        lines = _Lines(target, queue)
        lines.setFormatter(JsonFormatter())
        queued = _Record(queue)
        queued.listener = _Listener(queue, lines)
        queued.listener.start()
        handler = queued
    else:
        handler = logging.StreamHandler(target)
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler


def unconfigure(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
