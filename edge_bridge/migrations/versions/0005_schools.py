"""schools as tenants: every owned row gets a `school_id`, references stay within a school

Existing rows move into school 1 (timezone None: the deployment's SCHOOL_TIMEZONE, as
before). Tags become unique per school. Every reference between owned tables becomes a
composite foreign key `(school_id, x_id)` → `x(school_id, id)`, so the database refuses a
row that points into another school. Events get the school whose streams may receive them
(internal `staff_changed` rows none).

On SQLite each table is rebuilt (batch mode); `migrations/env.py` switches foreign key
enforcement off for the rebuild and checks every reference afterwards.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 19:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names of the unnamed foreign keys of 0001: PostgreSQL's own, and the same on SQLite
# through this naming convention when batch mode reflects the table.
_NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
_KEYED = ("room", "staff", "ogs_group", "student", "active_group")  # get (school_id, id)
# owner table → [(column, target table, ondelete)]
_REFERENCES: dict[str, list[tuple[str, str, str | None]]] = {
    "ogs_group": [("room_id", "room", None)],
    "ogs_group_leader": [
        ("ogs_group_id", "ogs_group", "CASCADE"),
        ("staff_id", "staff", "CASCADE"),
    ],
    "student": [("ogs_group_id", "ogs_group", None)],
    "rfid_tag": [("staff_id", "staff", "CASCADE"), ("student_id", "student", "CASCADE")],
    "device": [("room_id", "room", None)],
    "active_group": [("room_id", "room", None)],
}
# rebuilt in place (rfid_tag, whose key changes, is copied: `_rebuild_rfid_tag`)
_OWNED = ("room", "staff", "ogs_group", "ogs_group_leader", "student", "device", "active_group")
_OPEN_ROOM_INDEX = "uq_active_group_open_room"


def _open_room_index() -> None:
    where = sa.text("ended_at IS NULL")
    op.create_index(
        _OPEN_ROOM_INDEX,
        "active_group",
        ["room_id"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def _rebuild_rfid_tag(*, schools: bool) -> None:
    """rfid_tag with its new key, by copy: a primary key cannot change in place on SQLite.

    Nothing references the table, so it can be dropped and its copy renamed on either
    database; the 0001 definition comes back on the way down.
    """
    columns = ["tag", "staff_id", "student_id", *(["school_id"] if schools else [])]
    constraints: list[Any] = [
        sa.CheckConstraint(
            "(staff_id IS NULL) <> (student_id IS NULL)", name="ck_rfid_tag_one_owner"
        ),
        sa.UniqueConstraint("staff_id"),
        sa.UniqueConstraint("student_id"),
    ]
    if schools:
        constraints += [
            sa.PrimaryKeyConstraint("school_id", "tag"),
            sa.ForeignKeyConstraint(["school_id"], ["school.id"], name="rfid_tag_school_id_fkey"),
            *(
                sa.ForeignKeyConstraint(
                    ["school_id", column],
                    [f"{target}.school_id", f"{target}.id"],
                    name=f"fk_rfid_tag_{column}_school",
                    ondelete="CASCADE",
                )
                for column, target, _ in _REFERENCES["rfid_tag"]
            ),
        ]
    else:
        constraints += [
            sa.PrimaryKeyConstraint("tag"),
            sa.ForeignKeyConstraint(
                ["staff_id"], ["staff.id"], name="rfid_tag_staff_id_fkey", ondelete="CASCADE"
            ),
            sa.ForeignKeyConstraint(
                ["student_id"], ["student.id"], name="rfid_tag_student_id_fkey", ondelete="CASCADE"
            ),
        ]
    op.create_table(
        "rfid_tag_copy",
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("student_id", sa.Integer(), nullable=True),
        *([sa.Column("school_id", sa.Integer(), nullable=False)] if schools else []),
        *constraints,
    )
    listed = ", ".join(columns)
    op.execute(sa.text(f"INSERT INTO rfid_tag_copy ({listed}) SELECT {listed} FROM rfid_tag"))
    op.drop_table("rfid_tag")
    op.rename_table("rfid_tag_copy", "rfid_tag")
    if op.get_bind().dialect.name == "postgresql":
        # Index-backed constraints were named after the copy (names are per schema there);
        # give them the table's own names back, which errors name (`constraint=rfid_tag_pkey`).
        for suffix in ("pkey", "staff_id_key", "student_id_key"):
            op.execute(
                sa.text(
                    f"ALTER TABLE rfid_tag RENAME CONSTRAINT rfid_tag_copy_{suffix} "
                    f"TO rfid_tag_{suffix}"
                )
            )


def upgrade() -> None:
    op.create_table(
        "school",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(sa.text("INSERT INTO school (id, name, timezone) VALUES (1, 'Schule', NULL)"))
    # Rebuilding active_group on SQLite would lose the partial index's WHERE: drop, recreate.
    op.drop_index(_OPEN_ROOM_INDEX, table_name="active_group")
    for table in _OWNED:
        op.add_column(table, sa.Column("school_id", sa.Integer(), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET school_id = 1"))
    for table in _OWNED:
        with op.batch_alter_table(table, naming_convention=_NAMING) as batch:
            batch.alter_column("school_id", existing_type=sa.Integer(), nullable=False)
            batch.create_index(f"ix_{table}_school_id", ["school_id"])
            batch.create_foreign_key(f"{table}_school_id_fkey", "school", ["school_id"], ["id"])
            if table in _KEYED:
                batch.create_unique_constraint(f"uq_{table}_school_id", ["school_id", "id"])
            for column, target, ondelete in _REFERENCES.get(table, []):
                batch.drop_constraint(f"{table}_{column}_fkey", type_="foreignkey")
                batch.create_foreign_key(
                    f"fk_{table}_{column}_school",
                    target,
                    ["school_id", column],
                    ["school_id", "id"],
                    ondelete=ondelete,
                )
    _open_room_index()
    op.add_column("rfid_tag", sa.Column("school_id", sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE rfid_tag SET school_id = 1"))
    _rebuild_rfid_tag(schools=True)
    op.add_column("event_log", sa.Column("school_id", sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE event_log SET school_id = 1 WHERE type <> 'staff_changed'"))


def downgrade() -> None:
    op.drop_column("event_log", "school_id")
    _rebuild_rfid_tag(schools=False)
    op.drop_index(_OPEN_ROOM_INDEX, table_name="active_group")
    for table in reversed(_OWNED):
        with op.batch_alter_table(table, naming_convention=_NAMING) as batch:
            for column, target, ondelete in _REFERENCES.get(table, []):
                batch.drop_constraint(f"fk_{table}_{column}_school", type_="foreignkey")
                batch.create_foreign_key(
                    f"{table}_{column}_fkey", target, [column], ["id"], ondelete=ondelete
                )
            if table in _KEYED:
                batch.drop_constraint(f"uq_{table}_school_id", type_="unique")
            batch.drop_constraint(f"{table}_school_id_fkey", type_="foreignkey")
            batch.drop_index(f"ix_{table}_school_id")
            batch.drop_column("school_id")
    _open_room_index()
    op.drop_table("school")
