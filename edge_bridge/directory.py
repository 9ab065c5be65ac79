"""Staff members and the groups they supervise and lead, held in memory.

Every request authenticates and every stream subscribes by these lookups, so they must not
cost a query: thousands of browsers reconnect at once after a restart. The directory is
changed only on the event loop, by the one path into the hub (`store.Announcer`): after each
commit that changes someone's groups, and when a whole new snapshot was read (every few
seconds on SQLite, to pick up an import; on PostgreSQL when the event-log tail is told of a
directory change, see `tail.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from edge_bridge.eventlog import Groups, staff_groups_many
from edge_bridge.models import School, Staff

__all__ = [
    "DirectorySnapshot",
    "Groups",
    "SchoolEntry",
    "StaffDirectory",
    "StaffEntry",
    "load_directory",
]

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
class SchoolEntry:
    """A school as requests see it; `timezone` None means the deployment's SCHOOL_TIMEZONE."""

    id: int
    name: str
    timezone: str | None


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """Every staff member and their groups, and every school, as read in one transaction."""

    staff: dict[int, StaffEntry]
    groups: dict[int, Groups]
    schools: dict[int, SchoolEntry] = field(default_factory=dict)


def load_directory(session: Session) -> DirectorySnapshot:
    """Read every school, every staff member and their groups (three queries plus one)."""
    staff = {
        row.id: StaffEntry(row.id, row.name, row.email, row.admin, row.school_id)
        for row in session.exec(select(Staff)).all()
    }
    groups = staff_groups_many(session, set(staff)) if staff else {}
    schools = {
        row.id: SchoolEntry(row.id, row.name, row.timezone)
        for row in session.exec(select(School)).all()
    }
    return DirectorySnapshot(staff, groups, schools)


class StaffDirectory:
    """Lookups are plain dict reads; updates swap whole dicts."""

    def __init__(self) -> None:
        self._staff: dict[int, StaffEntry] = {}
        self._groups: dict[int, Groups] = {}
        self._schools: dict[int, SchoolEntry] = {}

    def replace(self, snapshot: DirectorySnapshot) -> None:
        """Take a freshly read snapshot as the whole directory."""
        self._staff, self._groups = dict(snapshot.staff), dict(snapshot.groups)
        self._schools = dict(snapshot.schools)

    def reload(self, session: Session) -> None:
        """Read and take a snapshot (for tools and tests; the bridge goes through the hub's
        one entry point instead)."""
        self.replace(load_directory(session))

    def staff(self, staff_id: int) -> StaffEntry | None:
        return self._staff.get(staff_id)

    def school(self, school_id: int) -> SchoolEntry | None:
        return self._schools.get(school_id)

    def schools(self) -> list[SchoolEntry]:
        return sorted(self._schools.values(), key=lambda school: school.id)

    def school_timezone(self, school_id: int, default: ZoneInfo) -> ZoneInfo:
        """The school's time zone, or `default` (SCHOOL_TIMEZONE) when it names none."""
        school = self._schools.get(school_id)
        return ZoneInfo(school.timezone) if school and school.timezone else default

    def groups(self, staff_id: int) -> Groups:
        """(active groups supervised now, home groups led)."""
        return self._groups.get(staff_id, _NO_GROUPS)

    def set_groups(self, changed: dict[int, Groups]) -> None:
        if changed:
            self._groups = {**self._groups, **changed}
