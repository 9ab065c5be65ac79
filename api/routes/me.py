"""`GET /api/me`: the signed-in staff member and their groups (logout: api/routes/auth.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentStaff, School, SessionDep
from api.schemas import ActiveGroupPublic, ErrorOut, MePublic, OgsGroupPublic
from edge_bridge.queries.groups import list_active_groups
from edge_bridge.queries.home_groups import list_home_groups

router = APIRouter(prefix="/api", tags=["me"])


@router.get(
    "/me", response_model=MePublic, responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
)
def get_me(staff: CurrentStaff, school: School, session: SessionDep) -> MePublic:
    groups = list_active_groups(session, school, supervised_by=staff.staff_id)
    home_groups = list_home_groups(session, school, led_by=staff.staff_id)
    return MePublic(
        id=str(staff.staff_id),
        name=staff.name,
        email=staff.email,
        admin=staff.admin,
        active_groups=[ActiveGroupPublic.model_validate(group) for group in groups],
        ogs_groups=[OgsGroupPublic.model_validate(group) for group in home_groups],
    )
