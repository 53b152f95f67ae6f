"""The tables of the last mikro without migrations (0.1), exactly as its models created them.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_events_stream_id", ["stream", "id"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "object_tags",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "object_id", "tag"),
    )
    with op.batch_alter_table("object_tags", schema=None) as batch_op:
        batch_op.create_index("ix_object_tags_tag", ["kind", "tag"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("username"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "datasets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_datasets_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_datasets_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "experiments",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_experiments_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("user_id", "key"),
        sa.UniqueConstraint("user_id", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)

    op.create_table(
        "samples",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "stores",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("populated", sa.Boolean(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=True),
        sa.Column("chunks", sa.JSON(), nullable=True),
        sa.Column("shards", sa.JSON(), nullable=True),
        sa.Column("dtype", sa.String(length=64), nullable=True),
        sa.Column("dimension_names", sa.JSON(), nullable=True),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stores_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_stores_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("write", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_store_id"), ["store_id"], unique=False)

    op.create_table(
        "representations",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("dims", sa.JSON(), nullable=False),
        sa.Column("dtype", sa.String(length=64), nullable=False),
        sa.Column("variety", sa.String(length=16), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("physical_size", sa.JSON(), nullable=True),
        sa.Column("acquisition_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_representations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_representations_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_representations_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_representations_sample_id"), ["sample_id"], unique=False)

    op.create_table(
        "tables",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
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
    with op.batch_alter_table("tables", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tables_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tables_creator_id"), ["creator_id"], unique=False)

    op.create_table(
        "representation_experiments",
        sa.Column("representation_id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["representation_id"], ["representations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("representation_id", "experiment_id"),
    )
    with op.batch_alter_table("representation_experiments", schema=None) as batch_op:
        batch_op.create_index("ix_representation_experiments_experiment", ["experiment_id"], unique=False)

    op.create_table(
        "representation_origins",
        sa.Column("derived_id", sa.Integer(), nullable=False),
        sa.Column("origin_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["derived_id"], ["representations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["origin_id"], ["representations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("derived_id", "origin_id"),
    )
    with op.batch_alter_table("representation_origins", schema=None) as batch_op:
        batch_op.create_index("ix_representation_origins_origin", ["origin_id"], unique=False)

    op.create_table(
        "rois",
        sa.Column("representation_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("vectors", sa.JSON(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["representation_id"], ["representations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("rois", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rois_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rois_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rois_representation_id"), ["representation_id"], unique=False)

    op.create_table(
        "table_origins",
        sa.Column("table_id", sa.Integer(), nullable=False),
        sa.Column("origin_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["origin_id"], ["representations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["table_id"], ["tables.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("table_id", "origin_id"),
    )
    with op.batch_alter_table("table_origins", schema=None) as batch_op:
        batch_op.create_index("ix_table_origins_origin", ["origin_id"], unique=False)

    op.create_table(
        "thumbnails",
        sa.Column("representation_id", sa.Integer(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["representation_id"], ["representations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("thumbnails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_thumbnails_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_thumbnails_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_thumbnails_representation_id"), ["representation_id"], unique=False
        )

    op.create_table(
        "metrics",
        sa.Column("representation_id", sa.Integer(), nullable=False),
        sa.Column("roi_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["representation_id"], ["representations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["roi_id"], ["rois.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metrics_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_metrics_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_metrics_representation_id"), ["representation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_metrics_roi_id"), ["roi_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metrics_roi_id"))
        batch_op.drop_index(batch_op.f("ix_metrics_representation_id"))
        batch_op.drop_index(batch_op.f("ix_metrics_creator_id"))
        batch_op.drop_index(batch_op.f("ix_metrics_created_at"))

    op.drop_table("metrics")
    with op.batch_alter_table("thumbnails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thumbnails_representation_id"))
        batch_op.drop_index(batch_op.f("ix_thumbnails_creator_id"))
        batch_op.drop_index(batch_op.f("ix_thumbnails_created_at"))

    op.drop_table("thumbnails")
    with op.batch_alter_table("table_origins", schema=None) as batch_op:
        batch_op.drop_index("ix_table_origins_origin")

    op.drop_table("table_origins")
    with op.batch_alter_table("rois", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rois_representation_id"))
        batch_op.drop_index(batch_op.f("ix_rois_creator_id"))
        batch_op.drop_index(batch_op.f("ix_rois_created_at"))

    op.drop_table("rois")
    with op.batch_alter_table("representation_origins", schema=None) as batch_op:
        batch_op.drop_index("ix_representation_origins_origin")

    op.drop_table("representation_origins")
    with op.batch_alter_table("representation_experiments", schema=None) as batch_op:
        batch_op.drop_index("ix_representation_experiments_experiment")

    op.drop_table("representation_experiments")
    with op.batch_alter_table("tables", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tables_creator_id"))
        batch_op.drop_index(batch_op.f("ix_tables_created_at"))

    op.drop_table("tables")
    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_representations_sample_id"))
        batch_op.drop_index(batch_op.f("ix_representations_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_representations_creator_id"))
        batch_op.drop_index(batch_op.f("ix_representations_created_at"))

    op.drop_table("representations")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_store_id"))

    op.drop_table("grants")
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stores_creator_id"))
        batch_op.drop_index(batch_op.f("ix_stores_created_at"))

    op.drop_table("stores")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_creator_id"))
        batch_op.drop_index(batch_op.f("ix_samples_created_at"))

    op.drop_table("samples")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_creator_id"))
        batch_op.drop_index(batch_op.f("ix_experiments_created_at"))

    op.drop_table("experiments")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_parent_id"))
        batch_op.drop_index(batch_op.f("ix_datasets_creator_id"))
        batch_op.drop_index(batch_op.f("ix_datasets_created_at"))

    op.drop_table("datasets")
    op.drop_table("users")
    with op.batch_alter_table("object_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_object_tags_tag")

    op.drop_table("object_tags")
    op.drop_table("meta")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_stream_id")
        batch_op.drop_index(batch_op.f("ix_events_created_at"))

    op.drop_table("events")
