"""What the models gained after revision 0002: ``deleted_prefixes`` (deleted stores' key prefixes, swept
again once every write credential issued before the deletion has expired: issue 13); the columns ingest
records on ``representations`` (source fingerprint and scene, acquisition metadata); and ``metrics.value``
as ``JSONValue`` (TEXT on SQLite, so that ``800.0`` reads back as a float).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mikro.server._models import JSONValue

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

    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=sa.JSON(), type_=JSONValue(), existing_nullable=False)

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
        for column in ("acquisition", "source_scene_count", "source_scene_name", "source_scene"):
            batch_op.drop_column(column)
        batch_op.drop_column("source_fingerprint")

    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=JSONValue(), type_=sa.JSON(), existing_nullable=False)

    with op.batch_alter_table("deleted_prefixes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deleted_prefixes_deleted_at"))
    op.drop_table("deleted_prefixes")
