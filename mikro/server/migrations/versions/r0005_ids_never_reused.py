"""SQLite: representations and metrics never reuse a deleted row's id (AUTOINCREMENT, lost when 0002 and
0003 copied them)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 17:56:28.226958
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Batch mode copies a table to alter it on SQLite, and the copy was made without the models'
# `sqlite_autoincrement`: a deleted image's id went to the next image. PostgreSQL's sequences never
# hand out an id twice.
_TABLES = ("representations", "metrics")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    # Nothing to undo: AUTOINCREMENT only keeps ids from coming back.
    pass
