"""The event stream under load and at its limits (issue 11, streams): real broker and server.

A burst of scans goes through the broker like real readers' (tests/support/scanstream.py).
Each planned scan toggles one student in the room of their own reader, so every scan makes
exactly one event; the event log is the ground truth for what each stream must receive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from edge_bridge.models import EventRecord
from tests.factories import school_document
from tests.integration.conftest import System
from tests.support.raw_sse import RawSseClient
from tests.support.scanstream import ScanStream, SentScan
from tests.support.sse import SseStream

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, NOWAK = 1, 2, 3
SCHMIDT_TAG = "A1B2C3D4"
HAUSAUFGABEN, FUSSBALL = 124, 123  # in Raum 101 (reader-101) and the Turnhalle
EVENTS = "/api/sse/events"
WAIT_SECONDS = 10.0
BURST_SCANS = 1200
BURST_RATE_PER_SECOND = 150
STUDENT_TAGS = [student["tag"] for student in school_document()["students"]]


def address_of(system: System) -> tuple[str, int]:
    return "127.0.0.1", system.server.port


def check_in(http: httpx.Client, system: System, student_id: int, group_id: int) -> None:
    supervisor = {HAUSAUFGABEN: SCHMIDT, FUSSBALL: YILMAZ}[group_id]
    response = http.post(
        f"/api/active/groups/{group_id}/visits",
        json={"student_id": student_id},
        headers=system.auth(supervisor),
    )
    assert response.status_code == 201, response.text


def event_ids_for(system: System, groups: set[int], after_id: int) -> list[int]:
    """Ids of the logged events routed to `groups` after `after_id`, in order."""
    with Session(system.engine) as session:
        return list(
            session.exec(
                select(EventRecord.id)
                .where(
                    col(EventRecord.id) > after_id,
                    col(EventRecord.route_active_group_id).in_(groups),
                )
                .order_by(col(EventRecord.id))
            ).all()
        )


def read_ids(stream: SseStream, count: int, *, timeout: float) -> list[int]:
    """The ids of the next `count` event frames, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    return [
        int(stream.next_event(timeout=max(0.01, deadline - time.monotonic())).id or 0)
        for _ in range(count)
    ]


def toggling_burst(system: System, count: int) -> ScanStream:
    """`count` scans, students 1-30 at Raum 101 and 31-60 at the Turnhalle: one event each."""
    readers = {device: system.reader(device) for device in ("reader-101", "reader-turnhalle")}
    stream = ScanStream(readers, STUDENT_TAGS, count=0)
    stream.scans = [
        SentScan(
            "reader-101" if n % 60 < 30 else "reader-turnhalle",
            f"burst-{n}",
            STUDENT_TAGS[n % 60],
            datetime.now(UTC),
        )
        for n in range(count)
    ]
    return stream


def publish_paced(stream: ScanStream, *, per_second: int) -> float:
    """Publish every planned scan at about `per_second`; returns the rate achieved."""
    started = time.monotonic()
    step = per_second // 10
    for start in range(0, len(stream.scans), step):
        stream.publish(start, start + step)
        time.sleep(max(0.0, started + (start + step) / per_second - time.monotonic()))
    return len(stream.scans) / (time.monotonic() - started)


def supervising_both_groups(system: System) -> None:
    """Schmidt (Hausaufgaben) scans her tag at the Turnhalle: she supervises both groups now."""
    feedback = system.reader("reader-turnhalle").scan(SCHMIDT_TAG)
    assert feedback["result"] == "supervisor_authenticated", feedback


def newest_event_id(system: System) -> int:
    with Session(system.engine) as session:
        return session.exec(select(func.max(EventRecord.id))).one() or 0


def test_a_stream_read_at_full_speed_gets_a_whole_burst_in_order_and_a_stalled_one_replays_it(
    make_system: Callable[..., System],
) -> None:
    # Arrange: one supervisor on two groups, one stream read at full speed, one that stalls.
    system = make_system(scan_debounce_seconds=0, env={"SSE_SEND_TIMEOUT_SECONDS": "3"})
    supervising_both_groups(system)
    fast = system.stream(SCHMIDT)
    connected = fast.next_event()
    stalled = RawSseClient(
        *address_of(system),
        EVENTS,
        headers=system.auth(SCHMIDT),
        receive_buffer_bytes=2048,
        max_segment_bytes=536,
    )
    stalled.read_until(b"event: connected", WAIT_SECONDS)  # and from now on it reads nothing
    burst = toggling_burst(system, BURST_SCANS)
    start_id = int(connected.id or 0)

    # Act: the burst through the broker, then one more check-in as a sentinel.
    rate = publish_paced(burst, per_second=BURST_RATE_PER_SECOND)
    burst.wait_answered(BURST_SCANS, timeout=120)
    expected = event_ids_for(system, {HAUSAUFGABEN, FUSSBALL}, start_id)
    received = read_ids(fast, len(expected), timeout=60)
    stalled.read_until_end(WAIT_SECONDS)
    seen_by_stalled = stalled.event_ids()  # the connected frame's id, then the events it got
    check_in(system.http(), system, 401, HAUSAUFGABEN)
    sentinel = read_ids(fast, 1, timeout=WAIT_SECONDS)
    resumed = system.stream(SCHMIDT, headers={"Last-Event-ID": str(seen_by_stalled[-1])})
    resumed_connected = resumed.next_event()
    missed = len(expected) - (len(seen_by_stalled) - 1) + 1  # and the sentinel
    replayed = read_ids(resumed, missed, timeout=60)
    print(
        f"burst of {len(expected)} events at {rate:.0f} scans/s; stalled client saw "
        f"{len(seen_by_stalled) - 1} before it was closed"
    )

    # Assert: the fast stream got everything, in order, and stayed open.
    log = system.server.log_text()
    assert connected.json["subscribed_groups"] == [str(FUSSBALL), str(HAUSAUFGABEN)]
    assert rate > 100
    assert len(expected) == BURST_SCANS  # one event per scan
    assert received == expected
    assert sentinel[0] > expected[-1]
    assert not fast.ended.is_set()
    assert "SSE client closed slow=True" not in log
    # The stalled one was closed because it stopped taking bytes, and replays exactly once.
    assert "SSE client closed reason=send_timeout" in log
    assert seen_by_stalled[0] == start_id
    assert seen_by_stalled[1:] == expected[: len(seen_by_stalled) - 1]
    assert len(seen_by_stalled) - 1 < len(expected)
    assert resumed_connected.event == "connected"
    assert seen_by_stalled[1:] + replayed == [*expected, *sentinel]


