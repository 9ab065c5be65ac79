"""Students of one school: one by id, a name search, and their tags (for the simulator)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, func, or_, select

from edge_bridge.models import RfidTag, Student
from edge_bridge.queries import SchoolScope, get_owned


@dataclass(frozen=True, slots=True)
class StudentSummary:
    """A student as search results show them."""

    student_id: int
    student_name: str
    ogs_group_id: int | None


@dataclass(frozen=True, slots=True)
class TaggedStudent:
    """A student's tag (admins only: a tag is what a card says)."""

    student_id: int
    student_name: str
    tag: str


def get_student(session: Session, scope: SchoolScope, *, student_id: int) -> Student:
    """The school's student with this id; else `NotFoundError` (missing or another's)."""
    return get_owned(session, scope, Student, student_id)


def search_students(
    session: Session, scope: SchoolScope, *, text: str = "", limit: int = 20
) -> list[StudentSummary]:
    """The school's students whose first or last name contains every word of `text`
    (case-insensitive), by last and first name, at most `limit`."""
    query = select(Student).where(Student.school_id == scope.school_id)
    for word in text.split():
        pattern = f"%{word.lower()}%"
        query = query.where(
            or_(
                func.lower(Student.first_name).like(pattern),
                func.lower(Student.last_name).like(pattern),
            )
        )
    rows = session.exec(
        query.order_by(col(Student.last_name), col(Student.first_name)).limit(limit)
    ).all()
    return [
        StudentSummary(
            student_id=student.id,
            student_name=student.display_name,
            ogs_group_id=student.ogs_group_id,
        )
        for student in rows
    ]


def list_student_tags(session: Session, scope: SchoolScope) -> list[TaggedStudent]:
    """Every tag of the school's students, by student id."""
    rows = session.exec(
        select(Student, RfidTag.tag)
        .join(
            RfidTag,
            (col(RfidTag.student_id) == col(Student.id))
            & (col(RfidTag.school_id) == col(Student.school_id)),
        )
        .where(Student.school_id == scope.school_id)
        .order_by(col(Student.id), col(RfidTag.tag))
    ).all()
    return [
        TaggedStudent(student_id=student.id, student_name=student.display_name, tag=tag)
        for student, tag in rows
    ]
