"""Files (originals and attachments) and image pyramids: the ``files`` table and its links,
``representations.original_file_id``, ``stores.array_path`` and ``stores.levels``.

Images stored before pyramids are an OME-Zarr group whose row recorded the level-0 array's own path
(``<key>/0``): they become what a new upload records, the group's path, ``array_path`` "0" and one level.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ORIGINAL_FILE_FK = "representations_original_file_id_fkey"


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_files_content_hash"), ["content_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_files_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_files_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "file_datasets",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id", "dataset_id"),
    )
    with op.batch_alter_table("file_datasets", schema=None) as batch_op:
        batch_op.create_index("ix_file_datasets_dataset_id", ["dataset_id"], unique=False)

    op.create_table(
        "file_experiments",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id", "experiment_id"),
    )
    with op.batch_alter_table("file_experiments", schema=None) as batch_op:
        batch_op.create_index("ix_file_experiments_experiment_id", ["experiment_id"], unique=False)

    op.create_table(
        "file_samples",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id", "sample_id"),
    )
    with op.batch_alter_table("file_samples", schema=None) as batch_op:
        batch_op.create_index("ix_file_samples_sample_id", ["sample_id"], unique=False)

    op.create_table(
        "file_representations",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("representation_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["representation_id"], ["representations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id", "representation_id"),
    )
    with op.batch_alter_table("file_representations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_file_representations_representation_id", ["representation_id"], unique=False
        )

    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("original_file_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_representations_original_file_id"), ["original_file_id"], unique=False
        )
        batch_op.create_foreign_key(
            _ORIGINAL_FILE_FK, "files", ["original_file_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("array_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("levels", sa.JSON(), nullable=True))

    _record_level_zero()


def _record_level_zero() -> None:
    """Finished image stores from before pyramids: the group's path, its array at "0", one level."""
    stores = sa.table(
        "stores",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("path", sa.Text),
        sa.column("populated", sa.Boolean),
        sa.column("shape", sa.JSON),
        sa.column("chunks", sa.JSON),
        sa.column("shards", sa.JSON),
        sa.column("array_path", sa.Text),
        sa.column("levels", sa.JSON),
    )
    bind = op.get_bind()
    finished = sa.select(stores).where(
        stores.c.kind == "ZARR", stores.c.populated.is_(True), stores.c.array_path.is_(None)
    )
    for row in bind.execute(finished).all():
        in_group = row.path.endswith("/0")
        level = {
            "path": "0" if in_group else "",
            "shape": row.shape,
            "chunks": row.chunks,
            "shards": row.shards,
            "scale": [1.0] * len(row.shape or []),
        }
        values = {"array_path": level["path"], "levels": [level]}
        if in_group:
            values["path"] = row.path[: -len("/0")]
        bind.execute(stores.update().where(stores.c.id == row.id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("levels")
        batch_op.drop_column("array_path")

    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.drop_constraint(_ORIGINAL_FILE_FK, type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_representations_original_file_id"))
        batch_op.drop_column("original_file_id")

    with op.batch_alter_table("file_representations", schema=None) as batch_op:
        batch_op.drop_index("ix_file_representations_representation_id")

    op.drop_table("file_representations")
    with op.batch_alter_table("file_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_file_samples_sample_id")

    op.drop_table("file_samples")
    with op.batch_alter_table("file_experiments", schema=None) as batch_op:
        batch_op.drop_index("ix_file_experiments_experiment_id")

    op.drop_table("file_experiments")
    with op.batch_alter_table("file_datasets", schema=None) as batch_op:
        batch_op.drop_index("ix_file_datasets_dataset_id")

    op.drop_table("file_datasets")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_creator_id"))
        batch_op.drop_index(batch_op.f("ix_files_created_at"))
        batch_op.drop_index(batch_op.f("ix_files_content_hash"))

    op.drop_table("files")
