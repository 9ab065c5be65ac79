"""Which database errors mean "the database is away for now, retry" and which "this is bad".

A transient failure says nothing about the work that hit it: the ingest retries its batch
unacknowledged instead of answering `rejected`. Transient: a lost or invalidated connection,
no pooled connection free in time, SQLite busy/locked and the failures of the storage under
it (I/O error, disk full, cannot open the file), PostgreSQL connection exceptions (08),
insufficient resources such as a full disk (53), operator intervention such as a shutdown or
a server still starting (57), a read-only transaction during a fail-over (25006),
serialization failures, deadlocks and lock timeouts. Anything else is about the statement.

Only the explicit cause chain (`raise … from …`) is followed: a plain bug raised while an
`except` block was handling a transient error is a bug, not a reason to retry forever.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
_TRANSIENT_SQLSTATES = frozenset({"25006", "40001", "40P01", "55P03"})
# SQLite primary result codes (errorcode & 0xFF): BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL.
_TRANSIENT_SQLITE_CODES = frozenset({5, 6, 10, 13, 14, 15})
_TRANSIENT_SQLITE_WORDS = ("locked", "busy", "disk i/o error", "disk is full", "unable to open")


def is_transient_error(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, says the database is away for now."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_one(current):
            return True
        current = current.__cause__
    return False


def _is_transient_one(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection became free
        return True
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    module = type(orig).__module__
    if module.startswith("psycopg"):
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is None:  # refused, reset, closed: no server answer to carry a state
            return _is_operational(orig)
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if module.startswith("sqlite3") and _is_operational(orig):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _TRANSIENT_SQLITE_CODES
        message = str(orig).lower()
        return any(word in message for word in _TRANSIENT_SQLITE_WORDS)
    return False


def _is_operational(error: BaseException) -> bool:
    return any(cls.__name__ == "OperationalError" for cls in type(error).__mro__)
