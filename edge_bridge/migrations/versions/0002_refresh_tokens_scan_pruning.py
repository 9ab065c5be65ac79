"""refresh tokens; processed scans keep the reader's ts and get an index for pruning by age

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import edge_bridge.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refresh_token",
        sa.Column("jti", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("family_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", edge_bridge.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", edge_bridge.models.UTCDateTime(), nullable=False),
        sa.Column("used_at", edge_bridge.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", edge_bridge.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_token_family_id"), ["family_id"])
        batch_op.create_index(batch_op.f("ix_refresh_token_staff_id"), ["staff_id"])
        batch_op.create_index(batch_op.f("ix_refresh_token_expires_at"), ["expires_at"])
    with op.batch_alter_table("processed_scan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reader_ts", edge_bridge.models.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_processed_scan_processed_at", ["processed_at"])


def downgrade() -> None:
    with op.batch_alter_table("processed_scan", schema=None) as batch_op:
        batch_op.drop_index("ix_processed_scan_processed_at")
        batch_op.drop_column("reader_ts")
    with op.batch_alter_table("refresh_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_token_expires_at"))
        batch_op.drop_index(batch_op.f("ix_refresh_token_staff_id"))
        batch_op.drop_index(batch_op.f("ix_refresh_token_family_id"))
    op.drop_table("refresh_token")
