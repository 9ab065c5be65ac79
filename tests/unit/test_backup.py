"""`edge_ops/backup.py`: online SQLite backup, checked restore, the PostgreSQL pointer.

These tests make their own SQLite files (backup is SQLite-only), so they run the same when
the suite targets PostgreSQL. "Another process" is played by a second connection in this
process: SQLite tracks locks per file across connections, as it does across processes.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_bridge.db import make_engine, migrate
from edge_bridge.eventlog import EventLog
from edge_bridge.events import EventType, NewEvent
from edge_bridge.store import Store, Tx
from edge_ops.backup import BackupError, backup, backup_cli, check_database_file, restore
from edge_ops.importer import import_file
from tests.conftest import SCHOOL


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    """A migrated SQLite file with the fixture school, in WAL mode like the server's."""
    path = tmp_path / "data" / "edge_bridge.db"
    engine: Engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    import_file(engine, SCHOOL)
    engine.dispose()
    return path


def _count(path: Path, table: str) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _rename_room(path: Path, name: str) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE room SET name = ? WHERE id = 1", (name,))
        connection.commit()


def _room_name(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return str(connection.execute("SELECT name FROM room WHERE id = 1").fetchone()[0])


def _foreign_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.commit()


def test_a_backup_taken_during_an_open_write_holds_exactly_the_committed_state(
    live_db: Path, tmp_path: Path
) -> None:
    writer = sqlite3.connect(live_db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE room SET name = 'uncommitted' WHERE id = 1")
    target = tmp_path / "backups" / "nightly.db"

    size = backup(live_db, target)
    writer.execute("COMMIT")
    writer.close()

    assert size == target.stat().st_size > 0
    assert _room_name(target) == "Raum 101"
    assert _count(target, "student") == _count(live_db, "student") == 60
    assert check_database_file(target) == check_database_file(live_db)
    assert target.stat().st_mode & 0o077 == 0  # personal data: owner only
    assert not Path(f"{target}-wal").exists()
    assert [p.name for p in target.parent.iterdir()] == ["nightly.db"]  # no partial left


def test_a_backup_replaces_an_older_backup_file_in_place(live_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "edge.db"
    backup(live_db, target)
    _rename_room(live_db, "Raum 101 (neu)")

    backup(live_db, target)

    assert _room_name(target) == "Raum 101 (neu)"


def test_a_backup_of_a_missing_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no database at"):
        backup(tmp_path / "missing.db", tmp_path / "out.db")

    assert not (tmp_path / "out.db").exists()
    assert not (tmp_path / "missing.db").exists()


def test_restore_replaces_the_database_and_keeps_the_previous_one(
    live_db: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.db"
    backup(live_db, saved)
    _rename_room(live_db, "after the backup")

    kept = restore(saved, live_db)

    assert _room_name(live_db) == "Raum 101"
    assert kept is not None
    assert _room_name(kept) == "after the backup"
    assert kept.parent == live_db.parent
    assert _count(live_db, "student") == 60


def test_restore_into_a_missing_database_creates_it(live_db: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved.db"
    backup(live_db, saved)
    fresh = tmp_path / "new-box" / "edge_bridge.db"

    kept = restore(saved, fresh)

    assert kept is None
    assert _count(fresh, "student") == 60


@pytest.mark.parametrize(
    ("make_file", "reason"),
    [
        (lambda p: p.write_text("not a database\n" * 10), "not a SQLite database"),
        (lambda p: p.write_bytes(b""), "not a SQLite database"),
        (lambda p: _foreign_database(p), "not an edge-bridge database"),
    ],
    ids=["text file", "empty file", "foreign sqlite database"],
)
def test_restore_refuses_a_file_that_is_not_an_edge_bridge_database(
    live_db: Path, tmp_path: Path, make_file: Callable[[Path], object], reason: str
) -> None:
    bad = tmp_path / "bad.db"
    make_file(bad)
    before = live_db.read_bytes()

    with pytest.raises(BackupError, match=reason):
        restore(bad, live_db)

    assert live_db.read_bytes() == before
    assert sorted(p.name for p in live_db.parent.iterdir() if "before-restore" in p.name) == []


def test_restore_refuses_a_database_from_a_newer_version(live_db: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    backup(live_db, newer)
    with closing(sqlite3.connect(newer)) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
        connection.commit()

    with pytest.raises(BackupError, match="revision '9999', unknown"):
        restore(newer, live_db)

    assert check_database_file(live_db)


def test_restore_refuses_while_another_process_has_the_database_open(
    live_db: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.db"
    backup(live_db, saved)
    _rename_room(live_db, "live")
    server = make_engine(f"sqlite:///{live_db}")  # the running server's pooled connection
    with server.connect() as connection:
        connection.exec_driver_sql("SELECT 1")

    with pytest.raises(BackupError, match=r"in use .*stop the server"):
        restore(saved, live_db)
    server.dispose()

    assert _room_name(live_db) == "live"
    assert restore(saved, live_db) is not None  # once the server is gone it works


def test_the_cli_points_postgres_users_to_pg_dump_and_fails(
    settings_factory: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_factory(database_url="postgresql+psycopg://edge:hunter2@db:5432/edge")

    code = backup_cli(settings, argparse.Namespace(file="x.dump", backup_action="backup"))

    out = capsys.readouterr().out
    assert code != 0
    assert "pg_dump" in out
    assert "pg_restore" in out
    assert "hunter2" not in out


def test_the_cli_backs_up_and_restores_the_configured_database(
    live_db: Path, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=f"sqlite:///{live_db}")
    target = tmp_path / "cli.db"

    backed_up = backup_cli(settings, argparse.Namespace(file=str(target), backup_action="backup"))
    _rename_room(live_db, "changed")
    restored = backup_cli(settings, argparse.Namespace(file=str(target), backup_action="restore"))

    assert (backed_up, restored) == (0, 0)
    assert _room_name(live_db) == "Raum 101"


def _emit_events(path: Path, count: int) -> list[int]:
    """Append `count` check-in events to the database at `path`; returns their ids."""
    engine = make_engine(f"sqlite:///{path}")
    try:

        def work(tx: Tx) -> Tx:
            for _ in range(count):
                tx.emit(
                    NewEvent.for_group(EventType.STUDENT_CHECKIN, 124, school_id=1, student_id=401)
                )
            return tx

        return [event.id for event in Store(engine).write_blocking(work).events]
    finally:
        engine.dispose()


def _replay_after(path: Path, last_event_id: int) -> list[int] | None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        log = EventLog(engine, retention_seconds=3600)
        events = log.events_after_blocking(
            last_event_id, active_group_ids=frozenset({124}), ogs_group_ids=frozenset(), school_id=1
        )
        return None if events is None else [event.id for event in events]
    finally:
        engine.dispose()


def _newest_id(path: Path) -> int:
    engine = make_engine(f"sqlite:///{path}")
    try:
        return EventLog(engine, retention_seconds=3600).last_event_id()
    finally:
        engine.dispose()


def test_event_ids_keep_increasing_after_a_restore_and_earlier_ids_get_a_resync(
    live_db: Path, tmp_path: Path
) -> None:
    in_backup = _emit_events(live_db, 3)
    target = tmp_path / "backups" / "nightly.db"
    backup(live_db, target)
    newest_before = _emit_events(live_db, 4)[-1]  # made after the backup: lost by the restore

    restore(target, live_db)
    resume_point = _newest_id(live_db)  # what the server's streams start from now
    after_restore = _emit_events(live_db, 1)

    assert after_restore[0] > newest_before
    assert resume_point == newest_before + 1
    for seen_before_restore in (in_backup[0], in_backup[-1], newest_before):
        assert _replay_after(live_db, seen_before_restore) is None  # resync: state went back
    assert _replay_after(live_db, resume_point) == after_restore


def test_a_restore_continues_after_ids_the_old_database_had_already_pruned(
    live_db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "backups" / "nightly.db"
    backup(live_db, target)
    newest_before = _emit_events(live_db, 5)[-1]
    with closing(sqlite3.connect(live_db)) as connection:  # every row gone, as by pruning
        connection.execute("DELETE FROM event_log")
        connection.commit()

    restore(target, live_db)
    after_restore = _emit_events(live_db, 1)

    assert after_restore[0] > newest_before
