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
import re
import sys
import threading
import time
from collections.abc import Mapping
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
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
            self.formatException(record.exc_info) if record.exc_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        name: str,
        msg: str,
        fields: object,
        exc: str | None = None,
    ) -> str:
        """The JSON line of one event: what :meth:`format` writes, from its parts (no LogRecord)."""
        out: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level.lower(),
            "logger": name,
            "msg": redact(msg),
        }
        if type(fields) is dict and exc is None:
            line = _clean_line(out, fields)
            if line is not None:
                return line
        return self.scrubbed(out, fields, exc)

    def scrubbed(self, out: dict[str, Any], fields: object, exc: str | None = None) -> str:
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
        if exc is not None:
            out["exc"] = redact(exc)
        try:
            return orjson.dumps(out, default=str, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # what orjson cannot write (a tuple as a key, a lone surrogate)
            return json.dumps(out, default=str, separators=(",", ":"))  # ASCII: writes anything


def _not_plain(value: object) -> Any:
    raise TypeError  # leaves the line to JsonFormatter.scrubbed


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
    """``logger.info(msg, extra={"fields": fields})``, at the cost of formatting the line only.

    Every review logs its decision through here. When the line can only end in
    the batched sink (:func:`configure` with ``batched=True``, no other handler
    or filter on the way), it is formatted and handed over directly: no
    LogRecord, no walk of the handler chain, no lock, no stack walk for a
    ``pathname`` no JSON line shows. Otherwise (a test's capture handler, a
    filter) the record goes the standard way.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    sink = _SINK
    if sink is not None and _only_into(logger, sink):
        sink.put(FORMATTER.line(time.time(), "INFO", logger.name, msg, fields))
        return
    logger.handle(
        logger.makeRecord(logger.name, logging.INFO, "", 0, msg, (), None, extra={"fields": fields})
    )


def _only_into(logger: logging.Logger, sink: logging.Handler) -> bool:
    """Whether an INFO record of ``logger`` would reach ``sink`` and nothing else, unfiltered.

    What :meth:`logging.Logger.handle` and ``callHandlers`` would do: the
    logger's own filters and ``disabled`` flag, then each logger up the
    chain, its handlers, until one does not propagate.
    """
    if logger.filters or logger.disabled:
        return False
    current: logging.Logger | None = logger
    while current is not None:
        handlers = current.handlers
        if handlers:
            return (
                len(handlers) == 1
                and handlers[0] is sink
                and not sink.filters
                and sink.level <= logging.INFO
                and (not current.propagate or current.parent is None)
            )
        if not current.propagate:
            return False
        current = current.parent
    return False


class _Batched(logging.Handler):
    """Formats each line on the caller's thread and buffers it; a writer thread writes batches.

    Every review logs a decision line. A ``write`` and a ``flush`` per line
    were a syscall pair each, and a log consumer that reads slowly (a full
    pipe) would block the event loop. So the loop (or whichever thread logs)
    formats the line and appends it to a buffer under a lock; the writer
    thread, woken by the first line into an empty buffer, waits ``interval``
    for more to gather, takes them all and writes them in one call, which
    releases the GIL. Formatting in the writer instead (as a
    ``QueueListener`` did) made it take the GIL for every line: the loop then
    waited for the interpreter's switch interval, and the webhook's p99 at
    saturation was 1.8 times a bare server's (``bench/webhook.py``). A quiet
    process writes each line at most ``interval`` late; a crash loses at most
    that much of the log (the apiserver's audit log keeps the verdicts).
    """

    interval = 0.05

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending: list[str] = []
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="baseguard-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = FORMATTER.format(record)
        except Exception:  # one bad record must not cost the others
            self.handleError(record)
            return
        self.put(line)

    def put(self, line: str) -> None:
        """Queue one formatted line; the first into an empty buffer wakes the writer."""
        with self._guard:
            self._pending.append(line)
            first = len(self._pending) == 1
        if first:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._closing:
                time.sleep(self.interval)
            with self._guard:
                lines, self._pending = self._pending, []
                self._wake.clear()
            self._write(lines)
            if self._closing:
                return

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed under us: nothing better to do
            pass

    def close(self) -> None:
        """Stop the writer: the lines still buffered are written first."""
        global _SINK
        if _SINK is self:
            _SINK = None
        if self._writer.is_alive():  # closed twice: by unconfigure, then at exit
            self._closing = True
            self._wake.set()
            self._writer.join()
        with self._guard:
            lines, self._pending = self._pending, []
        self._write(lines)  # a line put while the writer stopped
        super().close()


FORMATTER = JsonFormatter()
#: The batched handler :func:`configure` installed, if any (:func:`info` writes into it directly).
_SINK: _Batched | None = None


def configure(
    *, level: str | int = "INFO", stream: TextIO | None = None, batched: bool = False
) -> logging.Handler:
    """Send every log line (ours, aiohttp's) to ``stream`` as JSON; returns the handler.

    Called by ``serve`` and ``run`` at start-up, never at import. With
    ``batched=True`` the writing leaves the caller's thread (the event loop):
    lines are formatted where they are logged and a writer thread writes them
    in batches (:class:`_Batched`). The caller removes the handler again with
    :func:`unconfigure`, which writes what is still buffered (tests run
    ``serve`` several times in one process, and read ``stream`` line by line,
    unbatched).
    """
    global _SINK
    # The JSON lines show none of these; every LogRecord would otherwise look them up.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    target = stream or sys.stderr
    handler: logging.Handler
    if batched:
        handler = _SINK = _Batched(target)
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
