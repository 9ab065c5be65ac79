"""Tests for api/sse.py without a server: frames and Last-Event-ID (the stream itself:
tests/unit/test_event_stream.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from fastapi import HTTPException

from api.security import Principal
from api.sse import (
    connected_frame,
    encode_event,
    parse_last_event_id,
)
from edge_bridge.events import Event, EventType
from edge_bridge.hub import Hub

AT = datetime(2026, 11, 26, 13, 30, 0, 123000, tzinfo=UTC)


def make_event(
    id_: int, *, name: str = "Max Muster", type_: EventType = EventType.STUDENT_CHECKIN
) -> Event:
    return Event(
        id_,
        type_,
        123,
        {"student_id": "456", "student_name": name, "source": "rfid"},
        AT,
        route_active_group_id=123,
        school_id=1,
    )


def test_an_event_frame_has_id_event_and_one_line_of_envelope_json() -> None:
    frame = encode_event(make_event(900_001, name="Jürgen Groß"))

    assert frame.decode() == (
        "id: 900001\n"
        "event: student_checkin\n"
        'data: {"type":"student_checkin","active_group_id":"123","data":{"student_id":"456",'
        '"student_name":"Jürgen Groß","source":"rfid"},"timestamp":"2026-11-26T13:30:00.123Z"}\n'
        "\n"
    )


def test_a_resync_reusing_an_event_id_gets_its_own_frame() -> None:
    published = make_event(900_003)
    encode_event(published)
    resync = Event.stream_local(EventType.RESYNC, id_=900_003)

    frame = encode_event(resync).decode()

    assert frame.startswith("id: 900003\nevent: resync\n")
    assert encode_event(published).decode().startswith("id: 900003\nevent: student_checkin\n")


def test_events_with_the_same_id_are_encoded_from_their_own_content() -> None:
    encode_event(make_event(900_004, name="Max Muster"))  # e.g. another app in this process

    frame = encode_event(make_event(900_004, name="Erika Muster"))

    assert b"Erika Muster" in frame


def test_the_hub_streams_the_frames_of_this_encoder() -> None:
    async def scenario() -> bytes:
        hub = Hub(encode=encode_event)
        async with hub.subscribe(school_id=1, staff_id=1, active_group_ids=[123]) as sub:
            await hub.publish(make_event(900_005))
            async with asyncio.timeout(2):
                return await sub.read(65_536)

    assert asyncio.run(scenario()) == encode_event(make_event(900_005))


def test_theconnected_frame_follows_a_retry_frame_and_carries_the_resume_id() -> None:
    staff = Principal(1, "Frau Schmidt", "schmidt@example.org", False, 0.0, 1)

    frame = connected_frame(staff, frozenset({124, 123}), frozenset({7}), start_after_id=41)

    retry, connected, rest = frame.decode().split("\n\n")
    lines = connected.split("\n")
    assert retry == "retry: 1000"
    assert lines[:2] == ["id: 41", "event: connected"]
    assert json.loads(lines[2].removeprefix("data: ")) == {
        "status": "ready",
        "user_id": "1",
        "subscribed_groups": ["123", "124"],
        "ogs_groups": ["7"],
    }
    assert rest == ""


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (None, None, None),
        ("", None, None),
        ("42", None, 42),
        (" 42 ", None, 42),
        (None, "17", 17),
        ("42", "17", 42),
        ("", "17", 17),
        ("0", None, 0),
    ],
)
def test_last_event_id_comes_from_the_header_else_the_query(
    header: str | None, query: str | None, expected: int | None
) -> None:
    assert parse_last_event_id(header, query) == expected


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "\u00b2", "\u0661\u0662", "9" * 19])
def test_a_last_event_id_that_is_not_a_plain_id_is_a_400(raw: str) -> None:
    with pytest.raises(HTTPException) as caught:
        parse_last_event_id(raw, None)

    assert caught.value.status_code == 400
    assert "Last-Event-ID must be a non-negative event id, got:" in caught.value.detail
