"""Tests for the event stream's ASGI response (api/sse.py `EventStream`, api/event_stream.py)
against a fake ASGI server: tasks per stream, heartbeat, send timeout, disconnect, shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from api.event_stream import DeferredStreams, DisconnectWatch, ServerExit, send_within
from api.security import Principal
from api.sse import HEARTBEAT, EventStream, encode_event
from edge_bridge.events import Event, EventType
from edge_bridge.hub import Hub

GROUP = 124
WAIT = 2.0
AT = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
Message = dict[str, Any]


class FakeDirectory:
    def groups(self, _staff_id: int) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset({GROUP}), frozenset()


class FakeClient:
    """An ASGI server's side of one stream: records what is sent; can stall or disconnect."""

    def __init__(self, *, stall_after: int | None = None) -> None:
        self.messages: list[Message] = []
        self.changed = asyncio.Event()
        self.gone = asyncio.Event()
        self.stall_after = stall_after  # body messages taken before the socket stops draining
        self._requested = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        bodies = sum(1 for m in self.messages if m["type"] == "http.response.body")
        if (
            message["type"] == "http.response.body"
            and self.stall_after is not None
            and bodies >= self.stall_after
        ):
            await asyncio.Event().wait()  # the client stopped taking bytes: drain never ends
        self.messages.append(message)
        self.changed.set()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def complete(self) -> bool:
        last = self.messages[-1] if self.messages else {}
        return last.get("type") == "http.response.body" and last.get("more_body") is False

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def checkin(id_: int, *, school_id: int = 1) -> Event:
    return Event(
        id_,
        EventType.STUDENT_CHECKIN,
        GROUP,
        {"student_id": str(id_), "student_name": "Max Muster", "source": "rfid"},
        AT,
        route_active_group_id=GROUP,
        school_id=school_id,
    )


def make_hub(**options: int) -> tuple[Hub, ServerExit]:
    """A hub, and the server exit that closes its streams (as api/deps.py `get_server_exit`)."""
    hub, exit_ = Hub(encode=encode_event, **options), ServerExit()
    exit_.add(lambda: hub.close_all("shutdown"))
    return hub, exit_


def make_stream(
    hub: Hub,
    exit_: ServerExit,
    *,
    heartbeat: float = 30.0,
    send_timeout: float = 10.0,
    expires_in: float = 3600.0,
    staff_id: int = 1,
    school_id: int = 1,
) -> EventStream:
    staff = Principal(
        staff_id=staff_id,
        name="Frau Schmidt",
        email="schmidt@example.org",
        admin=False,
        expires_at=time.time() + expires_in,
        school_id=school_id,
    )
    return EventStream(
        hub=hub,
        staff=staff,
        school_id=school_id,
        directory=FakeDirectory(),  # type: ignore[arg-type]
        groups=(frozenset({GROUP}), frozenset()),
        last_event_id=None,
        heartbeat_seconds=heartbeat,
        send_timeout_seconds=send_timeout,
        server_exit=exit_,
    )


def serve(stream: EventStream, client: FakeClient) -> asyncio.Task[None]:
    """What uvicorn does: one task runs the ASGI app for the request."""
    scope = {"type": "http", "method": "GET", "client": ("10.0.0.7", 5000)}
    return asyncio.create_task(stream(scope, client.receive, client.send))  # type: ignore[arg-type]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_each_open_stream_costs_exactly_one_task() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub(max_streams_per_staff=100)
        clients = [FakeClient() for _ in range(20)]
        before = len(asyncio.all_tasks())

        tasks = [serve(make_stream(hub, exit_), client) for client in clients]
        for client in clients:
            await client.until(lambda c=client: b"event: connected" in c.body)
        during = len(asyncio.all_tasks())
        exit_.fire()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

        assert during - before == len(clients)
        assert hub.stats().total_clients == 0

    run(scenario)


def test_the_stream_starts_with_the_contract_headers_and_the_connected_frame() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()
        task = serve(make_stream(hub, exit_), client)
        await client.until(lambda: b"event: connected" in client.body)
        exit_.fire()
        await asyncio.wait_for(task, WAIT)

        start = client.messages[0]
        headers = dict(start["headers"])
        assert start["status"] == 200
        assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
        assert headers[b"cache-control"] == b"no-cache"
        assert headers[b"x-accel-buffering"] == b"no"
        assert client.body.startswith(b"retry: 1000\n\nid: 0\nevent: connected\n")

    run(scenario)


def test_events_buffered_while_the_stream_was_busy_go_out_in_one_send() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()
        task = serve(make_stream(hub, exit_), client)
        await client.until(lambda: b"event: connected" in client.body)
        sent_before = len(client.messages)

        for id_ in (1, 2, 3):  # published back to back, before the stream's task runs again
            await hub.publish(checkin(id_))
        await client.until(lambda: b"id: 3\n" in client.body)
        exit_.fire()
        await asyncio.wait_for(task, WAIT)

        events = client.messages[sent_before]
        assert events["body"] == b"".join(encode_event(checkin(i)) for i in (1, 2, 3))
        assert events["more_body"] is True

    run(scenario)


