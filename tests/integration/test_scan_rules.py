"""Every row of the CONTRACT §3 table end to end: scan → feedback, visit row, SSE event."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, func, select

from edge_bridge.models import EventRecord, ProcessedScan, Visit
from tests.factories import VISIT_EVENT_TYPES, open_groups
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

MAX = "04A1B20000"  # student 401 Max Muster, home group 7
STAFF_NOWAK = "A1B2C3D6"  # staff 3: leads home group 7, supervises nothing at the start


def _later(seconds: float) -> datetime:
    """A read time past the debounce window but within the accepted future skew."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_an_unknown_tag_has_no_effect(system: System) -> None:
    feedback = system.reader("reader-101").scan("DEADBEEF00")

    assert feedback["result"] == "unknown_tag"
    assert feedback["message"] == "Karte unbekannt"


def test_a_room_without_an_active_group_answers_no_active_group(system: System) -> None:
    feedback = system.reader("reader-mensa").scan(MAX)

    assert feedback["result"] == "no_active_group"
    assert open_groups(system.engine, 401) == []


def test_check_in_sends_student_checkin_to_the_supervisor(system: System) -> None:
    stream = system.connected_stream(1)  # Frau Schmidt supervises group 124 in Raum 101

    feedback = system.reader("reader-101").scan(MAX)
    event = stream.next_event()

    assert (feedback["result"], feedback["message"]) == ("checked_in", "Hallo Max!")
    assert feedback["student_name"] == "Max Muster"
    assert event.event == "student_checkin"
    assert event.json["active_group_id"] == "124"
    assert event.json["data"]["student_id"] == "401"
    assert event.json["data"]["source"] == "rfid"
    assert int(event.id or 0) > 0
    assert open_groups(system.engine, 401) == [124]


def test_a_second_scan_in_the_same_room_checks_out(system: System) -> None:
    reader = system.reader("reader-101")
    reader.scan(MAX)
    stream = system.connected_stream(1)

    feedback = reader.scan(MAX, ts=_later(4))
    event = stream.next_event()

    assert (feedback["result"], feedback["message"]) == ("checked_out", "Tschüss Max!")
    assert event.event == "student_checkout"
    assert event.json["data"]["student_id"] == "401"
    assert open_groups(system.engine, 401) == []


def test_a_scan_in_another_room_transfers_with_events_to_both_groups(system: System) -> None:
    system.reader("reader-101").scan(MAX)
    old_room = system.connected_stream(1)  # supervises 124 (Raum 101)
    new_room = system.connected_stream(2)  # supervises 123 (Turnhalle)

    feedback = system.reader("reader-turnhalle").scan(MAX)

    assert feedback["result"] == "transferred"
    assert feedback["message"] == "Gewechselt von Raum 101 zu Turnhalle!"
    checkout = old_room.next_event()
    checkin = new_room.next_event()
    assert (checkout.event, checkout.json["active_group_id"]) == ("student_checkout", "124")
    assert (checkin.event, checkin.json["active_group_id"]) == ("student_checkin", "123")
    assert open_groups(system.engine, 401) == [123]


def test_a_second_tap_within_debounce_is_reported_as_duplicate(system: System) -> None:
    reader = system.reader("reader-101")

    first = reader.scan(MAX)
    second = reader.scan(MAX)

    assert (first["result"], second["result"]) == ("checked_in", "duplicate")
    assert open_groups(system.engine, 401) == [124]


def test_a_staff_tag_makes_a_supervisor_whose_open_stream_gains_the_group(
    system: System,
) -> None:
    stream = system.stream(3)
    connected = stream.next_event()
    assert connected.json["subscribed_groups"] == []

    feedback = system.reader("reader-101").scan(STAFF_NOWAK)
    update = stream.next_event()
    system.reader("reader-101").scan("04A1B2001E")  # student 431, another home group
    checkin = stream.next_event()

    assert feedback["result"] == "supervisor_authenticated"
    assert update.event == "activity_update"
    assert update.json["active_group_id"] == "124"
    assert "3" in update.json["data"]["supervisor_ids"]
    assert (checkin.event, checkin.json["data"]["student_id"]) == ("student_checkin", "431")


def test_a_redelivered_scan_has_no_second_effect_and_repeats_its_feedback(
    system: System,
) -> None:
    reader = system.reader("reader-101")

    first = reader.scan(MAX, scan_id="scan-1")
    again = reader.scan(MAX, scan_id="scan-1", ts=_later(4))

    assert first == again
    assert open_groups(system.engine, 401) == [124]
    with Session(system.engine) as session:
        assert (
            session.exec(
                select(func.count())
                .select_from(EventRecord)
                .where(col(EventRecord.type).in_(VISIT_EVENT_TYPES))
            ).one()
            == 1
        )
        assert session.exec(select(func.count()).select_from(ProcessedScan)).one() == 1


def test_two_readers_scanning_one_tag_at_once_leave_one_open_visit(system: System) -> None:
    readers = [system.reader("reader-101"), system.reader("reader-turnhalle")]
    results: list[str] = []
    barrier = threading.Barrier(2)

    def tap(index: int) -> None:
        barrier.wait(5)
        results.append(readers[index].scan(MAX)["result"])

    threads = [threading.Thread(target=tap, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    assert sorted(results) in (["checked_in", "transferred"],)
    assert len(open_groups(system.engine, 401)) == 1


def test_a_malformed_payload_from_a_known_reader_is_rejected_and_changes_nothing(
    system: System,
) -> None:
    reader = system.reader("reader-101")

    reader.publish_raw(b'{"scan_id": "bad-1", "tag": "xyz", "ts": "2026-11-26T13:30:00Z"}')
    feedback = reader.wait_feedback("bad-1")

    assert feedback["result"] == "rejected"
    with Session(system.engine) as session:
        assert session.exec(select(func.count()).select_from(ProcessedScan)).one() == 0
    assert reader.scan(MAX)["result"] == "checked_in"


def test_an_inactive_reader_is_rejected(system: System) -> None:
    feedback = system.reader("reader-spare").scan(MAX)

    assert feedback["result"] == "rejected"
    assert open_groups(system.engine, 401) == []


def test_a_scan_time_far_in_the_past_is_replaced_by_the_server_time(system: System) -> None:
    system.reader("reader-101").scan(MAX, ts=datetime(2020, 1, 1, tzinfo=UTC))

    with Session(system.engine) as session:
        visit = session.exec(select(Visit)).one()
    assert visit.entry_time > datetime.now(UTC) - timedelta(minutes=1)
