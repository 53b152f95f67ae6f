"""Per-user event cursors: events numbered per owner, each user's newest and pruned-through cursor

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:47:54.413914
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_seq", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("events_pruned_through", sa.BigInteger(), server_default="0", nullable=False)
        )
    # The events kept so far are numbered per owner in their old order; each user's counter continues
    # after their newest (portable SQL: SQLite and PostgreSQL alike).
    op.execute(
        "UPDATE events SET owner_seq = (SELECT count(*) FROM events AS e "
        "WHERE e.owner_id = events.owner_id AND e.id <= events.id)"
    )
    op.execute(
        "UPDATE users SET event_seq = (SELECT coalesce(max(e.owner_seq), 0) FROM events AS e "
        "WHERE e.owner_id = users.id)"
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_owner_seq", ["owner_id", "owner_seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("events_pruned_through")
        batch_op.drop_column("event_seq")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_owner_seq")
        batch_op.drop_column("owner_seq")
