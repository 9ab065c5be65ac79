"""Plain factory functions for test data (no fixtures, no magic)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_bridge.events import Event
from edge_bridge.store import Announcer, Store, Tx

SCHOOL = Path(__file__).parent / "fixtures" / "school.json"
# The events a visit change writes: what counts of "one effect per scan" compare with (the log
# also holds activity, admin and, on PostgreSQL, internal staff_changed rows).
VISIT_EVENT_TYPES = ("student_checkin", "student_checkout")
T = TypeVar("T")


def school_document() -> dict[str, Any]:
    """A fresh, mutable copy of the fixture school's import file."""
    return copy.deepcopy(json.loads(SCHOOL.read_text()))


def minimal_document() -> dict[str, Any]:
    """One room, one supervisor, one student, one reader, one running group."""
    return {
        "rooms": [{"id": 1, "name": "Raum 101"}],
        "staff": [
            {
                "id": 1,
                "name": "Frau Schmidt",
                "email": "schmidt@example.org",
                "password": "correct horse",
                "tag": "A1B2C3D4",
            }
        ],
        "ogs_groups": [{"id": 7, "name": "Klasse 2b", "room_id": 1, "leader_ids": [1]}],
        "students": [
            {
                "id": 456,
                "first_name": "Max",
                "last_name": "Muster",
                "tag": "04A1B2C3D4",
                "ogs_group_id": 7,
            }
        ],
        "devices": [{"id": "reader-101", "room_id": 1, "active": True}],
        "active_groups": [{"id": 123, "name": "Fußball AG", "room_id": 1, "supervisor_ids": [1]}],
    }


def second_school_document() -> dict[str, Any]:
    """School 2's import file, meant to sit beside the fixture school (school 1).

    Its names overlap the fixture school's ("Raum 101", "Frau Schmidt", "Max Muster"), its
    tags reuse the fixture school's values, and its ids sit between and after the fixture
    school's (ids are global); emails and device ids differ (they are global too).
    """
    return {
        "school": {"id": 2, "name": "Grundschule Am Park", "timezone": "Europe/Vienna"},
        "rooms": [{"id": 4, "name": "Raum 101"}, {"id": 5, "name": "Turnhalle"}],
        "staff": [
            {
                "id": 5,
                "name": "Frau Schmidt",
                "email": "schmidt@park.example.org",
                "password": "park-demo-5",
                "tag": "A1B2C3D4",
            },
            {
                "id": 6,
                "name": "Herr Park",
                "email": "admin@park.example.org",
                "password": "park-demo-6",
                "admin": True,
            },
        ],
        "ogs_groups": [{"id": 9, "name": "Klasse 2b", "room_id": 4, "leader_ids": [5]}],
        "students": [
            {
                "id": 400,
                "first_name": "Max",
                "last_name": "Muster",
                "tag": "04A1B20000",
                "ogs_group_id": 9,
            },
            {
                "id": 461,
                "first_name": "Emma",
                "last_name": "Schulz",
                "tag": "04A1B20001",
                "ogs_group_id": 9,
            },
        ],
        "devices": [
            {"id": "park-101", "room_id": 4, "active": True},
            {"id": "park-turnhalle", "room_id": 5, "active": True},
        ],
        "active_groups": [{"id": 125, "name": "Fußball AG", "room_id": 4, "supervisor_ids": [5]}],
    }


def dump_tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: compare two calls to prove nothing changed."""
    from sqlmodel import SQLModel

    result: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for name, table in SQLModel.metadata.tables.items():
            rows = connection.execute(sa.select(table)).all()
            result[name] = sorted(tuple(map(repr, row)) for row in rows)
    return result


def open_groups(engine: Engine, student_id: int) -> list[int]:
    """The active groups a student has an open visit in (at most one, by the rules)."""
    from sqlmodel import Session, col, select

    from edge_bridge.models import Visit

    with Session(engine) as session:
        return list(
            session.exec(
                select(Visit.active_group_id).where(
                    Visit.student_id == student_id, col(Visit.exit_time).is_(None)
                )
            ).all()
        )


class RecordingBroadcaster:
    """Stands in for the hub behind `store.Announcer`: records what it is told, in order.

    `log` interleaves both kinds: ("staff", staff_id, keep_current) and ("event", event_id).
    """

    def __init__(self, connected: frozenset[int] = frozenset()) -> None:
        self.events: list[Event] = []
        self.staff_updates: list[tuple[int, frozenset[int], frozenset[int], bool]] = []
        self.log: list[tuple[object, ...]] = []
        self.connected = connected  # staff members with an open stream
        self.position = 0

    @property
    def group_events(self) -> list[Event]:
        """The events for groups and home groups, without the admins' office events."""
        return [event for event in self.events if not event.route_admin]

    async def publish(self, event: Event) -> int:
        self.events.append(event)
        self.log.append(("event", event.id))
        return 1

    def update_staff(
        self,
        staff_id: int,
        *,
        active_group_ids: Iterable[int],
        ogs_group_ids: Iterable[int],
        keep_current: bool = False,
    ) -> None:
        update = (staff_id, frozenset(active_group_ids), frozenset(ogs_group_ids), keep_current)
        self.staff_updates.append(update)
        self.log.append(("staff", staff_id, keep_current))

    def staff_ids(self) -> frozenset[int]:
        return self.connected

    def advance(self, position: int) -> None:
        self.position = max(self.position, position)


class AnnouncingWriter:
    """A Store whose `write_blocking` also announces what committed, as `Store.write` does
    on the loop (without the writer thread: unit tests run no threads)."""

    def __init__(self, store: Store, broadcaster: RecordingBroadcaster) -> None:
        self.store = store
        self.engine = store.engine
        self.announcer = Announcer(broadcaster)

    def write_blocking(self, work: Callable[[Tx], T]) -> T:
        committed = self.store.commit_blocking(work)
        asyncio.run(self.announcer.announce(committed))
        return committed.result
