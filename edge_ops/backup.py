"""`edge-bridge backup FILE` and `restore FILE` for SQLite; PostgreSQL uses pg_dump.

Backup uses SQLite's online backup API (`sqlite3.Connection.backup`): a consistent snapshot
of every committed transaction, taken while the server keeps running and writing (in WAL
mode a reader never blocks the writer). The copy is written next to FILE and renamed over it
only once it is complete and checked, so a nightly job never leaves half a backup behind.

Restore refuses a file that is not an edge-bridge database this version can run (SQLite
header, `quick_check`, Alembic revision known to this code, core tables present), and it
refuses while any process has the database open: in WAL mode every open connection holds a
shared lock on the file, so leaving WAL mode, which needs the file to itself, fails while the
server runs. The new file replaces the old one in one rename; the old one is kept beside it.
An older backup is migrated by `serve` on its next start.

Event ids keep increasing across a restore: the restored file's id sequence is moved past
the highest id the replaced database ever issued, and every id up to there is marked gone
(`event_log_state.pruned_through_id`), so a browser resuming from before the restore gets
`resync` (the state went backwards) instead of replaying from an id that means something else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory

from edge_bridge.config import Settings, redact_url
from edge_bridge.db import MIGRATIONS_DIR
from edge_bridge.errors import EdgeBridgeError

logger = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
CORE_TABLES = frozenset(
    {"student", "staff", "visit", "active_group", "event_log", "alembic_version"}
)


class BackupError(EdgeBridgeError):
    """A backup or restore was refused or failed; nothing was changed."""


def backup_cli(settings: Settings, args: argparse.Namespace) -> int:
    """Dispatch `edge-bridge backup|restore FILE`; returns the exit code."""
    database = settings.sqlite_path
    if database is None:
        print(_not_sqlite_message(settings.database_url))
        return 2
    target = Path(args.file)
    if args.backup_action == "backup":
        size = backup(database, target)
        print(f"Backup written to {target} ({size} bytes); restore: edge-bridge restore {target}")
        return 0
    kept = restore(target, database)
    kept_note = f"; the previous database is kept as {kept}" if kept else ""
    print(f"Restored {database} from {target}{kept_note}. Start the server again.")
    return 0


def _not_sqlite_message(url: str) -> str:
    if url.startswith("postgresql"):
        return (
            f"DATABASE_URL is PostgreSQL ({redact_url(url)}): edge-bridge backup/restore handle "
            "SQLite only.\nBack up with pg_dump, e.g.  pg_dump --format=custom "
            "--file=edge_bridge.dump DBNAME\nand restore (server stopped) with  pg_restore "
            "--clean --if-exists --dbname=DBNAME edge_bridge.dump\n"
            "See docs/operations.md, section Backups."
        )
    return f"DATABASE_URL {redact_url(url)} is not a SQLite file: nothing to back up here."


def backup(database: Path, target: Path) -> int:
    """Copy the live database to `target` (replaced atomically); returns its size in bytes."""
    if not database.is_file():
        msg = f"no database at {database}: check DATABASE_URL"
        raise BackupError(msg)
    if target.resolve() == database.resolve():
        msg = f"the backup file must not be the database itself, got: {target}"
        raise BackupError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_beside(target) as partial:
        _copy(sqlite3.connect(database), partial)
        _replace(partial, target)
    logger.info("Database backed up database=%s target=%s", database, target)
    return target.stat().st_size


def restore(source: Path, database: Path) -> Path | None:
    """Replace the database with a checked copy of `source`; returns where the old one is kept.

    Raises BackupError, changing nothing, when `source` is not a usable edge-bridge database
    or when any process (the server) has the database open.
    """
    check_database_file(source)
    if source.resolve() == database.resolve():
        msg = f"the backup file is the database itself: {source}"
        raise BackupError(msg)
    database.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(database) as live, _temporary_beside(database) as partial:
        high_water = _event_id_high_water(live) if live is not None else 0
        _copy(sqlite3.connect(_read_only(source), uri=True), partial)
        floor = _continue_event_ids(partial, high_water)
        kept = _keep_previous(database) if live is not None else None
        _replace(partial, database)
    logger.info(
        "Database restored database=%s source=%s kept=%s event_ids_from=%d",
        database,
        source,
        kept,
        floor + 1,
    )
    return kept


def _event_id_high_water(live: sqlite3.Connection) -> int:
    """The highest event id the database being replaced issued (or marked gone)."""
    try:
        newest = live.execute(
            "SELECT max(id) FROM event_log UNION ALL "
            "SELECT max(seq) FROM sqlite_sequence WHERE name = 'event_log' UNION ALL "
            "SELECT max(pruned_through_id) FROM event_log_state"
        ).fetchall()
    except sqlite3.DatabaseError as exc:  # not ours or damaged: nothing to continue from
        logger.warning("Restore found no event ids in the old database reason=%s", exc)
        return 0
    return max((int(row[0]) for row in newest if row[0] is not None), default=0)


def _continue_event_ids(partial: Path, high_water: int) -> int:
    """Make the restored file's next event id exceed `high_water`; returns the gone-through id.

    Ids up to `high_water + 1` count as gone (`high_water` itself too: a client that saw the
    newest event before the restore holds a state the restore took back).
    """
    with closing(sqlite3.connect(partial)) as copy:
        restored = _event_id_high_water(copy)
        if high_water == 0:
            return restored
        floor = max(restored, high_water + 1)
        with copy:  # one transaction
            copy.execute("DELETE FROM sqlite_sequence WHERE name = 'event_log'")
            copy.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('event_log', ?)", (floor,)
            )
            copy.execute(
                "INSERT INTO event_log_state (id, pruned_through_id) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET pruned_through_id = excluded.pruned_through_id",
                (floor,),
            )
    return floor


def _copy(source: sqlite3.Connection, partial: Path) -> None:
    """Online-backup `source` into `partial` (then closes both) and check the result."""
    with closing(source), closing(sqlite3.connect(partial)) as copy:
        # One step: a single read transaction, which in WAL mode never blocks the writer. In
        # several steps, every commit by the server in between would restart the copy.
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # self-contained: no -wal or -shm needed
    check_database_file(partial)


def check_database_file(path: Path) -> str:
    """The Alembic revision of an edge-bridge database file; BackupError when it is none."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise BackupError(msg) from None
    if header != SQLITE_HEADER:
        msg = f"{path} is not a SQLite database (no SQLite header)"
        raise BackupError(msg)
    try:
        with closing(sqlite3.connect(_read_only(path), uri=True)) as connection:
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            missing = CORE_TABLES - tables
            if missing:
                msg = f"{path} is not an edge-bridge database (missing tables: {sorted(missing)})"
                raise BackupError(msg)
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        msg = f"{path} is not a readable SQLite database: {exc}"
        raise BackupError(msg) from None
    if check != "ok":
        msg = f"{path} failed SQLite's quick_check: {check}"
        raise BackupError(msg)
    known = _known_revisions()
    if revision is None or revision[0] not in known:
        found = revision[0] if revision else None
        msg = (
            f"{path} has schema revision {found!r}, unknown to this edge-bridge "
            f"(knows {sorted(known)}): made by a newer version, or not ours"
        )
        raise BackupError(msg)
    return str(revision[0])


def _read_only(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def _known_revisions() -> set[str]:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    return {script.revision for script in scripts.walk_revisions()}


@contextmanager
def _exclusive(database: Path) -> Iterator[sqlite3.Connection | None]:
    """Holds the database to itself (out of WAL mode) while the body runs; yields that
    connection, or None when there is no database yet.

    Leaving WAL mode needs an exclusive lock, which fails while another connection is open;
    it also checkpoints a leftover WAL file (after a crash) into the database and removes it,
    so no stale -wal can be replayed onto the restored file.
    """
    if not database.exists():
        yield None
        return
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        try:
            mode = connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            connection.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            mode = "locked"
        if mode != "delete":
            msg = (
                f"{database} is in use (is `edge-bridge serve` running?): stop the server "
                "first, then restore"
            )
            raise BackupError(msg)
        yield connection
    finally:
        connection.close()


@contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A fresh file name in `path`'s directory (mode 0600); removed unless renamed away."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)  # SQLite takes an empty file for an empty database
    partial = Path(name)
    try:
        yield partial
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)


def _keep_previous(database: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    kept.unlink(missing_ok=True)
    os.link(database, kept)
    return kept


def _replace(partial: Path, target: Path) -> None:
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
