"""JSON-lines logs: one decision line per review, and never a credential."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import logging.handlers
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.webhook import StartWebhook, fixture

from controller import logs
from controller.registry.config import Credentials


@pytest.fixture
def lines() -> Any:
    stream = io.StringIO()
    handler = logs.configure(level="INFO", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.unconfigure(handler)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        (
            "GET https://bob:hunter2@registry.example.com/v2/",
            "GET https://***:***@registry.example.com/v2/",
        ),
        ("token=abc123&scope=repository:x:pull", "token=***&scope=repository:x:pull"),
        ("the token endpoint answered 401", "the token endpoint answered 401"),
        ("image python@sha256:abcd", "image python@sha256:abcd"),
    ],
    ids=["bearer", "json-password", "userinfo", "query-token", "prose", "digest"],
)
def test_credentials_are_masked(text: str, shown: str) -> None:
    assert logs.redact(text) == shown


def test_a_record_is_one_json_line_with_its_fields(lines: Any) -> None:
    log = logging.getLogger("baseguard.test")
    log.info("hello %s", "world", extra={"fields": {"uid": "u-1", "password": "hunter2"}})
    try:
        raise ValueError("Authorization: Basic dXNlcjpwYXNz")
    except ValueError:
        log.exception("failed")
    hello, failed = lines()
    assert hello["msg"] == "hello world" and hello["level"] == "info" and hello["uid"] == "u-1"
    assert hello["password"] == "***"
    assert hello["ts"].endswith("+00:00")
    assert "ValueError: Authorization: Basic ***" in failed["exc"]
    assert "dXNlcjpwYXNz" not in json.dumps(failed)


async def test_each_review_logs_one_decision(start_webhook: StartWebhook, lines: Any) -> None:
    hook = await start_webhook()
    await hook.response("pod-create-dryrun.json")
    await hook.response("deployment-update-scale.json")
    decisions = [line for line in lines() if line["msg"] == "decision"]
    assert len(decisions) == 2
    pod, scale = decisions
    assert {
        k: pod[k] for k in ("uid", "kind", "namespace", "name", "operation", "verdict", "dry_run")
    } == {
        "uid": fixture("pod-create-dryrun.json")["request"]["uid"],
        "kind": "Pod",
        "namespace": "prod",
        "name": "web",
        "operation": "CREATE",
        "verdict": "deny",
        "dry_run": True,
    }
    assert pod["user"] == "kubernetes-admin"
    full = next(v for v in pod["violations"] if v["rule"] == "unpinned")
    assert len(full["message"]) > 120  # the warning was cut; the log keeps it whole
    assert (scale["verdict"], scale["rules"], scale["operation"]) == ("allow", [], "UPDATE")
    assert "violations" not in scale


@pytest.mark.parametrize(
    ("created", "stamp"),
    [(0.0, "1970-01-01T00:00:00.000+00:00"), (1748779200.9999, "2025-06-01T12:00:00.999+00:00"),
     (1748779201.5, "2025-06-01T12:00:01.500+00:00")],
    ids=["epoch", "end-of-second", "next-second"],
)  # fmt: skip
def test_timestamps_are_utc_with_milliseconds(created: float, stamp: str) -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("baseguard", logging.INFO, "", 0, "m", (), None)
    for when in (created, created):  # the second reuses the second's text
        record.created = when
        assert json.loads(formatter.format(record))["ts"] == stamp


def test_objects_in_fields_are_written_as_their_str_never_field_by_field(lines: Any) -> None:
    """A dataclass's repr hides its secrets; writing its fields would not."""
    log = logging.getLogger("baseguard.test")
    creds = Credentials("bob", "hunter2")
    logs.info(log, "odd fields", {"creds": creds, 3: "three", "when": dt.date(2025, 6, 1)})
    (line,) = lines()
    assert line["creds"] == str(creds) and "hunter2" not in json.dumps(line)
    assert (line["3"], line["when"], line["msg"]) == ("three", "2025-06-01", "odd fields")


def test_every_secret_key_holds_a_hint_word() -> None:
    """What lets a line without a hint word skip scrubbing field by field."""
    assert all(any(hint in key for hint in logs._HINTS) for key in logs._SECRET_KEYS)


