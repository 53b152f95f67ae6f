"""Alembic's environment: mikro runs migrations on a connection it opened (``mikro.server._migrate``)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from mikro.server._migrate import migration_options
from mikro.server._models import Base, UTCDateTime


def _render_item(kind: str, item: Any, autogen: AutogenContext) -> str | Literal[False]:
    # A revision must not import the models it freezes: write their types as the column type itself.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # render_as_batch among them: SQLite alters a table by copying it, batch mode does that.
    **migration_options(),
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
