"""thumbnails: the PNG as an object in the image's store (key), png nullable

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:27:44.565913
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Batch mode recreates the table on SQLite: without the models' AUTOINCREMENT the copy would hand a
# deleted thumbnail's id to the next one (see 0005).
_TABLE_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("thumbnails", table_kwargs=_TABLE_KWARGS) as batch_op:
        batch_op.add_column(sa.Column("key", sa.Text(), nullable=True))
        batch_op.alter_column("png", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # An older server knows thumbnails only by their bytes: those kept as objects are dropped (the
    # objects stay in their images' stores).
    op.execute("DELETE FROM thumbnails WHERE png IS NULL")
    with op.batch_alter_table("thumbnails", table_kwargs=_TABLE_KWARGS) as batch_op:
        batch_op.alter_column("png", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("key")
