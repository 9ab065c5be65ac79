"""Rules the database enforces itself, bypassing every service function."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from edge_bridge.models import ActiveGroup, RfidTag, Visit

NOW = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)


def test_a_second_open_visit_for_a_student_is_refused_by_the_database(
    school_engine: Engine,
) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW))
        session.commit()
        session.add(Visit(student_id=401, active_group_id=124, entry_time=NOW))

        with pytest.raises(IntegrityError):
            session.commit()


def test_closed_visits_do_not_count_against_the_single_open_visit(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW, exit_time=NOW))
        session.add(Visit(student_id=401, active_group_id=123, entry_time=NOW, exit_time=NOW))
        session.add(Visit(student_id=401, active_group_id=124, entry_time=NOW))
        session.commit()


def test_a_room_cannot_have_two_running_groups(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(ActiveGroup(name="Malen", room_id=2, started_at=NOW))

        with pytest.raises(IntegrityError):
            session.commit()


def test_a_tag_cannot_belong_to_both_staff_and_student(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(RfidTag(tag="0BADC0DE", staff_id=4, student_id=401))

        with pytest.raises(IntegrityError):
            session.commit()


def test_times_come_back_as_aware_utc(school_engine: Engine) -> None:
    with Session(school_engine) as session:
        session.add(Visit(student_id=402, active_group_id=123, entry_time=NOW))
        session.commit()
    with Session(school_engine) as session:
        visit = session.get(Visit, 1)
        assert visit is not None
        assert visit.entry_time == NOW
        assert visit.entry_time.tzinfo is not None
