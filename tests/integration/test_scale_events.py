"""Issue 12, event side: one PostgreSQL event log feeds every instance's hub (edge_bridge/tail.py).

Concurrent writers never make an id visible before a smaller one; the tail makes up for a
lost notification by its poll and for a dropped LISTEN connection by reconnecting; and with
two real `edge-bridge serve` instances on one database and one broker, a stream on one
instance gets what the other wrote, in order, once, also across a reconnect to the other
instance and a PostgreSQL restart. Every test needs PostgreSQL (EDGE_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from edge_bridge.db import transaction
from edge_bridge.eventlog import EventLog, announce_directory_changed, rows_after
from edge_bridge.events import EventType, NewEvent
from edge_bridge.models import EventRecord
from edge_bridge.store import Announcer, Store, Tx
from edge_bridge.tail import EventTail
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import RecordingBroadcaster
from tests.support.cluster import Cluster
from tests.support.pgcluster import PostgresServer
from tests.support.sse import Frame, SseStream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(POSTGRES_ADMIN_URL is None, reason="needs EDGE_TEST_POSTGRES_URL"),
]
logger = logging.getLogger(__name__)

SCHMIDT, YILMAZ, NOWAK, ADMIN = 1, 2, 3, 4  # Schmidt supervises 124 (Raum 101)
HAUSAUFGABEN = 124
A, B = 0, 1
WAIT_SECONDS = 15.0


def _checkin(group: int) -> NewEvent:
    return NewEvent.for_group(EventType.STUDENT_CHECKIN, group, school_id=1, student_id=1)


def _until(condition: Callable[[], Any], *, seconds: float = WAIT_SECONDS, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    msg = f"{what} not within {seconds} s"
    raise AssertionError(msg)


# --- ids, and the tail in this process ----------------------------------------------------


def test_concurrent_writers_never_make_an_id_visible_before_a_smaller_one(engine: Engine) -> None:
    writers, per_writer = 4, 25
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        pause = random.Random(seed)
        try:
            for _ in range(per_writer):
                with transaction(engine) as session:
                    tx = Tx(session)
                    tx.emit(_checkin(seed))
                    tx.flush_events()  # lock, ids, notify: what Store.commit_blocking does
                    time.sleep(pause.uniform(0, 0.004))  # between the ids and the commit
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def read() -> None:  # what a tail does: only ever `id > last`
        last = 0
        while not done.is_set():
            with Session(engine) as session:
                rows = rows_after(session, last, 1000)
            if rows.last_id is not None:
                seen.extend(item.id for item in rows.items)
                last = rows.last_id

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    reader.join(10)
    with Session(engine) as session:
        seen.extend(item.id for item in rows_after(session, max(seen, default=0), 10_000).items)
        committed = session.exec(select(EventRecord.id).order_by(col(EventRecord.id))).all()

    assert errors == []
    assert len(committed) == writers * per_writer
    # a reader that never looks back saw every committed id: none became visible late
    assert seen == list(committed)


async def _wait_for(condition: Callable[[], bool], *, what: str) -> None:
    """Poll `condition` (the tail's own state) every 10 ms, at most WAIT_SECONDS."""
    for _ in range(int(WAIT_SECONDS * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not within {WAIT_SECONDS} s")


def _in_process_tail(engine: Engine) -> tuple[EventTail, RecordingBroadcaster]:
    broadcaster = RecordingBroadcaster()
    log = EventLog(engine, retention_seconds=3600)
    return EventTail(engine, Announcer(broadcaster), eventlog=log), broadcaster


def _insert_without_notification(engine: Engine) -> int:
    """An event row as a writer whose notification got lost would leave it."""
    with transaction(engine) as session:
        session.exec(text("SELECT pg_advisory_xact_lock(1162102597)"))  # type: ignore[call-overload]  # store._PG_EVENT_LOCK
        return int(
            session.exec(  # type: ignore[call-overload]
                text(
                    "INSERT INTO event_log (type, active_group_id, route_active_group_id,"
                    " route_admin, data, created_at) VALUES ('student_checkin', 10, 10, false,"
                    " '{}', now()) RETURNING id"
                )
            ).scalar_one()
        )


def test_an_event_whose_notification_was_lost_is_handed_over_by_the_poll(engine: Engine) -> None:
    tail, broadcaster = _in_process_tail(engine)
    store = Store(engine)

    async def scenario() -> float:
        await tail.start()
        try:
            await _wait_for(lambda: tail.listening, what="LISTEN")
            lost = await asyncio.to_thread(_insert_without_notification, engine)
            started = time.monotonic()
            await _wait_for(lambda: tail.last_seen >= lost, what="the poll")
            waited = time.monotonic() - started
            notified = await asyncio.to_thread(
                lambda: [
                    e.id for e in store.commit_blocking(lambda tx: tx.emit(_checkin(10))).events
                ]
            )
            await _wait_for(lambda: tail.last_seen >= notified[-1], what="the notification")
            return waited
        finally:
            await tail.stop()
            store.close()

    waited = asyncio.run(scenario())

    ids = [event.id for event in broadcaster.events]
    assert ids == sorted(set(ids)) and len(ids) == 2
    assert waited < tail.poll_seconds + 1.0
    logger.info("lost notification made up for by the poll after %.3f s", waited)


def test_a_terminated_listen_connection_reconnects_and_loses_or_repeats_nothing(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    tail, broadcaster = _in_process_tail(engine)
    store = Store(engine)
    written: list[int] = []

    def write(count: int) -> None:
        for _ in range(count):
            written.extend(
                e.id for e in store.commit_blocking(lambda tx: tx.emit(_checkin(10))).events
            )

    def terminate_listener() -> int:
        with engine.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                    )
                ).all()
            )

    async def scenario() -> list[str]:
        await tail.start()
        statuses = []
        try:
            await _wait_for(lambda: tail.listening, what="LISTEN")
            await asyncio.to_thread(write, 5)
            await _wait_for(lambda: tail.last_seen >= written[-1], what="the first events")
            assert await asyncio.to_thread(terminate_listener) == 1
            await _wait_for(lambda: not tail.listening, what="the drop being noticed")
            statuses.append(tail.status())
            await asyncio.to_thread(write, 5)  # while nobody listens
            await _wait_for(lambda: tail.listening, what="the reconnect")
            await _wait_for(lambda: tail.last_seen >= written[-1], what="the missed events")
            statuses.append(tail.status())
        finally:
            await tail.stop()
            store.close()
        return statuses

    with caplog.at_level(logging.INFO, logger="edge_bridge.tail"):
        statuses = asyncio.run(scenario())

    assert [event.id for event in broadcaster.events] == written
    assert statuses == ["disconnected", "ok"]
    assert any("Event tail interrupted" in message for message in caplog.messages)


# --- two real instances ---------------------------------------------------------------------


def _check_in(client: httpx.Client, cluster: Cluster, student_id: int, group: int) -> None:
    response = client.post(
        f"/api/active/groups/{group}/visits",
        json={"student_id": student_id},
        headers={"Authorization": f"Bearer {cluster.token(SCHMIDT)}"},
    )
    assert response.status_code == 201, response.text


def _check_out(client: httpx.Client, cluster: Cluster, student_id: int, group: int) -> None:
    response = client.post(
        f"/api/active/groups/{group}/visits/{student_id}/checkout",
        headers={"Authorization": f"Bearer {cluster.token(SCHMIDT)}"},
    )
    assert response.status_code == 200, response.text


def _events(stream: SseStream, count: int) -> list[Frame]:
    return [stream.next_event(timeout=WAIT_SECONDS) for _ in range(count)]


def _logged_ids(engine: Engine, group: int, after: int) -> list[int]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(EventRecord.id)
                .where(col(EventRecord.id) > after, col(EventRecord.route_active_group_id) == group)
                .order_by(col(EventRecord.id))
            ).all()
        )


