"""`edge-bridge backup` while the server takes scans, and `restore` once it has stopped.

Backups are SQLite-only, so this scenario runs the bridge on a SQLite file of its own even
when the suite targets PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from edge_bridge.db import make_engine, migrate
from edge_ops.importer import import_file
from tests.conftest import SCHOOL
from tests.factories import school_document
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

STUDENT_TAGS = [student["tag"] for student in school_document()["students"]]
CLI_TIMEOUT_SECONDS = 60


def _cli(*args: str, database: Path, system: System) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "JWT_SECRET": system.settings.jwt_secret,
    }
    return subprocess.run(
        [sys.executable, "-m", "edge_ops.cli", *args],
        env=env,
        cwd=database.parent,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def _rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(sql).fetchall()


def test_a_backup_taken_mid_stream_is_consistent_and_restores_once_the_server_stops(
    make_system: Callable[..., System], tmp_path: Path
) -> None:
    # Arrange: a bridge on its own SQLite file, then 40 check-ins in flight during the backup.
    database = tmp_path / "live" / "edge_bridge.db"
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    import_file(engine, SCHOOL)
    engine.dispose()
    system = make_system(database_url=f"sqlite:///{database}")
    reader = system.reader("reader-101")
    in_flight = [reader.send(tag, wait=False) for tag in STUDENT_TAGS[:40]]
    backup_file = tmp_path / "backups" / "edge-bridge.db"

    # Act: back up while scans are processed; change more after it; restore (refused, then ok).
    backed_up = _cli("backup", str(backup_file), database=database, system=system)
    for scan_id in in_flight:
        assert reader.wait_feedback(scan_id)["result"] == "checked_in"
    after = reader.scan(STUDENT_TAGS[50])
    refused = _cli("restore", str(backup_file), database=database, system=system)
    exit_seconds = system.server.stop()
    newest_before_restore = _rows(database, "SELECT max(id) FROM event_log")[0][0]
    restored = _cli("restore", str(backup_file), database=database, system=system)
    system.server.start(wait_ready=True)
    feedback_after_restore = reader.scan(STUDENT_TAGS[55])

    # Assert: the backup is one committed snapshot: every scan row with its visit and event.
    assert backed_up.returncode == 0, backed_up.stderr
    assert "Backup written" in backed_up.stdout
    scans = _rows(backup_file, "SELECT count(*) FROM processed_scan")[0][0]
    visits = _rows(backup_file, "SELECT count(*) FROM visit WHERE exit_time IS NULL")[0][0]
    events = _rows(backup_file, "SELECT count(*) FROM event_log WHERE type = 'student_checkin'")[0][
        0
    ]
    assert scans == visits == events
    assert after["result"] == "checked_in"
    assert refused.returncode != 0
    assert "stop the server" in refused.stderr
    assert exit_seconds < 5
    assert restored.returncode == 0, restored.stderr
    assert "previous database is kept" in restored.stdout
    # The restored server has exactly the backup's state plus the scan made after restoring.
    live_ids = {row[0] for row in _rows(database, "SELECT scan_id FROM processed_scan")}
    backup_ids = {row[0] for row in _rows(backup_file, "SELECT scan_id FROM processed_scan")}
    assert live_ids == backup_ids | {feedback_after_restore["scan_id"]}
    assert after["scan_id"] not in live_ids
    assert feedback_after_restore["result"] == "checked_in"
    # Event ids keep increasing: the check-in after the restore got a new, higher id.
    newest_after_restore = _rows(database, "SELECT max(id) FROM event_log")[0][0]
    assert isinstance(newest_before_restore, int) and isinstance(newest_after_restore, int)
    assert newest_after_restore > newest_before_restore
