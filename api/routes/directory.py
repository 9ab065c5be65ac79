"""Rooms and students for the dashboard's forms; student tags for the simulator (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, func, or_, select

from api.deps import AdminStaff, CurrentStaff, SessionDep
from api.schemas import ErrorOut, RoomPublic, StudentPublic, StudentTag, ValidationErrorOut
from edge_bridge.models import ActiveGroup, RfidTag, Room, Student
from edge_bridge.occupancy import present_by_room

router = APIRouter(prefix="/api", tags=["directory"])
_AUTH = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.get("/rooms", response_model=list[RoomPublic], responses=_AUTH)
def get_rooms(staff: CurrentStaff, session: SessionDep) -> list[RoomPublic]:
    rows = session.exec(
        select(Room, ActiveGroup.id)
        .join(
            ActiveGroup,
            (col(ActiveGroup.room_id) == col(Room.id)) & col(ActiveGroup.ended_at).is_(None),
            isouter=True,
        )
        .order_by(col(Room.id))
    ).all()
    present = present_by_room(session)
    return [
        RoomPublic(
            id=str(room.id),
            name=room.name,
            active_group_id=str(gid) if gid else None,
            student_count=present.get(room.id, 0),
        )
        for room, gid in rows
    ]


@router.get(
    "/students",
    response_model=list[StudentPublic],
    responses={**_AUTH, 422: {"model": ValidationErrorOut}},
)
def get_students(
    staff: CurrentStaff,
    session: SessionDep,
    query: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[StudentPublic]:
    statement = select(Student)
    for word in query.split():
        pattern = f"%{word.lower()}%"
        statement = statement.where(
            or_(
                func.lower(Student.first_name).like(pattern),
                func.lower(Student.last_name).like(pattern),
            )
        )
    rows = session.exec(
        statement.order_by(col(Student.last_name), col(Student.first_name)).limit(limit)
    ).all()
    return [
        StudentPublic(
            student_id=str(s.id),
            student_name=s.display_name,
            ogs_group_id=None if s.ogs_group_id is None else str(s.ogs_group_id),
        )
        for s in rows
    ]


@router.get("/students/tags", response_model=list[StudentTag], responses=_AUTH)
def get_student_tags(staff: AdminStaff, session: SessionDep) -> list[StudentTag]:
    rows = session.exec(
        select(Student, RfidTag.tag)
        .join(RfidTag, col(RfidTag.student_id) == col(Student.id))
        .order_by(col(Student.id))
    ).all()
    return [
        StudentTag(student_id=str(s.id), student_name=s.display_name, tag=tag) for s, tag in rows
    ]
