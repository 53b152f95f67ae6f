"""The ``deleted_prefixes`` table: deleted stores' key prefixes, swept again once every write credential
issued before the deletion has expired (issue 13).

Only this table: the other model changes merged at the same time (representations' source and
acquisition columns, metrics.value's type) belong in a revision of their own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_prefixes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deleted_prefixes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deleted_prefixes_deleted_at"), ["deleted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deleted_prefixes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deleted_prefixes_deleted_at"))
    op.drop_table("deleted_prefixes")
