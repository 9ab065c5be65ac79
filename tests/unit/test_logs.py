"""Tests for edge_bridge/logs.py: no token, password or query string reaches a log line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from edge_bridge.logs import RedactingFilter, configure_logging, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu"
ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'  # uvicorn.access's message format


def access_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        ACCESS_FORMAT,
        ("127.0.0.1:50000", "GET", path, "1.1", 200),
        None,
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:5 - "GET /api/sse/events?token=abc&last_event_id=4 HTTP/1.1" 200',
            '127.0.0.1:5 - "GET /api/sse/events?<redacted> HTTP/1.1" 200',
        ),
        (f"header Authorization: Bearer {JWT}", "header Authorization: <redacted> <redacted>"),
        (f"Bearer {JWT} was sent", "Bearer <redacted> was sent"),
        (f"a token {JWT} in free text", "a token <jwt> in free text"),
        ("login password=hunter2 email=x", "login password=<redacted> email=x"),
        ("secret: s3cr3t, next", "secret: <redacted>, next"),
        (
            "SSE client connected user_id=1 total_clients=3",
            "SSE client connected user_id=1 total_clients=3",
        ),
    ],
)
def test_redact_removes_query_strings_tokens_and_passwords(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_rewrites_an_access_log_record_with_a_query_token() -> None:
    record = access_record(f"/api/sse/events?token={JWT}")

    kept = RedactingFilter().filter(record)

    assert kept is True
    assert record.getMessage() == '127.0.0.1:50000 - "GET /api/sse/events?<redacted> HTTP/1.1" 200'


def test_the_filter_redacts_a_traceback_that_mentions_a_token() -> None:
    try:
        msg = f"could not parse {JWT}"
        raise ValueError(msg)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    RedactingFilter().filter(record)

    assert record.exc_text is not None
    assert JWT not in record.exc_text
    assert "could not parse <jwt>" in record.exc_text


def test_the_filter_lets_a_record_with_bad_arguments_through_without_raising() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s and %s", ("one",), None)

    assert RedactingFilter().filter(record) is True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging's changes to the global logging tree."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic")
    saved = {
        name: (
            logging.getLogger(name).handlers[:],
            logging.getLogger(name).propagate,
            logging.getLogger(name).level,
        )
        for name in names
    }
    yield
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_uvicorns_access_log_goes_through_the_redacting_handler(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # idempotent: still one handler of ours

    logging.getLogger("uvicorn.access").info(
        ACCESS_FORMAT, "127.0.0.1:50000", "GET", f"/api/sse/events?token={JWT}", "1.1", 200
    )

    err = capsys.readouterr().err
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "edge-bridge"]
    assert len(ours) == 1
    assert 'uvicorn.access: 127.0.0.1:50000 - "GET /api/sse/events?<redacted> HTTP/1.1" 200' in err
    assert JWT not in err
    assert logging.getLogger("uvicorn.access").handlers == []


def test_every_line_ends_with_the_instance_id(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", instance_id="bridge-a:8000")

    logging.getLogger("edge_bridge.ingest").warning("Scan rejected device_id=%s", "r1")

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("edge_bridge.ingest: Scan rejected device_id=r1 instance_id=bridge-a:8000")
