"""Rooms and students for the dashboard's forms; student tags for the simulator (admin).

Each list is of the caller's school only (`School`, `edge_bridge/queries`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminStaff, CurrentStaff, School, SessionDep
from api.schemas import ErrorOut, RoomPublic, StudentPublic, StudentTag, ValidationErrorOut
from edge_bridge.queries.people import list_student_tags, search_students
from edge_bridge.queries.rooms import list_rooms

router = APIRouter(prefix="/api", tags=["directory"])
_AUTH = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.get("/rooms", response_model=list[RoomPublic], responses=_AUTH)
def get_rooms(staff: CurrentStaff, school: School, session: SessionDep) -> list[RoomPublic]:
    return [RoomPublic.model_validate(room) for room in list_rooms(session, school)]


@router.get(
    "/students",
    response_model=list[StudentPublic],
    responses={**_AUTH, 422: {"model": ValidationErrorOut}},
)
def get_students(
    staff: CurrentStaff,
    school: School,
    session: SessionDep,
    query: Annotated[str, Query(max_length=100)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[StudentPublic]:
    students = search_students(session, school, text=query, limit=limit)
    return [StudentPublic.model_validate(student) for student in students]


@router.get("/students/tags", response_model=list[StudentTag], responses=_AUTH)
def get_student_tags(staff: AdminStaff, school: School, session: SessionDep) -> list[StudentTag]:
    return [StudentTag.model_validate(student) for student in list_student_tags(session, school)]