def test_a_stream_gets_the_events_of_its_staff_members_school_only() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        one, two = FakeClient(), FakeClient()
        tasks = [
            serve(make_stream(hub, exit_, school_id=1), one),
            serve(make_stream(hub, exit_, staff_id=2, school_id=2), two),
        ]
        for client in (one, two):
            await client.until(lambda c=client: b"event: connected" in c.body)

        reached = await hub.publish(checkin(1, school_id=2))  # the same group id, school 2
        await hub.publish(checkin(2, school_id=1))
        await one.until(lambda: b"id: 2\n" in one.body)
        await two.until(lambda: b"id: 1\n" in two.body)
        exit_.fire()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

        assert reached == 1
        assert hub.stats().schools == {}
        assert b"id: 1\n" not in one.body
        assert b"id: 2\n" not in two.body

    run(scenario)


def test_an_idle_stream_sends_a_heartbeat_comment_every_heartbeat_period() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()
        task = serve(make_stream(hub, exit_, heartbeat=0.05), client)

        await client.until(lambda: client.body.count(HEARTBEAT) >= 2)
        exit_.fire()
        await asyncio.wait_for(task, WAIT)

        assert client.body.endswith(HEARTBEAT)
        assert client.complete

    run(scenario)


def test_a_client_that_stops_taking_bytes_is_closed_after_the_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient(stall_after=1)  # takes the connected frame, then nothing
        task = serve(make_stream(hub, exit_, send_timeout=0.05), client)
        await client.until(lambda: b"event: connected" in client.body)

        await hub.publish(checkin(1))
        await asyncio.wait_for(task, WAIT)

        assert hub.stats().total_clients == 0
        assert b"id: 1\n" not in client.body

    run(scenario)

    assert (
        "SSE client closed reason=send_timeout user_id=1 school_id=1 client=10.0.0.7 timeout_s=0.05"
        in caplog.messages
    )


def test_a_send_that_does_not_wait_arms_no_timer() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        client = FakeClient()
        timers_before = len(loop._scheduled)  # type: ignore[attr-defined]

        sent = await send_within(client.send, {"type": "http.response.body"}, 10.0)

        assert sent
        assert len(loop._scheduled) == timers_before  # type: ignore[attr-defined]

    run(scenario)


def test_a_client_that_disconnects_ends_its_stream_and_leaves_the_hub() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()
        task = serve(make_stream(hub, exit_), client)
        await client.until(lambda: b"event: connected" in client.body)

        client.gone.set()
        await asyncio.wait_for(task, WAIT)

        assert hub.stats().total_clients == 0

    run(scenario)


def test_server_exit_ends_every_open_stream_with_a_complete_response() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        clients = [FakeClient() for _ in range(3)]
        tasks = [serve(make_stream(hub, exit_), client) for client in clients]
        for client in clients:
            await client.until(lambda c=client: b"event: connected" in c.body)

        exit_.fire()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

        assert all(client.complete for client in clients)
        assert hub.stats().total_clients == 0

    run(scenario)


def test_a_stream_that_starts_after_the_server_began_to_exit_ends_at_once() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        exit_.fire()
        client = FakeClient()

        await asyncio.wait_for(serve(make_stream(hub, exit_), client), WAIT)

        assert client.complete
        assert b"event: connected" in client.body

    run(scenario)


def test_an_expired_token_ends_the_stream_with_a_complete_response() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()

        await asyncio.wait_for(serve(make_stream(hub, exit_, expires_in=0.05), client), WAIT)

        assert client.complete

    run(scenario)


def test_sigterm_runs_the_exit_callbacks_after_the_servers_own_handler() -> None:
    calls: list[str] = []

    def servers_handler(_sig: int, _frame: object) -> None:
        calls.append("server")

    async def scenario() -> None:
        exit_ = ServerExit()
        fired = asyncio.Event()
        exit_.add(lambda: (calls.append("streams"), fired.set()))
        exit_.install()

        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(fired.wait(), WAIT)

        assert exit_.exiting

    previous = signal.signal(signal.SIGTERM, servers_handler)
    try:
        run(scenario)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert calls == ["server", "streams"]


def test_closing_a_disconnect_watch_leaves_no_waiter_behind() -> None:
    async def scenario() -> None:
        client = FakeClient()
        disconnected: list[bool] = []
        watch = DisconnectWatch(client.receive, lambda: disconnected.append(True))
        await asyncio.sleep(0)

        watch.close()
        client.gone.set()
        await asyncio.sleep(0)

        assert disconnected == []
        assert not client.gone._waiters  # type: ignore[attr-defined]

    run(scenario)


def test_a_deferred_stream_runs_after_the_app_returned_with_the_same_messages() -> None:
    async def scenario() -> None:
        hub, exit_ = make_hub()
        client = FakeClient()
        stream = make_stream(hub, exit_)
        app_returned: list[bool] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await stream(scope, receive, send)  # as Starlette runs a route's response
            app_returned.append(not client.messages)  # nothing sent yet: deferred

        middleware = DeferredStreams(app)  # type: ignore[arg-type]
        scope = {"type": "http", "method": "GET", "client": ("10.0.0.7", 5000)}
        scope["fastapi_inner_astack"] = object()
        task = asyncio.create_task(middleware(scope, client.receive, client.send))  # type: ignore[arg-type]
        await client.until(lambda: b"event: connected" in client.body)
        exit_.fire()
        await asyncio.wait_for(task, WAIT)

        assert app_returned == [True]
        assert client.complete
        assert "fastapi_inner_astack" not in scope

    run(scenario)