_TEXT = st.one_of(
    st.lists(
        st.sampled_from(["a", "Auth", "PASS", "toKen", "sec", "ret", ":", "=", "/", "@", "://",
                         " ", "bearer ", '"', "\\", "é", "\u212a", "x"]),
        max_size=8,
    ).map("".join),
    st.sampled_from(["https://bob:hunter2@example.com/v2/", "token=abc", "password: x"]),
)  # fmt: skip
_KEYS = st.one_of(
    _TEXT, st.sampled_from(["msg", "ts", "Password", "token", "uid", "passwd"]), st.integers(0, 3)
)
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT,
              st.just(Credentials("bob", "hunter2")), st.just(dt.date(2025, 6, 1))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner), st.frozensets(st.integers(), max_size=2),
        st.dictionaries(_KEYS, inner, max_size=3),
        st.dictionaries(_TEXT, inner, max_size=2).map(MappingProxyType),
    ),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(_KEYS, _VALUES, max_size=5))
@example(fields={"registry": "https://bob:hunter2@example.com/v2/"})
@example(fields={"msg": "not the message", "uid": "u-1"})
@example(fields={"Password": "hunter2", "nested": {"TOKEN": 7}})
@example(fields={3: "three", "3": "another three"})
@example(fields={"labels": MappingProxyType({"a": "b"}), "ids": frozenset({1})})
def test_a_line_written_at_once_is_the_line_scrubbed_field_by_field(fields: dict[Any, Any]) -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("baseguard.webhook", logging.INFO, "", 0, "decision", (), None)
    record.fields = fields
    base = {
        "ts": formatter._timestamp(record.created),
        "level": "info",
        "logger": "baseguard.webhook",
        "msg": "decision",
    }
    assert formatter.format(record) == formatter.scrubbed(base, fields)


class _Writes(io.StringIO):
    """A stream that counts its ``write`` calls."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_batched_lines_keep_their_order_and_none_is_lost() -> None:
    """``serve``/``run`` log through a writer thread; nothing buffered is lost on unconfigure."""
    stream = _Writes()
    handler = logs.configure(level="INFO", stream=stream, batched=True)
    log = logging.getLogger("baseguard.test")
    try:
        for i in range(500):
            logs.info(log, "decision", {"uid": f"u-{i}", "token": "hunter2"})
            if i == 250:
                log.warning("between", extra={"fields": {"password": "hunter2"}})
        log.warning("odd", extra={"fields": {"password": "hunter2"}})
    finally:
        logs.unconfigure(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("uid") for line in lines[:251]] == [f"u-{i}" for i in range(251)]
    assert lines[251]["msg"] == "between" and lines[251]["level"] == "warning"
    assert [line["uid"] for line in lines[252:-1]] == [f"u-{i}" for i in range(251, 500)]
    assert lines[-1]["msg"] == "odd" and lines[-1]["level"] == "warning"
    assert "hunter2" not in stream.getvalue()
    assert stream.writes < 20  # in batches, not a write per line


def test_a_decision_line_into_the_batched_log_makes_no_log_record() -> None:
    """The decision line of every review is formatted and buffered directly: no LogRecord.

    Making a record and walking the handler chain was a fifth of what the log
    cost per review (``bench/webhook.py`` at INFO).
    """
    made = 0
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        nonlocal made
        made += 1
        return factory(*args, **kwargs)

    root = logging.getLogger()
    others = root.handlers[:]  # pytest's capture handlers: as in `serve`, the log is the one
    root.handlers.clear()
    stream = io.StringIO()
    handler = logs.configure(level="INFO", stream=stream, batched=True)
    logging.setLogRecordFactory(counting)
    try:
        for i in range(100):
            logs.info(logging.getLogger("baseguard.webhook"), "decision", {"uid": f"u-{i}"})
    finally:
        logging.setLogRecordFactory(factory)
        logs.unconfigure(handler)
        root.handlers[:] = others
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert made == 0
    assert [line["uid"] for line in lines] == [f"u-{i}" for i in range(100)]
    assert lines[0]["logger"] == "baseguard.webhook" and lines[0]["level"] == "info"


def test_another_handler_or_a_filter_still_sees_the_decision_line() -> None:
    """The direct path is taken only when the batched log is the line's one destination."""
    stream = io.StringIO()
    handler = logs.configure(level="INFO", stream=stream, batched=True)
    seen: list[str] = []
    capture = logging.Handler()
    capture.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("baseguard.webhook")
    try:
        log.addHandler(capture)
        logs.info(log, "decision", {"uid": "one"})
        log.removeHandler(capture)
        log.addFilter(lambda record: False)
        logs.info(log, "filtered", {"uid": "two"})
    finally:
        log.filters.clear()
        logs.unconfigure(handler)
    assert seen == ["decision"]
    assert [json.loads(line)["uid"] for line in stream.getvalue().splitlines()] == ["one"]
