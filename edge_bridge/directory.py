"""Staff members and the groups they supervise and lead, held in memory.

Every request authenticates and every stream subscribes by these lookups, so they must not
cost a query: thousands of browsers reconnect at once after a restart. The single writer
keeps the groups current after each commit that changes them, and the bridge reloads the
whole directory every few seconds to pick up changes made by other processes (an import).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from edge_bridge.eventlog import staff_groups_many
from edge_bridge.models import Staff

Groups = tuple[frozenset[int], frozenset[int]]
_NO_GROUPS: Groups = (frozenset(), frozenset())


@dataclass(frozen=True, slots=True)
class StaffEntry:
    """What requests need to know about a staff member."""

    id: int
    name: str
    email: str
    admin: bool


class StaffDirectory:
    """Lookups are plain dict reads; updates swap whole dicts (safe across threads)."""

    def __init__(self) -> None:
        self._staff: dict[int, StaffEntry] = {}
        self._groups: dict[int, Groups] = {}

    def reload(self, session: Session) -> None:
        """Read every staff member and their groups (two queries plus one)."""
        staff = {
            row.id: StaffEntry(row.id, row.name, row.email, row.admin)
            for row in session.exec(select(Staff)).all()
        }
        groups = staff_groups_many(session, set(staff)) if staff else {}
        self._staff, self._groups = staff, groups

    def staff(self, staff_id: int) -> StaffEntry | None:
        return self._staff.get(staff_id)

    def groups(self, staff_id: int) -> Groups:
        """(active groups supervised now, home groups led)."""
        return self._groups.get(staff_id, _NO_GROUPS)

    def set_groups(self, changed: dict[int, Groups]) -> None:
        if changed:
            self._groups = {**self._groups, **changed}
