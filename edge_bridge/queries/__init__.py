"""Every read of a school's records goes through this package, and every function in it
takes the school (`SchoolScope`).

A scope comes from a request's token (`api/deps.py` `School`) or from a reader's device row
(the scan path); nothing else makes one. A lookup by id of another school's record answers
exactly like a missing one (`NotFoundError`, 404), so ids do not leak which other records
exist. Route modules import queries from here and never build a query of a school-owned
table themselves (`tests/unit/test_layering.py` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlmodel import Session

from edge_bridge.errors import NotFoundError

__all__ = ["SchoolScope", "get_owned"]


@dataclass(frozen=True, slots=True)
class SchoolScope:
    """The one school a request or a reader may see, and that school's time zone."""

    school_id: int
    timezone: ZoneInfo


class _Owned(Protocol):
    school_id: int


Owned = TypeVar("Owned", bound=_Owned)


def get_owned(session: Session, scope: SchoolScope, model: type[Owned], key: Any) -> Owned:
    """The row of `model` with this primary key if it belongs to the scope's school; else
    `NotFoundError` naming what was asked for (the same answer as for a missing row)."""
    row = session.get(model, key)
    if row is None or row.school_id != scope.school_id:
        label = getattr(model, "__tablename__", model.__name__).replace("_", " ")
        msg = f"{label.capitalize()} {key} not found"
        raise NotFoundError(msg)
    return row
