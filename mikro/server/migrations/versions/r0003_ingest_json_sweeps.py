"""Ingest provenance (``representations.source_*``, ``acquisition``), metric values kept exactly on
SQLite (a TEXT column: a JSON-declared one has NUMERIC affinity and turned ``800.0`` into 800), and the
``deleted_prefixes`` table of deleted stores whose objects are still to be swept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

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

    _metric_values_as(sa.Text())

    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_fingerprint", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("source_scene", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("source_scene_name", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source_scene_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("acquisition", sa.JSON(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_representations_source_fingerprint"), ["source_fingerprint"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_representations_source_fingerprint"))
        batch_op.drop_column("acquisition")
        batch_op.drop_column("source_scene_count")
        batch_op.drop_column("source_scene_name")
        batch_op.drop_column("source_scene")
        batch_op.drop_column("source_fingerprint")

    _metric_values_as(sa.JSON())

    with op.batch_alter_table("deleted_prefixes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deleted_prefixes_deleted_at"))

    op.drop_table("deleted_prefixes")


def _metric_values_as(type_: sa.types.TypeEngine[Any]) -> None:
    """SQLite only: elsewhere the column stays JSON. The values are the same JSON text either way."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.alter_column("value", type_=type_, existing_nullable=False)
