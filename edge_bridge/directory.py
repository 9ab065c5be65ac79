"""Staff members and the groups they supervise and lead, held in memory.

Every request authenticates and every stream subscribes by these lookups, so they must not
cost a query: thousands of browsers reconnect at once after a restart. The directory is
changed only on the event loop, by the one path into the hub (`store.Announcer`): after each
commit that changes someone's groups, and when a whole new snapshot was read (every few
seconds on SQLite, to pick up an import; on PostgreSQL when the event-log tail is told of a
directory change, see `tail.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from edge_bridge.eventlog import Groups, staff_groups_many
from edge_bridge.models import Staff

__all__ = ["DirectorySnapshot", "Groups", "StaffDirectory", "StaffEntry", "load_directory"]

_NO_GROUPS: Groups = (frozenset(), frozenset())


@dataclass(frozen=True, slots=True)
class StaffEntry:
    """What requests need to know about a staff member."""

    id: int
    name: str
    email: str
    admin: bool
    school_id: int


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """Every staff member and their groups, as read in one transaction."""

    staff: dict[int, StaffEntry]
    groups: dict[int, Groups]


def load_directory(session: Session) -> DirectorySnapshot:
    """Read every staff member and their groups (two queries plus one)."""
    staff = {
        row.id: StaffEntry(row.id, row.name, row.email, row.admin, row.school_id)
        for row in session.exec(select(Staff)).all()
    }
    groups = staff_groups_many(session, set(staff)) if staff else {}
    return DirectorySnapshot(staff, groups)


class StaffDirectory:
    """Lookups are plain dict reads; updates swap whole dicts."""

    def __init__(self) -> None:
        self._staff: dict[int, StaffEntry] = {}
        self._groups: dict[int, Groups] = {}

    def replace(self, snapshot: DirectorySnapshot) -> None:
        """Take a freshly read snapshot as the whole directory."""
        self._staff, self._groups = dict(snapshot.staff), dict(snapshot.groups)

    def reload(self, session: Session) -> None:
        """Read and take a snapshot (for tools and tests; the bridge goes through the hub's
        one entry point instead)."""
        self.replace(load_directory(session))

    def staff(self, staff_id: int) -> StaffEntry | None:
        return self._staff.get(staff_id)

    def groups(self, staff_id: int) -> Groups:
        """(active groups supervised now, home groups led)."""
        return self._groups.get(staff_id, _NO_GROUPS)

    def set_groups(self, changed: dict[int, Groups]) -> None:
        if changed:
            self._groups = {**self._groups, **changed}
