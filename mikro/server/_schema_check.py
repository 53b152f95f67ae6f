"""Refuse to serve a database whose tables do not match this mikro's models.

``metadata.create_all`` creates missing tables but never alters existing ones, and mikro has no
migrations yet. A database made by an older mikro would otherwise start fine and then fail request by
request with SQL errors (a missing column), or refuse every insert (an old NOT NULL column this mikro
no longer fills). Checking once at start turns that into one clear message before anything is written.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.schema import MetaData

__all__ = ["DatabaseSchemaError", "check_schema"]


class DatabaseSchemaError(RuntimeError):
    """The database's tables were made by another version of mikro."""


def check_schema(conn: Connection, metadata: MetaData, where: str) -> None:
    """Raise :class:`DatabaseSchemaError` naming every column that differs from ``metadata``."""
    inspector = inspect(conn)
    problems: list[str] = []
    for table in metadata.sorted_tables:
        present = {column["name"]: column for column in inspector.get_columns(table.name)}
        wanted = {column.name for column in table.columns}
        problems += [f"{table.name}.{name} is missing" for name in sorted(wanted - present.keys())]
        problems += [
            f"{table.name}.{name} is no longer used but refuses NULL"
            for name, column in present.items()
            if name not in wanted and not column["nullable"] and column.get("default") is None
        ]
    if problems:
        raise DatabaseSchemaError(
            f"the database {where} was made by another version of mikro: {'; '.join(problems)}. "
            "mikro has no schema migrations yet; serve a new data dir (or database), or bring the "
            "tables up to date by hand."
        )
