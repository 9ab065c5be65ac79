"""The event log: append inside a write transaction, read back for replay, prune by age.

Replay judges age itself: a client that missed an event older than the retention gets
`None` (a resync) even before the pruning job has deleted it, so the answer does not depend
on when that job last ran. `event_log_state.pruned_through_id` marks ids that are gone: by
pruning, or by a restore (`backup.py`), which sets it above every id issued before.

On PostgreSQL the log is also how instances tell each other what committed (`tail.py`): each
event-producing transaction ends with `pg_notify(EVENTS_CHANNEL, '<its newest id>')`, and a
change of someone's supervision is written as two internal `staff_changed` rows around the
commit's events (phase `gain` before, `settle` after, with the staff members' groups at
commit), so every instance's streams gain groups before the events and lose them after.
Internal rows are routed to no one: replay never reads them and the hub never gets them.
Replay reads one school's events only (`EventRecord.school_id`, in SQL): internal rows have
no school, and another school's events never come back whatever their route ids.
A change to the directory made outside the writer (`edge-bridge import`) is announced by a
`directory` notification alone (`announce_directory_changed`), which makes every tail reload
the directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, insert, or_, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from edge_bridge.events import Event, EventType, NewEvent
from edge_bridge.models import (
    ActiveGroup,
    EventLogState,
    EventRecord,
    OgsGroupLeader,
    Supervision,
    utcnow,
)

logger = logging.getLogger(__name__)

# (active groups supervised now, home groups led) of one staff member
Groups = tuple[frozenset[int], frozenset[int]]
EVENTS_CHANNEL = "edge_events"  # NOTIFY channel: payload an event id, or DIRECTORY_CHANGED
DIRECTORY_CHANGED = "directory"
STAFF_CHANGED = "staff_changed"  # the type of internal rows; not an `EventType`
Phase = Literal["gain", "settle"]


@dataclass(frozen=True, slots=True)
class StaffChange:
    """An internal row: these staff members' groups as of the commit that changed them.

    `gain` comes before that commit's events (streams only add groups), `settle` after them
    (streams take exactly these groups).
    """

    id: int
    phase: Phase
    groups: Mapping[int, Groups]


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _event_row(new_event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "type": str(new_event.type),
        "active_group_id": new_event.active_group_id,
        "route_active_group_id": new_event.route_active_group_id,
        "route_ogs_group_id": new_event.route_ogs_group_id,
        "route_admin": new_event.route_admin,
        "school_id": new_event.school_id,
        "data": _json(new_event.data),
        "created_at": now,
    }


def _staff_row(phase: Phase, groups: Mapping[int, Groups], now: datetime) -> dict[str, Any]:
    staff = {str(sid): [sorted(active), sorted(ogs)] for sid, (active, ogs) in groups.items()}
    return {
        "type": STAFF_CHANGED,
        "active_group_id": None,
        "route_active_group_id": None,
        "route_ogs_group_id": None,
        "route_admin": False,
        "school_id": None,
        "data": _json({"phase": phase, "staff": staff}),
        "created_at": now,
    }


def _insert(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    statement = insert(EventRecord).returning(col(EventRecord.id), sort_by_parameter_order=True)
    return list(session.connection().execute(statement, rows).scalars().all())


def append_events(
    session: Session,
    new_events: list[NewEvent],
    *,
    staff_groups: Mapping[int, Groups] | None = None,
) -> list[Event]:
    """Insert events in the caller's transaction, in order; returns them with their ids.

    With `staff_groups`, a `gain` row goes before the events and a `settle` row after them
    (see the module docstring); they are not among the returned events.
    """
    now = utcnow()
    rows = [_event_row(new_event, now) for new_event in new_events]
    if staff_groups:
        rows = [
            _staff_row("gain", staff_groups, now),
            *rows,
            _staff_row("settle", staff_groups, now),
        ]
    ids = _insert(session, rows)
    if _on_postgres(session):
        notify_committed(session, ids[-1])
    if staff_groups:
        ids = ids[1:-1]
    return [
        Event(
            id=event_id,
            type=new_event.type,
            active_group_id=new_event.active_group_id,
            data=new_event.data,
            timestamp=now,
            route_active_group_id=new_event.route_active_group_id,
            route_ogs_group_id=new_event.route_ogs_group_id,
            route_admin=new_event.route_admin,
            school_id=new_event.school_id,
        )
        for event_id, new_event in zip(ids, new_events, strict=True)
    ]


def notify_committed(session: Session, newest: int) -> None:
    """Wake every instance's tail when this transaction commits (PostgreSQL only).

    Called after the rows are in, under the event lock: notifications of one channel are
    delivered in commit order, each carrying its transaction's newest id.
    """
    session.exec(  # type: ignore[call-overload]
        text("SELECT pg_notify(:channel, :payload)"),
        params={"channel": EVENTS_CHANNEL, "payload": str(newest)},
    )


def announce_directory_changed(session: Session) -> None:
    """Make every instance reload the staff directory when this transaction commits.

    For changes made outside the writer (an import, an operator's `DELETE`). A no-op on
    SQLite, where the one process re-reads the directory every `GROUP_REFRESH_SECONDS`.
    """
    if not _on_postgres(session):
        return
    session.exec(  # type: ignore[call-overload]
        text("SELECT pg_notify(:channel, :payload)"),
        params={"channel": EVENTS_CHANNEL, "payload": DIRECTORY_CHANGED},
    )


def _on_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@dataclass(frozen=True, slots=True)
class LogRows:
    """A tail's read: the rows after its position, and how far the read got."""

    items: list[Event | StaffChange]
    last_id: int | None  # the newest id read, internal or unknown rows included
    full: bool  # `limit` rows came back: there may be more


def rows_after(session: Session, after_id: int, limit: int) -> LogRows:
    """The log's rows with id > after_id in id order, at most `limit`: what a tail hands on.

    Events of every route, and the internal `staff_changed` rows; rows of a type this
    version does not know (a newer version's internal rows) are skipped.
    """
    records = session.exec(
        select(EventRecord)
        .where(col(EventRecord.id) > after_id)
        .order_by(col(EventRecord.id))
        .limit(limit)
    ).all()
    items = [item for item in map(_to_item, records) if item is not None]
    last_id = records[-1].id if records else None
    return LogRows(items, last_id, full=len(records) >= limit)


def newest_id(session: Session) -> int:
    """The newest id in the log, 0 when empty."""
    return session.exec(select(func.max(EventRecord.id))).one() or 0


def _to_item(record: EventRecord) -> Event | StaffChange | None:
    if record.type == STAFF_CHANGED:
        assert record.id is not None
        data = json.loads(record.data)
        groups = {
            int(sid): (frozenset(active), frozenset(ogs))
            for sid, (active, ogs) in data["staff"].items()
        }
        return StaffChange(record.id, data["phase"], groups)
    if record.type not in _EVENT_TYPES:
        return None
    return _to_event(record)


_EVENT_TYPES = frozenset(str(event_type) for event_type in EventType)


def _to_event(record: EventRecord) -> Event:
    assert record.id is not None
    return Event(
        id=record.id,
        type=EventType(record.type),
        active_group_id=record.active_group_id,
        data=json.loads(record.data),
        timestamp=record.created_at,
        route_active_group_id=record.route_active_group_id,
        route_ogs_group_id=record.route_ogs_group_id,
        route_admin=record.route_admin,
        school_id=record.school_id,
    )


def staff_groups(session: Session, staff_id: int) -> Groups:
    """The active groups a staff member supervises now, and the home groups they lead."""
    return staff_groups_many(session, {staff_id})[staff_id]


def staff_groups_many(session: Session, staff_ids: set[int]) -> dict[int, Groups]:
    """`staff_groups` for many staff members in two queries."""
    active: dict[int, set[int]] = {staff_id: set() for staff_id in staff_ids}
    ogs: dict[int, set[int]] = {staff_id: set() for staff_id in staff_ids}
    for staff_id, group_id in session.exec(
        select(Supervision.staff_id, Supervision.active_group_id)
        .join(ActiveGroup, col(ActiveGroup.id) == col(Supervision.active_group_id))
        .where(
            col(Supervision.staff_id).in_(staff_ids),
            col(Supervision.ended_at).is_(None),
            col(ActiveGroup.ended_at).is_(None),
        )
    ).all():
        active[staff_id].add(group_id)
    for staff_id, group_id in session.exec(
        select(OgsGroupLeader.staff_id, OgsGroupLeader.ogs_group_id).where(
            col(OgsGroupLeader.staff_id).in_(staff_ids)
        )
    ).all():
        ogs[staff_id].add(group_id)
    return {sid: (frozenset(active[sid]), frozenset(ogs[sid])) for sid in staff_ids}


class EventLog:
    """Replay source for the hub and the pruning job; reads run in a worker thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        retention_seconds: float,
        replay_limit: int = 2_000,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.retention = timedelta(seconds=retention_seconds)
        self.replay_limit = replay_limit
        self._clock = clock

    def events_after_blocking(
        self,
        last_event_id: int,
        *,
        school_id: int,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
        up_to: int | None = None,
    ) -> list[Event] | None:
        """Events of `school_id` after the id (to `up_to`, if given) routed to those groups,
        and the school's admins' events for an admin (at most `replay_limit`, read as
        `replay_limit + 1` rows); None when the client must resync instead."""
        with Session(self.engine) as session:
            if self._gone_after(session, last_event_id):
                return None
            routes = []
            if active_group_ids:
                routes.append(col(EventRecord.route_active_group_id).in_(active_group_ids))
            if ogs_group_ids:
                routes.append(col(EventRecord.route_ogs_group_id).in_(ogs_group_ids))
            if admin:
                routes.append(col(EventRecord.route_admin).is_(True))
            if not routes:
                return []
            bounds = [
                col(EventRecord.school_id) == school_id,
                col(EventRecord.id) > last_event_id,
            ]
            if up_to is not None:
                bounds.append(col(EventRecord.id) <= up_to)
            rows = session.exec(
                select(EventRecord)
                .where(*bounds, or_(*routes))
                .order_by(col(EventRecord.id))
                .limit(self.replay_limit + 1)
            ).all()
        if len(rows) > self.replay_limit:
            return None  # too much missed: a full refetch is cheaper than a flood
        return [_to_event(row) for row in rows]

    async def events_after(
        self,
        last_event_id: int,
        *,
        school_id: int,
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
        up_to: int | None = None,
    ) -> list[Event] | None:
        """`events_after_blocking` in a worker thread (the hub's `EventHistory`)."""
        return await asyncio.to_thread(
            self.events_after_blocking,
            last_event_id,
            school_id=school_id,
            active_group_ids=active_group_ids,
            ogs_group_ids=ogs_group_ids,
            admin=admin,
            up_to=up_to,
        )

    def _gone_after(self, session: Session, last_event_id: int) -> bool:
        """Whether events after the id were pruned, or are old enough to be (by age now)."""
        state = session.get(EventLogState, 1)
        if state is not None and last_event_id < state.pruned_through_id:
            return True
        first_missed = session.exec(
            select(EventRecord.created_at)
            .where(col(EventRecord.id) > last_event_id)
            .order_by(col(EventRecord.id))
            .limit(1)
        ).first()
        return first_missed is not None and first_missed < self._clock() - self.retention

    def last_event_id(self) -> int:
        """The newest id this log has issued or marked gone (pruned, or before a restore)."""
        with Session(self.engine) as session:
            return self.newest_in(session)

    @staticmethod
    def newest_in(session: Session) -> int:
        """`last_event_id`, read in the caller's session."""
        state = session.get(EventLogState, 1)
        return max(newest_id(session), state.pruned_through_id if state is not None else 0)

    def prune(self, session: Session, *, now: datetime | None = None) -> int:
        """Delete events older than the retention (call inside a write); returns how many."""
        cutoff = (now or utcnow()) - self.retention
        newest_old = session.exec(
            select(func.max(EventRecord.id)).where(col(EventRecord.created_at) < cutoff)
        ).one()
        if newest_old is None:
            return 0
        result = session.exec(delete(EventRecord).where(col(EventRecord.id) <= newest_old))  # type: ignore[call-overload]
        state = session.get(EventLogState, 1) or EventLogState(id=1)
        state.pruned_through_id = max(state.pruned_through_id, newest_old)
        session.add(state)
        logger.info("Event log pruned deleted=%d pruned_through_id=%d", result.rowcount, newest_old)
        return int(result.rowcount)
