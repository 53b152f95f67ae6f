"""Ingest's sources and acquisition metadata, deleted prefixes to sweep, metric values kept as written

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 16:04:10.374994
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

    # On SQLite a JSON column has NUMERIC affinity (800.0 read back as 800): metric values become TEXT
    # holding the JSON document there (JSONValue). PostgreSQL keeps JSON.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("metrics", schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.JSON(), type_=sa.Text(), existing_nullable=False)

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

    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("metrics", schema=None) as batch_op:
            batch_op.alter_column("value", existing_type=sa.Text(), type_=sa.JSON(), existing_nullable=False)

    with op.batch_alter_table("deleted_prefixes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deleted_prefixes_deleted_at"))

    op.drop_table("deleted_prefixes")
