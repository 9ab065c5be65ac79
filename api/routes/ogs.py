"""Home groups: the list (admins, for the office view's filter) and a group's roster with
where each child is now (`GET /api/ogs-groups/{id}/students`, leaders and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlmodel import col, select

from api.deps import AdminStaff, CurrentStaff, SessionDep
from api.routes.me import led_groups
from api.schemas import ErrorOut, OgsGroupPublic, RosterEntry, ValidationErrorOut
from edge_bridge.models import ActiveGroup, OgsGroup, OgsGroupLeader, Room, Student, Visit

router = APIRouter(prefix="/api/ogs-groups", tags=["home groups"])


@router.get(
    "",
    response_model=list[OgsGroupPublic],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
def get_ogs_groups(staff: AdminStaff, session: SessionDep) -> list[OgsGroupPublic]:
    return led_groups(session, None)


@router.get(
    "/{group_id}/students",
    response_model=list[RosterEntry],
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        422: {"model": ValidationErrorOut},
    },
)
def get_roster(
    group_id: Annotated[int, Path(ge=1)], staff: CurrentStaff, session: SessionDep
) -> list[RosterEntry]:
    if session.get(OgsGroup, group_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Home group {group_id} not found")
    leads = session.get(OgsGroupLeader, (group_id, staff.staff_id))
    if leads is None and not staff.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You do not lead this home group")
    rows = session.exec(
        select(Student, Visit.active_group_id, Visit.entry_time, Room.name)
        .join(
            Visit,
            (col(Visit.student_id) == col(Student.id)) & col(Visit.exit_time).is_(None),
            isouter=True,
        )
        .join(ActiveGroup, col(ActiveGroup.id) == col(Visit.active_group_id), isouter=True)
        .join(Room, col(Room.id) == col(ActiveGroup.room_id), isouter=True)
        .where(Student.ogs_group_id == group_id)
        .order_by(col(Student.last_name), col(Student.first_name))
    ).all()
    return [
        RosterEntry(
            student_id=str(student.id),
            student_name=student.display_name,
            status="present" if active_group_id else "away",
            active_group_id=str(active_group_id) if active_group_id else None,
            room_name=room_name,
            since=since,
        )
        for student, active_group_id, since, room_name in rows
    ]
