"""The access log's line (``logging_setup.LineLogger``, one per request) is the line the
structlog logger writes for the same event: the same fields in the same order, rendered by the
same processors, through the same handler — and goes through the structlog logger itself
whenever logging is set up otherwise (another root handler, a filter, a level above INFO)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from llm_optimizer_service.logging_setup import LineLogger, configure_logging, get_logger
from llm_optimizer_service.settings import LogSettings

NAME = "llm_optimizer_service.access"
FIELDS = {
    "method": "POST",
    "route": "/api/v1/workloads/{name}/decide",
    "status": 200,
    "duration_ms": 1.234,
}


@pytest.fixture
def json_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LogSettings(json=True))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="r-1", key_id="key-1")
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capsys.readouterr().err
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_line_is_the_structlog_line(
    json_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    LineLogger(NAME).info("request", **FIELDS)
    get_logger(NAME).info("request", **FIELDS)
    fast, reference = _lines(capsys)
    assert fast.pop("timestamp")
    assert reference.pop("timestamp")
    assert list(fast.items()) == list(reference.items())  # same fields, same order
    assert fast == {
        **FIELDS,
        "event": "request",
        "request_id": "r-1",
        "key_id": "key-1",
        "level": "info",
        "logger": NAME,
    }


def test_other_logging_setups_get_the_structlog_path(
    json_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    extra = Keep()
    logging.getLogger().addHandler(extra)
    try:
        LineLogger(NAME).info("request", **FIELDS)
    finally:
        logging.getLogger().removeHandler(extra)
    assert len(seen) == 1  # the added handler saw it: the stdlib path was taken
    assert len(_lines(capsys)) == 1  # and the configured handler wrote it once
    logging.getLogger(NAME).setLevel(logging.WARNING)
    try:
        LineLogger(NAME).info("request", **FIELDS)
    finally:
        logging.getLogger(NAME).setLevel(logging.NOTSET)
    assert _lines(capsys) == []
