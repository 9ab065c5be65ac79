"""edge_bridge/db.py: engines never put bound values (tags, names) into errors or logs."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_bridge.db import transaction
from edge_bridge.models import RfidTag, Student

TAG = "04C0FFEE4711"
FIRST, LAST = "Mathilda", "Quellenhof"


def test_a_database_error_logs_no_tag_or_name(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with transaction(engine) as session:
        session.add(Student(id=1, first_name=FIRST, last_name=LAST))
        session.flush()
        session.add(RfidTag(tag=TAG, student_id=1))
    logger = logging.getLogger("edge_bridge.test_db")

    with caplog.at_level(logging.ERROR), pytest.raises(sa.exc.IntegrityError) as caught:
        try:
            with transaction(engine) as session:  # a second student with the same tag
                session.add(Student(id=2, first_name=FIRST, last_name=LAST))
                session.flush()
                session.add(RfidTag(tag=TAG, student_id=2))
        except sa.exc.IntegrityError:
            logger.exception("Import failed")  # what a caller's log line looks like
            raise

    assert "Import failed" in caplog.text
    assert "IntegrityError" in caplog.text  # the traceback was logged ...
    assert "parameters hidden" in str(caught.value)  # ... without its parameters
    for secret in (TAG, FIRST, LAST):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
