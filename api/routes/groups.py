"""Active groups: list, start, end; the present-students list; manual check-in and check-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from sqlmodel import Session, col, func, select

from api.deps import CurrentStaff, SessionDep, StoreDep
from api.schemas import (
    ActiveGroupCreate,
    ActiveGroupEnded,
    ActiveGroupPublic,
    ErrorOut,
    ManualResult,
    ValidationErrorOut,
    VisitCreate,
    VisitDisplay,
)
from api.security import Principal
from edge_bridge.events import Source
from edge_bridge.models import ActiveGroup, Room, Student, Supervision, Visit, utcnow
from edge_bridge.store import Tx
from edge_bridge.visits import (
    Actor,
    check_in,
    check_out,
    end_activity,
    running_group,
    start_activity,
)

router = APIRouter(prefix="/api/active/groups", tags=["active groups"])
_AUTH = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_INVALID = {422: {"model": ValidationErrorOut}}
_GROUP = {**_AUTH, 404: {"model": ErrorOut}, **_INVALID}
GroupId = Annotated[int, Path(ge=1)]


def list_groups(session: Session, *, staff_id: int | None) -> list[ActiveGroupPublic]:
    """Running groups (all, or those the staff member supervises) in three queries."""
    query = (
        select(ActiveGroup, Room.name)
        .join(Room, col(Room.id) == col(ActiveGroup.room_id))
        .where(col(ActiveGroup.ended_at).is_(None))
        .order_by(col(ActiveGroup.id))
    )
    if staff_id is not None:
        query = query.join(Supervision, col(Supervision.active_group_id) == col(ActiveGroup.id))
        query = query.where(Supervision.staff_id == staff_id, col(Supervision.ended_at).is_(None))
    rows = session.exec(query).all()
    ids = [group.id for group, _ in rows]
    supervisors: dict[int, list[str]] = {}
    for group_id, supervisor in session.exec(
        select(Supervision.active_group_id, Supervision.staff_id)
        .where(col(Supervision.active_group_id).in_(ids), col(Supervision.ended_at).is_(None))
        .order_by(col(Supervision.staff_id))
    ).all():
        supervisors.setdefault(group_id, []).append(str(supervisor))
    counts = dict(
        session.exec(
            select(Visit.active_group_id, func.count())
            .where(col(Visit.active_group_id).in_(ids), col(Visit.exit_time).is_(None))
            .group_by(col(Visit.active_group_id))
        ).all()
    )
    return [
        ActiveGroupPublic(
            id=str(group.id),
            name=group.name,
            room_id=str(group.room_id),
            room_name=room_name,
            started_at=group.started_at,
            supervisor_ids=supervisors.get(group.id, []),  # type: ignore[arg-type]
            student_count=counts.get(group.id, 0),
        )
        for group, room_name in rows
    ]


def require_supervisor(group_id: GroupId, staff: CurrentStaff, session: SessionDep) -> Principal:
    """403 unless the caller supervises the group (admins may act on any)."""
    group = session.get(ActiveGroup, group_id)
    if group is None or group.ended_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Active group {group_id} not found")
    if staff.admin:
        return staff
    supervising = session.exec(
        select(Supervision.id).where(
            Supervision.active_group_id == group_id,
            Supervision.staff_id == staff.staff_id,
            col(Supervision.ended_at).is_(None),
        )
    ).first()
    if supervising is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You do not supervise this group")
    return staff


Supervisor = Annotated[Principal, Depends(require_supervisor)]


@router.get("", response_model=list[ActiveGroupPublic], responses={**_AUTH, **_INVALID})
def get_groups(
    staff: CurrentStaff,
    session: SessionDep,
    all_groups: Annotated[bool, Query(alias="all")] = False,
) -> list[ActiveGroupPublic]:
    if all_groups and not staff.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="all=1 is for admins")
    return list_groups(session, staff_id=None if all_groups else staff.staff_id)


@router.post(
    "",
    response_model=ActiveGroupPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_AUTH, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, **_INVALID},
)
async def post_group(
    body: ActiveGroupCreate, staff: CurrentStaff, store: StoreDep
) -> ActiveGroupPublic:
    def work(tx: Tx) -> int:
        group = start_activity(
            tx,
            school_id=staff.school_id,
            name=body.name,
            room_id=body.room_id,
            staff_id=staff.staff_id,
            at=utcnow(),
        )
        return group.id  # type: ignore[return-value]

    group_id = await store.write(work)
    groups = await store.read(lambda session: list_groups(session, staff_id=None))
    return next(group for group in groups if group.id == str(group_id))


@router.post("/{group_id}/end", response_model=ActiveGroupEnded, responses=_GROUP)
async def post_end(group_id: GroupId, staff: Supervisor, store: StoreDep) -> ActiveGroupEnded:
    at = utcnow()
    by = Actor(Source.MANUAL, staff_id=staff.staff_id)
    student_ids = await store.write(lambda tx: end_activity(tx, group_id, at=at, by=by))
    return ActiveGroupEnded(
        id=str(group_id), ended_at=at, student_ids=[str(i) for i in student_ids]
    )


@router.get("/{group_id}/visits/display", response_model=list[VisitDisplay], responses=_GROUP)
def get_visits(group_id: GroupId, staff: Supervisor, session: SessionDep) -> list[VisitDisplay]:
    rows = session.exec(
        select(Visit.student_id, Student.first_name, Student.last_name, Visit.entry_time)
        .join(Student, col(Student.id) == col(Visit.student_id))
        .where(Visit.active_group_id == group_id, col(Visit.exit_time).is_(None))
        .order_by(col(Student.last_name), col(Student.first_name))
    ).all()
    return [
        VisitDisplay(student_id=str(sid), student_name=f"{first} {last}", entry_time=entry)
        for sid, first, last, entry in rows
    ]


def _student(session: Session, student_id: int) -> Student:
    student = session.get(Student, student_id)
    if student is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Student {student_id} not found")
    return student


@router.post(
    "/{group_id}/visits",
    response_model=ManualResult,
    status_code=status.HTTP_201_CREATED,
    responses={**_GROUP, 409: {"model": ErrorOut}},
)
async def post_visit(
    group_id: GroupId, body: VisitCreate, staff: Supervisor, store: StoreDep
) -> ManualResult:
    def work(tx: Tx) -> str:
        student = _student(tx.session, body.student_id)
        group = running_group(tx, group_id)
        by = Actor(Source.MANUAL, staff_id=staff.staff_id)
        return str(check_in(tx, student, group, at=utcnow(), source=Source.MANUAL, by=by))

    result = await store.write(work)
    return ManualResult(
        result=result, student_id=str(body.student_id), active_group_id=str(group_id)
    )


@router.post(
    "/{group_id}/visits/{student_id}/checkout", response_model=ManualResult, responses=_GROUP
)
async def post_checkout(
    group_id: GroupId, student_id: Annotated[int, Path(ge=1)], staff: Supervisor, store: StoreDep
) -> ManualResult:
    def work(tx: Tx) -> None:
        student = _student(tx.session, student_id)
        by = Actor(Source.MANUAL, staff_id=staff.staff_id)
        check_out(tx, student, group_id, at=utcnow(), source=Source.MANUAL, by=by)

    await store.write(work)
    return ManualResult(
        result="checked_out", student_id=str(student_id), active_group_id=str(group_id)
    )
