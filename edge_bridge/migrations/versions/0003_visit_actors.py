"""visits record who opened and closed them, and why (the attendance record); events can
be routed to a school's admins (the office view)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT_COLUMNS = {
    "entry_source": 16,
    "entry_device_id": 64,
    "exit_source": 16,
    "exit_device_id": 64,
    "exit_reason": 16,
}


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no constraint): SQLite needs no table copy, which would
    # have to rebuild the partial unique index on open visits.
    for name, length in _TEXT_COLUMNS.items():
        op.add_column(
            "visit", sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True)
        )
    op.add_column("visit", sa.Column("entry_staff_id", sa.Integer(), nullable=True))
    op.add_column("visit", sa.Column("exit_staff_id", sa.Integer(), nullable=True))
    op.create_index("ix_visit_entry_time", "visit", ["entry_time"])
    op.add_column(
        "event_log",
        sa.Column("route_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.drop_column("route_admin")
    op.drop_index("ix_visit_entry_time", table_name="visit")
    with op.batch_alter_table("visit", schema=None) as batch_op:
        for name in ["exit_staff_id", "entry_staff_id", *reversed(_TEXT_COLUMNS)]:
            batch_op.drop_column(name)
