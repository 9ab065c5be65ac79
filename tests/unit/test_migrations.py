"""The migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import edge_bridge.models  # noqa: F401  (registers the tables)
from edge_bridge.db import alembic_config


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _differences(engine) == []


def test_every_migration_can_be_undone_and_redone(engine: Engine) -> None:
    config = alembic_config(engine)

    command.downgrade(config, "base")
    command.upgrade(config, "head")

    assert _differences(engine) == []
