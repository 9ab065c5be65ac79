"""`GET /api/sse/events` end to end (CONTRACT §5): real uvicorn, real mosquitto, real database.

Events are made through the REST API (manual check-in/out as the supervisor). Where a test
claims that something does NOT arrive, it sends a sentinel event afterwards: event ids
increase in commit order, so anything unwanted would have arrived before the sentinel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from edge_bridge.config import MIN_SSE_CLIENT_BUFFER_BYTES
from edge_bridge.eventlog import EventLog
from edge_bridge.events import ALLOWED_DATA_KEYS
from edge_bridge.models import EventRecord, Student
from tests.integration.conftest import System
from tests.support.raw_sse import RawSseClient
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.integration

SCHMIDT, YILMAZ, NOWAK, ADMIN = 1, 2, 3, 4  # supervise 124 / 123 + lead home group 8 / lead 7
HAUSAUFGABEN, FUSSBALL = 124, 123  # active groups of Schmidt and Yilmaz
SUPERVISOR_OF = {HAUSAUFGABEN: SCHMIDT, FUSSBALL: YILMAZ}
WAIT_SECONDS = 10.0
EVENTS = "/api/sse/events"
MAX_SLOW_EVENTS = 3000  # bound; the slow client is closed after a few hundred
OPEN_STREAMS = 1000  # the number; ~5-10 s to open on a busy 2-core box
OPEN_WAIT_SECONDS = 60.0


def address_of(system: System) -> tuple[str, int]:
    return "127.0.0.1", system.server.port


def check_in(http: httpx.Client, system: System, student_id: int, group_id: int) -> None:
    """Manual check-in by the group's supervisor: one `student_checkin` (plus a transfer's)."""
    response = http.post(
        f"/api/active/groups/{group_id}/visits",
        json={"student_id": student_id},
        headers=system.auth(SUPERVISOR_OF[group_id]),
    )
    assert response.status_code == 201, response.text


def check_out(http: httpx.Client, system: System, student_id: int, group_id: int) -> None:
    response = http.post(
        f"/api/active/groups/{group_id}/visits/{student_id}/checkout",
        headers=system.auth(SUPERVISOR_OF[group_id]),
    )
    assert response.status_code == 200, response.text


def describe(frame: Frame) -> tuple[str | None, str, str]:
    """(type, active group, student) of an event frame, for comparing sequences."""
    envelope = frame.json
    return frame.event, envelope["active_group_id"], envelope["data"]["student_id"]


def events_until(stream: SseStream, student_id: int) -> list[Frame]:
    """Every event frame up to and including the first one about `student_id`."""
    frames: list[Frame] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while not frames or frames[-1].json["data"].get("student_id") != str(student_id):
        frames.append(stream.next_event(timeout=max(0.01, deadline - time.monotonic())))
    return frames


def newest_event_id(system: System) -> int:
    with Session(system.engine) as session:
        return session.exec(select(func.max(EventRecord.id))).one() or 0


def checkin_ids(system: System) -> list[int]:
    """The ids of the logged `student_checkin` events, in order."""
    with Session(system.engine) as session:
        return list(
            session.exec(
                select(EventRecord.id)
                .where(EventRecord.type == "student_checkin")
                .order_by(col(EventRecord.id))
            ).all()
        )


def sse_stats(http: httpx.Client, system: System) -> dict[str, object]:
    response = http.get("/api/sse/stats", headers=system.auth(ADMIN, admin=True))
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_stats(
    http: httpx.Client, system: System, total_clients: int, *, wait_seconds: float = WAIT_SECONDS
) -> dict[str, object]:
    """Poll `/api/sse/stats` until it shows `total_clients` (bounded)."""
    deadline = time.monotonic() + wait_seconds
    while (stats := sse_stats(http, system))["total_clients"] != total_clients:
        assert time.monotonic() < deadline, f"stats stuck at {stats}, want {total_clients}"
        time.sleep(0.05)
    return stats


def test_each_client_sees_exactly_the_events_of_its_groups(system: System) -> None:
    schmidt = system.connected_stream(SCHMIDT)  # active group 124
    yilmaz = system.stream(YILMAZ)  # active group 123, leads home group 8
    nowak = system.stream(NOWAK)  # no active group, leads home group 7
    yilmaz_connected, nowak_connected = yilmaz.next_event(), nowak.next_event()
    http = system.http()

    check_in(http, system, 401, HAUSAUFGABEN)  # home 7 → Schmidt, Nowak
    check_in(http, system, 431, FUSSBALL)  # home 8 → Yilmaz once (supervisor and leader)
    check_in(http, system, 402, FUSSBALL)  # home 7 → Yilmaz, Nowak
    check_in(http, system, 432, HAUSAUFGABEN)  # home 8 → Schmidt, Yilmaz
    check_in(http, system, 405, HAUSAUFGABEN)  # sentinel → Schmidt, Nowak
    check_in(http, system, 435, FUSSBALL)  # sentinel → Yilmaz
    seen_by_schmidt = events_until(schmidt, 405)
    seen_by_nowak = events_until(nowak, 405)
    seen_by_yilmaz = events_until(yilmaz, 435)

    assert yilmaz_connected.json["subscribed_groups"] == ["123"]
    assert yilmaz_connected.json["ogs_groups"] == ["8"]
    assert (nowak_connected.json["subscribed_groups"], nowak_connected.json["ogs_groups"]) == (
        [],
        ["7"],
    )
    checkin = "student_checkin"
    assert [describe(f) for f in seen_by_schmidt] == [
        (checkin, "124", "401"),
        (checkin, "124", "432"),
        (checkin, "124", "405"),
    ]
    assert [describe(f) for f in seen_by_nowak] == [
        (checkin, "124", "401"),
        (checkin, "123", "402"),
        (checkin, "124", "405"),
    ]
    assert [describe(f) for f in seen_by_yilmaz] == [
        (checkin, "123", "431"),
        (checkin, "123", "402"),
        (checkin, "124", "432"),
        (checkin, "123", "435"),
    ]
    every_frame = seen_by_schmidt + seen_by_nowak + seen_by_yilmaz
    assert all(set(f.json["data"]) <= ALLOWED_DATA_KEYS for f in every_frame)
    assert {f.json["data"]["ogs_group_id"] for f in seen_by_nowak} == {"7"}
    ids = [int(f.id or 0) for f in seen_by_yilmaz]
    assert ids == sorted(set(ids))


def test_reconnect_with_last_event_id_replays_exactly_the_missed_events_then_live(
    system: System,
) -> None:
    http = system.http()
    first = RawSseClient(*address_of(system), EVENTS, headers=system.auth(SCHMIDT))
    first.read_until(b"event: connected", WAIT_SECONDS)
    check_in(http, system, 401, HAUSAUFGABEN)
    first.read_until(b"event: student_checkin", WAIT_SECONDS)
    seen_id = str(first.event_ids()[-1])
    first.close()  # the browser goes away

    check_in(http, system, 402, HAUSAUFGABEN)  # missed
    check_in(http, system, 431, FUSSBALL)  # not Schmidt's
    check_out(http, system, 401, HAUSAUFGABEN)  # missed
    by_header = system.stream(SCHMIDT, headers={"Last-Event-ID": str(seen_id)})
    header_connected = by_header.next_event()
    replayed = [by_header.next_event(), by_header.next_event()]
    check_in(http, system, 403, HAUSAUFGABEN)  # live
    live = by_header.next_event()
    by_query = system.stream(SCHMIDT, last_event_id=str(replayed[0].id))
    query_frames = [by_query.next_event() for _ in range(3)]
    check_in(http, system, 404, HAUSAUFGABEN)  # live again
    query_live = by_query.next_event()

    assert header_connected.event == "connected"
    assert [describe(f) for f in replayed] == [
        ("student_checkin", "124", "402"),
        ("student_checkout", "124", "401"),
    ]
    assert describe(live) == ("student_checkin", "124", "403")
    ids = [int(f.id or 0) for f in (*replayed, live)]
    assert int(seen_id or 0) < ids[0] < ids[1] < ids[2]
    assert query_frames[0].event == "connected"
    assert [f.id for f in query_frames[1:]] == [replayed[1].id, live.id]
    assert describe(query_live) == ("student_checkin", "124", "404")


def test_an_id_older_than_the_retained_log_gets_one_resync_and_newer_ids_replay_from_the_log(
    system: System,
) -> None:
    # Arrange: events from 47, 35, 23 and 11 hours ago in the log, then the real pruning code
    # removes the older half (as the bridge's background job would), leaving a gap for old
    # ids; the other two are within the server's retention (24 h).
    with Session(system.engine) as session:
        old = datetime.now(UTC) - timedelta(hours=47)
        for offset, student_id in enumerate((401, 402, 403, 404)):
            session.add(
                EventRecord(
                    type="student_checkin",
                    active_group_id=HAUSAUFGABEN,
                    route_active_group_id=HAUSAUFGABEN,
                    school_id=1,
                    data=f'{{"student_id":"{student_id}","source":"manual"}}',
                    created_at=old + timedelta(hours=offset * 12),
                )
            )
        session.commit()
    with Session(system.engine) as session:
        pruned = EventLog(system.engine, retention_seconds=86_400 + 6 * 3600).prune(session)
        session.commit()
    http = system.http()
    yilmaz = system.connected_stream(YILMAZ)
    check_in(http, system, 431, FUSSBALL)  # live: the hub's ring now starts after the log
    yilmaz.next_event()
    newest_id = newest_event_id(system)  # (admins' events share the id sequence)

    too_old = system.stream(SCHMIDT, headers={"Last-Event-ID": "1"})
    resync_frames = [too_old.next_event(), too_old.next_event()]
    check_in(http, system, 405, HAUSAUFGABEN)
    after_resync = too_old.next_event()
    retained = system.stream(SCHMIDT, headers={"Last-Event-ID": "2"})
    retained_frames = [retained.next_event() for _ in range(4)]

    assert pruned == 2
    assert [f.event for f in resync_frames] == ["connected", "resync"]
    assert resync_frames[1].id == str(newest_id)  # resume point: everything up to now
    assert resync_frames[1].json["type"] == "resync"
    assert describe(after_resync) == ("student_checkin", "124", "405")
    assert [describe(f) for f in retained_frames[1:]] == [
        ("student_checkin", "124", "403"),
        ("student_checkin", "124", "404"),
        ("student_checkin", "124", "405"),
    ]


def test_a_slow_client_is_closed_without_delaying_a_fast_one_and_misses_nothing_on_reconnect(
    make_system: Callable[..., System],
) -> None:
    # The smallest buffer allowed (16 KiB of unsent frames), and a send timeout long enough
    # that the byte bound is what closes the client that stopped reading.
    system = make_system(
        sse_client_buffer=MIN_SSE_CLIENT_BUFFER_BYTES, env={"SSE_SEND_TIMEOUT_SECONDS": "120"}
    )
    slow = RawSseClient(
        *address_of(system),
        EVENTS,
        headers={"Authorization": f"Bearer {system.token(SCHMIDT)}"},
        receive_buffer_bytes=2048,
        max_segment_bytes=536,
    )
    slow.read_until(b"event: connected", WAIT_SECONDS)  # and from now on it reads nothing
    fast = system.connected_stream(SCHMIDT)
    with Session(system.engine) as session:  # longest names allowed: fewer events fill buffers
        for student in session.exec(select(Student).where(col(Student.id) <= 430)).all():
            student.first_name, student.last_name = "F" * 100, f"{student.id}".ljust(100, "L")
            session.add(student)
        session.commit()
    http = system.http()

    delivered: list[int] = []  # what the fast client got, each within 2 s of being made
    slowest_seconds = 0.0
    for n in range(MAX_SLOW_EVENTS):
        student_id = 401 + (n // 2) % 30
        made = time.monotonic()
        if n % 2 == 0:
            check_in(http, system, student_id, HAUSAUFGABEN)
        else:
            check_out(http, system, student_id, HAUSAUFGABEN)
        delivered.append(int(fast.next_event(timeout=2).id or 0))
        slowest_seconds = max(slowest_seconds, time.monotonic() - made)
        if n % 20 == 19 and "SSE client closed slow=True" in system.server.log_text():
            break
    slow.read_until_end(WAIT_SECONDS)
    seen_by_slow = slow.event_ids()  # the connected frame's id, then the events it got
    resumed = system.stream(SCHMIDT, headers={"Last-Event-ID": str(seen_by_slow[-1])})
    resumed_connected = resumed.next_event()
    replayed = [int(resumed.next_event().id or 0) for _ in delivered[len(seen_by_slow) - 1 :]]
    print(f"slow client closed after {len(delivered)} events, slowest {slowest_seconds:.3f} s")

    slow_line = next(line for line in system.server.log_text().splitlines() if "slow=True" in line)
    buffered_bytes = int(slow_line.partition("buffered_bytes=")[2].split()[0])
    assert 0.9 * MIN_SSE_CLIENT_BUFFER_BYTES < buffered_bytes <= MIN_SSE_CLIENT_BUFFER_BYTES
    assert seen_by_slow[0] == 0
    assert seen_by_slow[1:] == delivered[: len(seen_by_slow) - 1]
    assert len(seen_by_slow) - 1 < len(delivered)
    assert resumed_connected.id == str(seen_by_slow[-1])
    assert seen_by_slow[1:] + replayed == delivered


def test_a_stream_opens_with_headers_and_connected_then_beats_until_its_token_expires(
    make_system: Callable[..., System],
) -> None:
    system = make_system(sse_heartbeat_seconds=0.5)
    http = system.http()
    others = [
        RawSseClient(*address_of(system), EVENTS, headers=system.auth(staff_id))
        for staff_id in (SCHMIDT, NOWAK)
    ]
    for other in others:
        other.read_until(b"event: connected", WAIT_SECONDS)

    stream = system.stream(token=system.token(SCHMIDT, ttl=3))
    retry, connected = stream.next(), stream.next()
    counts_open = wait_for_stats(http, system, 3)
    until_expiry: list[Frame] = []
    deadline = time.monotonic() + WAIT_SECONDS
    with pytest.raises(EOFError):  # the stream ends (within 3 s of opening, by its token)
        while time.monotonic() < deadline:
            until_expiry.append(stream.next(timeout=max(0.01, deadline - time.monotonic())))
    counts_after_expiry = wait_for_stats(http, system, 2)
    for other in others:
        other.close()
    counts_closed = wait_for_stats(http, system, 0)

    assert stream.status_code == 200
    assert stream.headers is not None
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert (retry.retry, retry.event, retry.data) == (1000, None, None)
    assert connected.event == "connected"
    assert connected.id == "0"  # nothing published yet: resume from the start
    assert connected.json == {
        "status": "ready",
        "user_id": "1",
        "subscribed_groups": ["124"],
        "ogs_groups": [],
    }
    assert until_expiry, "no heartbeat before the token expired"
    assert all((f.comments, f.event, f.data) == (["heartbeat"], None, None) for f in until_expiry)
    assert counts_open == {"total_clients": 3, "groups": {"124": 2}, "ogs_groups": {"7": 1}}
    assert counts_after_expiry["total_clients"] == 2
    assert counts_closed == {"total_clients": 0, "groups": {}, "ogs_groups": {}}
    assert (
        "SSE client disconnected user_id=1 school_id=1 reason=token_expired"
        in system.server.log_text()
    )


def test_the_server_stops_promptly_with_many_open_streams_and_replays_after_restart(
    make_system: Callable[..., System],
) -> None:
    # One staff member holds all of them: lift the per-staff cap (10) for this test.
    system = make_system(env={"SSE_MAX_STREAMS_PER_STAFF": str(OPEN_STREAMS)})
    http = system.http()
    check_in(http, system, 401, HAUSAUFGABEN)
    check_in(http, system, 402, HAUSAUFGABEN)
    headers = system.auth(SCHMIDT)
    streams = [
        RawSseClient(*address_of(system), EVENTS, headers=headers) for _ in range(OPEN_STREAMS)
    ]
    wait_for_stats(http, system, OPEN_STREAMS, wait_seconds=OPEN_WAIT_SECONDS)

    stop_seconds = system.server.stop()
    ended = 0
    for stream in streams:
        stream.read_until_end(WAIT_SECONDS)
        ended += 1
        stream.close()
    system.server.start(wait_ready=True)
    resumed = system.stream(SCHMIDT, headers={"Last-Event-ID": "1"})
    resumed_frames = [resumed.next_event(), resumed.next_event()]
    print(f"stop with {OPEN_STREAMS} open streams took {stop_seconds:.2f} s")

    assert stop_seconds < 5.0  # the contract's bound for exit after SIGTERM
    assert ended == OPEN_STREAMS
    assert resumed_frames[0].event == "connected"
    assert describe(resumed_frames[1]) == ("student_checkin", "124", "402")
    assert resumed_frames[1].id == str(checkin_ids(system)[1])  # its id from the log
