"""Fixtures shared by every kind of test: fresh databases, settings, the school fixture.

Each test gets its own database: a SQLite file in `tmp_path`, or, when
`EDGE_TEST_POSTGRES_URL` points at a PostgreSQL server (as `.ci/run` sets up), a fresh
database created on that server and dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings, load_settings
from edge_bridge.db import make_engine, migrate
from edge_ops.importer import import_file

FIXTURES = Path(__file__).parent / "fixtures"
SCHOOL = FIXTURES / "school.json"
# Passes the JWT_SECRET rules (edge_bridge/config.py): random, 64 URL-safe characters.
TEST_JWT_SECRET = "tVq3-9hXkR2mZpL0wYc7_AeNf4sUbG8jDi6oTr1KvHxQ5nEyWz_aMgBlCdPuSJ-F"
POSTGRES_ADMIN_URL = os.environ.get("EDGE_TEST_POSTGRES_URL")


@contextmanager
def _postgres_database(prefix: str, *, template: str | None = None) -> Iterator[tuple[str, str]]:
    """A fresh database on the test server: (name, URL); dropped afterwards."""
    assert POSTGRES_ADMIN_URL is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # pre-ping: a test may restart the server (test_ingest_outage) under a pooled connection
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield name, url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database at the latest revision that each test's database is copied from.

    Migrating once per session instead of once per test keeps the suites fast; the copy is
    a file copy for SQLite and `CREATE DATABASE … TEMPLATE` for PostgreSQL.
    """
    if not POSTGRES_ADMIN_URL:
        path = tmp_path_factory.mktemp("template") / "template.db"
        template = make_engine(f"sqlite:///{path}")
        migrate(template)
        with template.connect() as connection:  # fold the WAL into the file before copying
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        template.dispose()
        yield str(path)
        return
    with _postgres_database("edge_template") as (name, url):
        template = make_engine(url)
        migrate(template)
        template.dispose()
        yield name


@pytest.fixture
def database_url(tmp_path: Path, migrated_template: str) -> Iterator[str]:
    """A URL to a database of its own, already at the latest revision and empty."""
    if not POSTGRES_ADMIN_URL:
        path = tmp_path / "edge_bridge.db"
        shutil.copyfile(migrated_template, path)
        yield f"sqlite:///{path}"
        return
    with _postgres_database("edge_test", template=migrated_template) as (_name, url):
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty database."""
    created = make_engine(database_url)
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
            "jwt_secret": TEST_JWT_SECRET,
            "port": 0,
        }
        values.update(overrides)
        return load_settings(secret_file=tmp_path / "jwt_secret", **values)

    return build
