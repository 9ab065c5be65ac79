"""`edge-bridge devices credentials`: one step provisions every reader of the database."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_ops.cli import main


def test_credentials_are_created_for_every_device_then_rotated(
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_factory()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret)
    password_file = tmp_path / "mosquitto" / "passwd"
    password_file.parent.mkdir()
    credentials_file = tmp_path / "creds.json"
    args = [
        "devices",
        "credentials",
        "--password-file",
        str(password_file),
        "--credentials-file",
        str(credentials_file),
    ]

    assert main(args) == 0
    first = json.loads(credentials_file.read_text())
    assert main(args) == 0
    second = json.loads(credentials_file.read_text())

    devices = ["reader-101", "reader-mensa", "reader-spare", "reader-turnhalle"]
    assert sorted(first) == sorted(second) == devices
    assert all(first[d] != second[d] for d in devices)
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
    users = [line.split(":")[0] for line in password_file.read_text().splitlines()]
    assert sorted(users) == devices
    assert all(first[d] not in password_file.read_text() for d in devices)  # hashes only
    assert (password_file.parent / "acl").exists()
    output = capsys.readouterr().out
    assert "4 reader password(s)" in output
    assert all(second[d] not in output for d in devices)