def _ids(frames: list[Frame]) -> list[int]:
    return [int(frame.id or 0) for frame in frames]


def test_a_stream_on_b_receives_every_event_a_writes_in_id_order_once(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    stream = cluster.stream(B, SCHMIDT)
    connected = stream.next_event()
    students = range(401, 421)
    latencies = []

    with cluster.http(A) as client:
        for student_id in students:
            started = time.monotonic()
            _check_in(client, cluster, student_id, HAUSAUFGABEN)
            frame = stream.next_event(timeout=WAIT_SECONDS)
            latencies.append(time.monotonic() - started)
            assert frame.json["data"]["student_id"] == str(student_id)
        for student_id in students:  # a burst: no waiting between writes
            _check_out(client, cluster, student_id, HAUSAUFGABEN)
        frames = _events(stream, len(students))

    received = [int(frame.id or 0) for frame in frames]
    assert connected.event == "connected"
    assert [frame.json["data"]["student_id"] for frame in frames] == [str(s) for s in students]
    assert {frame.event for frame in frames} == {"student_checkout"}
    logged = _logged_ids(cluster.engine, HAUSAUFGABEN, int(connected.id or 0))
    assert logged[len(students) :] == received  # in id order, none twice, none missing
    with pytest.raises(TimeoutError):
        stream.next_event(timeout=0.5)  # and nothing more
    logger.info(
        "write on A → frame on B: p50 %.1f ms, max %.1f ms (%d check-ins, POST included)",
        statistics.median(latencies) * 1000,
        max(latencies) * 1000,
        len(latencies),
    )


def test_a_stream_that_was_on_a_resumes_on_b_with_last_event_id_and_misses_nothing(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    on_a = cluster.connected_stream(A, SCHMIDT)
    with cluster.http(A) as client:
        for student_id in range(401, 406):
            _check_in(client, cluster, student_id, HAUSAUFGABEN)
        before = _events(on_a, 5)
        on_a.close()
        for student_id in range(406, 411):  # while the browser is between instances
            _check_in(client, cluster, student_id, HAUSAUFGABEN)
        # Act: the browser reconnects through the load balancer and lands on B
        on_b = cluster.stream(B, SCHMIDT, headers={"Last-Event-ID": str(before[-1].id)})
        connected = on_b.next_event()
        _check_in(client, cluster, 411, HAUSAUFGABEN)
        after = _events(on_b, 6)

    assert connected.event == "connected"
    assert [frame.json["data"]["student_id"] for frame in after] == [
        str(s) for s in range(406, 412)
    ]
    logged = _logged_ids(cluster.engine, HAUSAUFGABEN, 0)
    assert _ids(before) + _ids(after) == logged


def test_a_supervision_started_on_a_reaches_a_stream_on_b_within_a_second(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    nowak = cluster.connected_stream(B, NOWAK)  # leads home group 7, supervises nothing
    auth = {"Authorization": f"Bearer {cluster.token(NOWAK)}"}
    with cluster.http(A) as client:
        started_at = time.monotonic()
        started = client.post(
            "/api/active/groups", json={"name": "Basteln", "room_id": 3}, headers=auth
        )
        start_event = nowak.next_event(timeout=WAIT_SECONDS)
        reached_after = time.monotonic() - started_at
        group_id = started.json()["id"]
        # Max Richter's home group is 8: he reaches her only through the new supervision.
        visit = client.post(
            f"/api/active/groups/{group_id}/visits", json={"student_id": 431}, headers=auth
        )
        checkin = nowak.next_event(timeout=WAIT_SECONDS)

    assert started.status_code == 201, started.text
    assert (start_event.event, start_event.json["active_group_id"]) == ("activity_start", group_id)
    assert reached_after < 1.0
    assert visit.status_code == 201, visit.text
    assert (checkin.event, checkin.json["data"]["student_id"]) == ("student_checkin", "431")
    assert checkin.json["active_group_id"] == group_id
    logger.info("supervision on A → activity_start on B after %.1f ms", reached_after * 1000)


def test_a_deleted_staff_member_is_refused_on_b_within_a_second(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    auth = {"Authorization": f"Bearer {cluster.token(ADMIN, admin=True)}"}
    with cluster.http(B) as client:
        before = client.get("/api/me", headers=auth)
        # Act: an operator deletes the admin and announces it, as `edge-bridge import` does
        with transaction(cluster.engine) as session:
            session.exec(text("DELETE FROM staff WHERE id = 4"))  # type: ignore[call-overload]
            announce_directory_changed(session)
        deleted_at = time.monotonic()
        refused = _until(
            lambda: (r := client.get("/api/me", headers=auth)).status_code in {401, 403} and r,
            seconds=5,
            what="the deleted staff member refused on B",
        )
        refused_after = time.monotonic() - deleted_at

    assert before.status_code == 200
    assert refused.status_code in {401, 403}
    assert refused_after < 1.0
    logger.info("staff deletion → refused on B after %.1f ms", refused_after * 1000)


def _ready(client: httpx.Client) -> httpx.Response:
    try:
        return client.get("/ready", timeout=5)
    except httpx.TransportError:
        return httpx.Response(599)


def test_a_postgresql_restart_is_survived_by_the_tails_and_ready_shows_it(
    make_cluster: Callable[..., Cluster],
) -> None:
    assert POSTGRES_ADMIN_URL is not None
    cluster = make_cluster(2)
    stream = cluster.stream(B, SCHMIDT)
    connected = stream.next_event()
    server = PostgresServer(POSTGRES_ADMIN_URL)
    with cluster.http(A) as writer, cluster.http(B) as b:
        for student_id in range(401, 404):
            _check_in(writer, cluster, student_id, HAUSAUFGABEN)
        first = _events(stream, 3)
        # Act: the database goes away and comes back
        server.stop()
        try:
            down = _until(
                lambda: (r := _ready(b)).status_code == 503 and "event tail" in r.text and r,
                what="/ready on B answering 503 naming the event tail",
            )
        finally:
            server.start()
        _until(lambda: _ready(b).status_code == 200, what="/ready on B 200 again")
        _until(lambda: _ready(writer).status_code == 200, what="/ready on A 200 again")
        for student_id in range(404, 407):
            _check_in(writer, cluster, student_id, HAUSAUFGABEN)
        after = _events(stream, 3)

    assert connected.event == "connected"
    assert down.json()["checks"]["event_tail"] in {"disconnected", "behind"}
    logged = _logged_ids(cluster.engine, HAUSAUFGABEN, int(connected.id or 0))
    assert _ids(first) + _ids(after) == logged
    with pytest.raises(TimeoutError):
        stream.next_event(timeout=0.5)
    assert "Event tail interrupted" in cluster.log_text(B)