def test_an_id_older_than_the_retention_gets_resync_as_soon_as_it_is_older(
    make_system: Callable[..., System],
) -> None:
    system = make_system(env={"EVENT_RETENTION_SECONDS": "2"})
    http = system.http()
    watcher = system.connected_stream(SCHMIDT)
    check_in(http, system, 401, HAUSAUFGABEN)
    missed = watcher.next_event()
    made = time.monotonic()
    while time.monotonic() < made + 2.5:  # the event grows older than the retention
        time.sleep(0.1)

    late = system.stream(SCHMIDT, headers={"Last-Event-ID": str(int(missed.id or 0) - 1)})
    frames = [late.next_event(), late.next_event()]

    assert [f.event for f in frames] == ["connected", "resync"]
    assert int(frames[1].id or 0) >= int(missed.id or 0)  # resume after everything so far


def test_a_last_event_id_above_the_newest_gets_one_resync_then_live_events(
    system: System,
) -> None:
    http = system.http()
    check_in(http, system, 401, HAUSAUFGABEN)
    newest = newest_event_id(system)

    ahead = system.stream(SCHMIDT, headers={"Last-Event-ID": str(newest + 100)})
    frames = [ahead.next_event(), ahead.next_event()]
    check_in(http, system, 402, HAUSAUFGABEN)
    live = ahead.next_event()

    assert [f.event for f in frames] == ["connected", "resync"]
    assert frames[1].id == str(newest)
    assert live.event == "student_checkin"
    assert int(live.id or 0) > newest
    assert "source=resync reason=ahead" in system.server.log_text()


def test_a_staff_members_stream_beyond_the_limit_closes_their_oldest(
    make_system: Callable[..., System],
) -> None:
    system = make_system(env={"SSE_MAX_STREAMS_PER_STAFF": "2"})
    oldest = system.connected_stream(SCHMIDT)
    second = system.connected_stream(SCHMIDT)
    colleague = system.connected_stream(NOWAK)

    newest = system.connected_stream(SCHMIDT)
    check_in(system.http(), system, 401, HAUSAUFGABEN)  # Schmidt's group, Nowak's home group

    with pytest.raises(EOFError):
        oldest.next_event(timeout=WAIT_SECONDS)
    assert [s.next_event().json["data"]["student_id"] for s in (second, newest, colleague)] == [
        "401"
    ] * 3
    assert "SSE client closed reason=too_many_streams user_id=1" in system.server.log_text()


def test_a_stream_beyond_the_servers_limit_is_refused_with_503_before_it_starts(
    make_system: Callable[..., System],
) -> None:
    system = make_system(env={"SSE_MAX_STREAMS": "2"})
    first = system.connected_stream(SCHMIDT)
    system.connected_stream(NOWAK)

    refused = system.stream(YILMAZ)
    first.close()
    deadline = time.monotonic() + WAIT_SECONDS
    while (again := system.stream(YILMAZ)).status_code != 200:
        assert time.monotonic() < deadline, "the freed slot was never reusable"
        time.sleep(0.05)

    assert refused.status_code == 503
    assert refused.headers is not None
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["content-type"] == "application/json"
    assert (
        "Too many open event streams" in httpx.Response(503, content=refused.body).json()["detail"]
    )
    assert again.next_event().event == "connected"


@pytest.mark.parametrize(("missed", "first_event"), [(3, "student_checkin"), (4, "resync")])
def test_a_replay_of_more_than_the_replay_limit_is_one_resync(
    make_system: Callable[..., System], missed: int, first_event: str
) -> None:
    system = make_system(env={"SSE_REPLAY_LIMIT": "3"})
    http = system.http()
    for student_id in range(401, 401 + missed):
        check_in(http, system, student_id, HAUSAUFGABEN)
    ids = event_ids_for(system, {HAUSAUFGABEN}, 0)

    resumed = system.stream(SCHMIDT, headers={"Last-Event-ID": str(ids[-missed] - 1)})
    frames = [resumed.next_event(), resumed.next_event()]

    assert [f.event for f in frames] == ["connected", first_event]
