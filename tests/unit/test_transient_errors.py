"""Which database errors mean "the database is away, retry" and which mean "this work is bad"."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc

from edge_bridge.dberrors import is_transient_error


def _wrapped(orig: Exception, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises around a driver error."""
    base = sqlite3.Error if isinstance(orig, sqlite3.Error) else psycopg.Error
    wrapped = sa_exc.DBAPIError.instance(
        "INSERT …", None, orig, base, connection_invalidated=invalidated
    )
    assert isinstance(wrapped, sa_exc.DBAPIError)
    return wrapped


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database table is locked"),
        psycopg.OperationalError("connection failed: Connection refused"),
        pg_errors.SerializationFailure("could not serialize access"),
        pg_errors.DeadlockDetected("deadlock detected"),
        pg_errors.LockNotAvailable("canceling statement due to lock timeout"),
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.DiskFull("could not extend file"),
        pg_errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.OperationalError("disk I/O error"),
        sqlite3.OperationalError("unable to open database file"),
    ],
)
def test_lost_connections_locks_and_serialization_failures_are_transient(
    orig: Exception,
) -> None:
    assert is_transient_error(_wrapped(orig))


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("no such table: processed_scan"),
        sqlite3.IntegrityError("UNIQUE constraint failed: visit.student_id"),
        pg_errors.UniqueViolation("duplicate key value"),
        pg_errors.StringDataRightTruncation("value too long"),
        pg_errors.UndefinedTable("relation does not exist"),
    ],
)
def test_errors_that_are_about_the_statement_are_not_transient(orig: Exception) -> None:
    assert not is_transient_error(_wrapped(orig))


def test_an_invalidated_connection_is_transient_whatever_the_driver_said() -> None:
    assert is_transient_error(_wrapped(psycopg.InterfaceError("closed"), invalidated=True))


def test_a_transient_error_is_found_behind_the_exception_that_it_caused() -> None:
    try:
        try:
            raise _wrapped(sqlite3.OperationalError("database is locked"))
        except sa_exc.DBAPIError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as outer:
        assert is_transient_error(outer)


def test_a_bug_raised_while_handling_a_transient_error_is_not_transient() -> None:
    try:
        try:
            raise _wrapped(sqlite3.OperationalError("database is locked"))
        except sa_exc.DBAPIError:
            raise KeyError("reader-101")  # noqa: B904  (a bug in the handler, not `from`)
    except KeyError as bug:
        assert bug.__context__ is not None
        assert not is_transient_error(bug)


def test_a_real_sqlite_error_is_told_by_its_result_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as missing:
            writer.execute("SELECT * FROM no_such_table")
    finally:
        writer.close()
        holder.close()

    assert locked.value.sqlite_errorcode & 0xFF == 5  # SQLITE_BUSY
    assert is_transient_error(_wrapped(locked.value))
    assert not is_transient_error(_wrapped(missing.value))


def test_a_plain_bug_is_not_transient() -> None:
    assert not is_transient_error(KeyError("reader-101"))
