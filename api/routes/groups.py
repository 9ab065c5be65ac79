"""Active groups: list, start, end; the present-students list; manual check-in and check-out.

Every handler takes the caller's school (`School`) and reads through `edge_bridge/queries`,
so a group, room or student of another school is "not found", exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from api.deps import CurrentStaff, School, SessionDep, StoreDep
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
from edge_bridge.models import utcnow
from edge_bridge.queries.groups import (
    get_active_group_summary,
    get_running_group,
    is_supervisor,
    list_active_groups,
    list_present_students,
)
from edge_bridge.queries.people import get_student
from edge_bridge.store import Tx
from edge_bridge.visits import Actor, check_in, check_out, end_activity, start_activity

router = APIRouter(prefix="/api/active/groups", tags=["active groups"])
_AUTH = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}
_INVALID = {422: {"model": ValidationErrorOut}}
_GROUP = {**_AUTH, 404: {"model": ErrorOut}, **_INVALID}
GroupId = Annotated[int, Path(ge=1)]


def require_supervisor(
    group_id: GroupId, staff: CurrentStaff, school: School, session: SessionDep
) -> Principal:
    """404 unless the group runs in the caller's school; then 403 unless the caller
    supervises it (admins may act on any group of their school)."""
    get_running_group(session, school, group_id=group_id)
    if staff.admin or is_supervisor(session, school, group_id=group_id, staff_id=staff.staff_id):
        return staff
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You do not supervise this group")


Supervisor = Annotated[Principal, Depends(require_supervisor)]


def _manual(staff: Principal) -> Actor:
    return Actor(Source.MANUAL, staff_id=staff.staff_id)


@router.get("", response_model=list[ActiveGroupPublic], responses={**_AUTH, **_INVALID})
def get_groups(
    staff: CurrentStaff,
    school: School,
    session: SessionDep,
    all_groups: Annotated[bool, Query(alias="all")] = False,
) -> list[ActiveGroupPublic]:
    if all_groups and not staff.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="all=1 is for admins")
    supervised_by = None if all_groups else staff.staff_id
    groups = list_active_groups(session, school, supervised_by=supervised_by)
    return [ActiveGroupPublic.model_validate(group) for group in groups]


@router.post(
    "",
    response_model=ActiveGroupPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_AUTH, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, **_INVALID},
)
async def post_group(
    body: ActiveGroupCreate, staff: CurrentStaff, school: School, store: StoreDep
) -> ActiveGroupPublic:
    def work(tx: Tx) -> int:
        group = start_activity(
            tx,
            school_id=school.school_id,
            name=body.name,
            room_id=body.room_id,
            staff_id=staff.staff_id,
            at=utcnow(),
        )
        return group.id  # type: ignore[return-value]

    group_id = await store.write(work)
    group = await store.read(
        lambda session: get_active_group_summary(session, school, group_id=group_id)
    )
    return ActiveGroupPublic.model_validate(group)


@router.post("/{group_id}/end", response_model=ActiveGroupEnded, responses=_GROUP)
async def post_end(
    group_id: GroupId, staff: Supervisor, school: School, store: StoreDep
) -> ActiveGroupEnded:
    at = utcnow()

    def work(tx: Tx) -> list[int]:
        get_running_group(tx.session, school, group_id=group_id)
        return end_activity(tx, group_id, at=at, by=_manual(staff))

    student_ids = await store.write(work)
    ids = [str(student_id) for student_id in student_ids]
    return ActiveGroupEnded(id=str(group_id), ended_at=at, student_ids=ids)


@router.get("/{group_id}/visits/display", response_model=list[VisitDisplay], responses=_GROUP)
def get_visits(
    group_id: GroupId, staff: Supervisor, school: School, session: SessionDep
) -> list[VisitDisplay]:
    students = list_present_students(session, school, group_id=group_id)
    return [VisitDisplay.model_validate(student) for student in students]


@router.post(
    "/{group_id}/visits",
    response_model=ManualResult,
    status_code=status.HTTP_201_CREATED,
    responses={**_GROUP, 409: {"model": ErrorOut}},
)
async def post_visit(
    group_id: GroupId, body: VisitCreate, staff: Supervisor, school: School, store: StoreDep
) -> ManualResult:
    def work(tx: Tx) -> str:
        student = get_student(tx.session, school, student_id=body.student_id)
        group = get_running_group(tx.session, school, group_id=group_id)
        by = _manual(staff)
        return str(check_in(tx, student, group, at=utcnow(), source=Source.MANUAL, by=by))

    result = await store.write(work)
    return ManualResult(
        result=result, student_id=str(body.student_id), active_group_id=str(group_id)
    )


@router.post(
    "/{group_id}/visits/{student_id}/checkout", response_model=ManualResult, responses=_GROUP
)
async def post_checkout(
    group_id: GroupId,
    student_id: Annotated[int, Path(ge=1)],
    staff: Supervisor,
    school: School,
    store: StoreDep,
) -> ManualResult:
    def work(tx: Tx) -> None:
        student = get_student(tx.session, school, student_id=student_id)
        get_running_group(tx.session, school, group_id=group_id)
        check_out(tx, student, group_id, at=utcnow(), source=Source.MANUAL, by=_manual(staff))

    await store.write(work)
    return ManualResult(
        result="checked_out", student_id=str(student_id), active_group_id=str(group_id)
    )
