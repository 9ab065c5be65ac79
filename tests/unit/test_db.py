"""edge_bridge/db.py: engines never put bound values (tags, names) into errors or logs, and a
PostgreSQL connection attempt gives up in seconds."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.pq import DiagnosticField
from sqlalchemy.engine import Engine

from edge_bridge.db import _postgres_error_text, is_postgres, make_engine, transaction
from edge_bridge.models import RfidTag, Student
from edge_bridge.tuning import POSTGRES_CONNECT_TIMEOUT_SECONDS

TAG = "04C0FFEE4711"
FIRST, LAST = "Mathilda", "Quellenhof"
DUPLICATE_KEY = 'duplicate key value violates unique constraint "rfid_tag_pkey"'
UNREACHABLE_POSTGRES = "postgresql+psycopg://edge:secret@192.0.2.1:5432/edge"


class ConnectAttempted(Exception):
    """Raised by the test's `do_connect` listener instead of opening a socket."""


def test_a_database_error_logs_no_tag_or_name(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with transaction(engine) as session:
        session.add(Student(id=1, school_id=1, first_name=FIRST, last_name=LAST))
        session.flush()
        session.add(RfidTag(school_id=1, tag=TAG, student_id=1))
    logger = logging.getLogger("edge_bridge.test_db")

    with caplog.at_level(logging.ERROR), pytest.raises(sa.exc.IntegrityError) as caught:
        try:
            with transaction(engine) as session:  # a second student with the same tag
                session.add(Student(id=2, school_id=1, first_name=FIRST, last_name=LAST))
                session.flush()
                session.add(RfidTag(school_id=1, tag=TAG, student_id=2))
        except sa.exc.IntegrityError:
            logger.exception("Import failed")  # what a caller's log line looks like
            raise

    assert "Import failed" in caplog.text
    assert "IntegrityError" in caplog.text  # the traceback was logged ...
    assert "parameters hidden" in str(caught.value)  # ... without its parameters
    for secret in (TAG, FIRST, LAST):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
        assert secret not in str(caught.value.orig)


def test_a_cleaned_postgres_error_keeps_its_class_sqlstate_and_constraint(
    engine: Engine,
) -> None:
    if not is_postgres(engine):
        pytest.skip("PostgreSQL only: needs a server's error report")
    with transaction(engine) as session:
        session.add(Student(id=1, school_id=1, first_name=FIRST, last_name=LAST))
        session.flush()
        session.add(RfidTag(school_id=1, tag=TAG, student_id=1))

    with pytest.raises(sa.exc.IntegrityError) as caught, transaction(engine) as session:
        session.add(RfidTag(school_id=1, tag=TAG, student_id=1))

    assert isinstance(caught.value.orig, psycopg.errors.UniqueViolation)
    assert caught.value.orig.sqlstate == "23505"
    assert "sqlstate=23505" in str(caught.value)
    assert "constraint=rfid_tag_pkey" in str(caught.value)
    assert "DETAIL" not in str(caught.value)
    assert TAG not in str(caught.value)


def test_a_postgres_error_text_leaves_out_detail_context_and_quoted_input() -> None:
    unique = psycopg.errors.UniqueViolation(
        "duplicate key …\nDETAIL:  Key (tag)=(04C0FFEE4711) already exists.",
        info={
            DiagnosticField.SQLSTATE: b"23505",
            DiagnosticField.MESSAGE_PRIMARY: DUPLICATE_KEY.encode(),
            DiagnosticField.MESSAGE_DETAIL: b"Key (tag)=(04C0FFEE4711) already exists.",
            DiagnosticField.CONTEXT: b"SQL statement with 04C0FFEE4711",
            DiagnosticField.CONSTRAINT_NAME: b"rfid_tag_pkey",
        },
    )
    bad_input = psycopg.errors.InvalidTextRepresentation(
        "invalid input …",
        info={
            DiagnosticField.SQLSTATE: b"22P02",
            DiagnosticField.MESSAGE_PRIMARY: b'invalid input syntax for type integer: "Mathilda"',
        },
    )

    unique_text = _postgres_error_text(unique)
    bad_input_text = _postgres_error_text(bad_input)

    assert unique_text == f"sqlstate=23505 {DUPLICATE_KEY} constraint=rfid_tag_pkey"
    assert bad_input_text == "sqlstate=22P02 invalid input syntax for type integer"


def _attempted_connect_params(engine: Engine) -> dict[str, Any]:
    """The keyword arguments the engine would give psycopg.connect (no socket is opened)."""
    seen: dict[str, Any] = {}

    def refuse(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise ConnectAttempted

    sa.event.listen(engine, "do_connect", refuse)
    with pytest.raises(ConnectAttempted):
        engine.connect()
    engine.dispose()
    return seen


def test_a_postgres_engine_gives_up_connecting_after_the_connect_timeout() -> None:
    engine = make_engine(UNREACHABLE_POSTGRES)

    params = _attempted_connect_params(engine)

    assert params["connect_timeout"] == POSTGRES_CONNECT_TIMEOUT_SECONDS


def test_connect_args_given_by_the_caller_replace_the_default_timeout() -> None:
    engine = make_engine(UNREACHABLE_POSTGRES, connect_args={"application_name": "edge"})

    params = _attempted_connect_params(engine)

    assert params["application_name"] == "edge"
    assert "connect_timeout" not in params
