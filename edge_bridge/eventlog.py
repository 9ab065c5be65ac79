"""The event log: append inside a write transaction, read back for replay, prune by age.

Replay judges age itself: a client that missed an event older than the retention gets
`None` (a resync) even before the pruning job has deleted it, so the answer does not depend
on when that job last ran. `event_log_state.pruned_through_id` marks ids that are gone: by
pruning, or by a restore (`backup.py`), which sets it above every id issued before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, insert, or_
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


def append_events(session: Session, new_events: list[NewEvent]) -> list[Event]:
    """Insert events in the caller's transaction, in order; returns them with their ids."""
    now = utcnow()
    rows = [
        {
            "type": str(new_event.type),
            "active_group_id": new_event.active_group_id,
            "route_active_group_id": new_event.route_active_group_id,
            "route_ogs_group_id": new_event.route_ogs_group_id,
            "route_admin": new_event.route_admin,
            "data": json.dumps(new_event.data, ensure_ascii=False, separators=(",", ":")),
            "created_at": now,
        }
        for new_event in new_events
    ]
    statement = insert(EventRecord).returning(col(EventRecord.id), sort_by_parameter_order=True)
    ids = session.connection().execute(statement, rows).scalars().all()
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
        )
        for event_id, new_event in zip(ids, new_events, strict=True)
    ]


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
    )


def staff_groups(session: Session, staff_id: int) -> tuple[frozenset[int], frozenset[int]]:
    """The active groups a staff member supervises now, and the home groups they lead."""
    return staff_groups_many(session, {staff_id})[staff_id]


def staff_groups_many(
    session: Session, staff_ids: set[int]
) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
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
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
    ) -> list[Event] | None:
        """Events after the id routed to those groups, and the admins' events for an admin
        (at most `replay_limit`, read as `replay_limit + 1` rows); None when the client must
        resync instead."""
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
            rows = session.exec(
                select(EventRecord)
                .where(col(EventRecord.id) > last_event_id, or_(*routes))
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
        active_group_ids: frozenset[int],
        ogs_group_ids: frozenset[int],
        admin: bool = False,
    ) -> list[Event] | None:
        return await asyncio.to_thread(
            self.events_after_blocking,
            last_event_id,
            active_group_ids=active_group_ids,
            ogs_group_ids=ogs_group_ids,
            admin=admin,
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
            newest = session.exec(select(func.max(EventRecord.id))).one() or 0
            state = session.get(EventLogState, 1)
        return max(newest, state.pruned_through_id if state is not None else 0)

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
