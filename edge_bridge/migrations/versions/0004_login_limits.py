"""login failure windows shared by every instance (per-email login limits in the database)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import edge_bridge.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failure_window",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_start", edge_bridge.models.UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        "ix_login_failure_window_window_start", "login_failure_window", ["window_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_login_failure_window_window_start", table_name="login_failure_window")
    op.drop_table("login_failure_window")
