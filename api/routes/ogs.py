"""Home groups: the list (admins, for the office view's filter) and a group's roster with
where each child is now (`GET /api/ogs-groups/{id}/students`, leaders and admins).

Both are of the caller's school only: another school's home group is "not found".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from api.deps import AdminStaff, CurrentStaff, School, SessionDep
from api.schemas import ErrorOut, OgsGroupPublic, RosterEntry, ValidationErrorOut
from edge_bridge.queries.home_groups import get_home_group, is_leader, list_home_groups, list_roster

router = APIRouter(prefix="/api/ogs-groups", tags=["home groups"])


@router.get(
    "",
    response_model=list[OgsGroupPublic],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
def get_ogs_groups(staff: AdminStaff, school: School, session: SessionDep) -> list[OgsGroupPublic]:
    return [OgsGroupPublic.model_validate(group) for group in list_home_groups(session, school)]


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
    group_id: Annotated[int, Path(ge=1)], staff: CurrentStaff, school: School, session: SessionDep
) -> list[RosterEntry]:
    get_home_group(session, school, group_id=group_id)
    if not (staff.admin or is_leader(session, school, group_id=group_id, staff_id=staff.staff_id)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You do not lead this home group")
    return [
        RosterEntry.model_validate(child)
        for child in list_roster(session, school, group_id=group_id)
    ]
