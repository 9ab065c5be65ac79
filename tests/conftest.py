"""Fixtures shared by every kind of test: fresh databases, settings, the school fixture.

Each test gets its own database: a SQLite file in `tmp_path`, or, when
`EDGE_TEST_POSTGRES_URL` points at a PostgreSQL server (as `.ci/run` sets up), a fresh
database created on that server and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings, load_settings
from edge_bridge.db import make_engine, migrate
from edge_bridge.importer import import_file

FIXTURES = Path(__file__).parent / "fixtures"
SCHOOL = FIXTURES / "school.json"
POSTGRES_ADMIN_URL = os.environ.get("EDGE_TEST_POSTGRES_URL")


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of its own."""
    if not POSTGRES_ADMIN_URL:
        yield f"sqlite:///{tmp_path / 'edge_bridge.db'}"
        return
    name = f"edge_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty database."""
    created = make_engine(database_url)
    migrate(created)
    yield created
    created.dispose()


@pytest.fixture
def school_engine(engine: Engine) -> Engine:
    """The realistic fixture school: 3 rooms, 4 staff, 60 students, 4 readers, 2 groups."""
    import_file(engine, SCHOOL)
    return engine


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for this test: its own database, secret file and topic prefix."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "mqtt_topic_prefix": prefix,
            "jwt_secret": "x" * 48,
            "port": 0,
        }
        values.update(overrides)
        return load_settings(secret_file=tmp_path / "jwt_secret", **values)

    return build
