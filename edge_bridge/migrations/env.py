"""Alembic environment: runs migrations on the engine handed in by `edge_bridge.db.migrate`.

On SQLite a migration that rebuilds a table (batch mode) must not have foreign keys
enforced while it drops the old copy, and the pragma cannot change inside a transaction:
enforcement is off for the run and every reference is checked before it commits.
"""

from alembic import context
from sqlmodel import SQLModel

import edge_bridge.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"

with engine.connect() as connection:
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                msg = f"migration left rows whose references do not hold: {broken[:5]}"
                raise RuntimeError(msg)
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
