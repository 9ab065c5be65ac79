"""`GET /api/me`: the signed-in staff member and their groups (logout: api/routes/auth.py)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session, col, select

from api.deps import CurrentStaff, SessionDep
from api.routes.groups import list_groups
from api.schemas import ErrorOut, MePublic, OgsGroupPublic
from edge_bridge.models import OgsGroup, OgsGroupLeader, Room

router = APIRouter(prefix="/api", tags=["me"])


def led_groups(session: Session, staff_id: int | None) -> list[OgsGroupPublic]:
    """Home groups the staff member leads (all of them for None)."""
    query = select(OgsGroup, Room.name).join(
        Room, col(Room.id) == col(OgsGroup.room_id), isouter=True
    )
    if staff_id is not None:
        query = query.join(
            OgsGroupLeader, col(OgsGroupLeader.ogs_group_id) == col(OgsGroup.id)
        ).where(OgsGroupLeader.staff_id == staff_id)
    return [
        OgsGroupPublic(
            id=str(group.id),
            name=group.name,
            room_id=None if group.room_id is None else str(group.room_id),
            room_name=room_name,
        )
        for group, room_name in session.exec(query.order_by(col(OgsGroup.id))).all()
    ]


@router.get(
    "/me", response_model=MePublic, responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
)
def get_me(staff: CurrentStaff, session: SessionDep) -> MePublic:
    return MePublic(
        id=str(staff.staff_id),
        name=staff.name,
        email=staff.email,
        admin=staff.admin,
        active_groups=list_groups(session, staff_id=staff.staff_id),
        ogs_groups=led_groups(session, staff.staff_id),
    )
