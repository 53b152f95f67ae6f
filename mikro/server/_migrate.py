"""Schema migrations (Alembic): the tables are created and upgraded by the revisions in ``migrations/``.

Why the server upgrades on start rather than refusing: mikro's migrations only add to the schema a
released mikro reads (new tables, new nullable columns), and the labs that run the reference server
have no database administrator to run a separate step; ``mikro db upgrade`` exists for those who want
to upgrade before starting. Upgrades take a lock first, so several processes or hosts starting at once
upgrade once: PostgreSQL's advisory lock, or on SQLite (local by definition) a lock file beside the
database. A database newer than this mikro (a revision it does not know) is refused, not touched.

A database made before migrations existed (tables, no ``alembic_version``) is checked against the
first revision's tables and then recorded as being at it (``stamp``), so it upgrades like any other.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mikro.server._locks import sqlite_file_lock
from mikro.server._models import Base

__all__ = [
    "BASELINE",
    "DatabaseSchemaError",
    "current_revision",
    "describe_upgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The first revision: the tables of the last mikro without migrations.
BASELINE = "0001"
# Any constant both sides agree on: "mikro" as a 64-bit integer.
_ADVISORY_LOCK = 0x6D696B726F


class DatabaseSchemaError(RuntimeError):
    """The database's tables cannot be used or upgraded by this mikro."""


class DatabaseUnreachableError(DatabaseSchemaError):
    """No connection to the database (server down, wrong address or credentials, no such file). A
    kind of DatabaseSchemaError, so that every command reporting a database it cannot use says this
    in one line too."""


@contextlib.asynccontextmanager
async def _connected(engine: AsyncEngine, *, locked: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection; with ``locked``, on SQLite, opened only once this process holds the migration
    lock (held until it is closed). Processes starting at once on a new file otherwise race in their
    connections' ``PRAGMA journal_mode=WAL``, and SQLite answers one of them "database is locked" at
    once rather than calling its busy handler (it would deadlock)."""
    connection = engine.connect()
    async with contextlib.AsyncExitStack() as held:
        try:
            if engine.dialect.name == "sqlite":
                await anyio.to_thread.run_sync(_open_sqlite, engine)
                if locked:
                    await held.enter_async_context(_sqlite_lock(engine))
            await connection.start()
        except (OSError, DBAPIError, sqlite3.Error) as exc:
            # The driver's own message, first line only.
            reason = (str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines() or [""])[0]
            where = engine.url.render_as_string(hide_password=True)
            raise DatabaseUnreachableError(f"cannot reach the database {where}: {reason}") from exc
        try:
            yield connection
        finally:
            with anyio.CancelScope(shield=True):
                await connection.close()


def _open_sqlite(engine: AsyncEngine) -> None:
    """Open and close the engine's SQLite database with the standard library's driver, as the engine
    would (same file or URI, same options).

    Why first: after a failed connect, aiosqlite stops its worker thread with a call that answers on the
    event loop; a CLI closes its loop right after the error, and the thread then dies printing a
    traceback under the one-line message. A file that cannot be opened is found here, before aiosqlite
    starts a thread for it."""
    (database,), options = engine.dialect.create_connect_args(engine.url)
    sqlite3.connect(str(database), **options).close()


def include_object(item: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate's filter: PostgreSQL drops a unique constraint that repeats the primary key (as
    ``idempotency_keys`` has), so its absence there is no difference."""
    if kind == "unique_constraint" and not reflected:
        primary = {column.name for column in item.table.primary_key.columns}
        return {column.name for column in item.columns} != primary
    return True


def migration_options() -> dict[str, Any]:
    """How revisions are compared with the models and written (``env.py`` and the tests)."""
    return {"render_as_batch": True, "compare_type": True, "include_object": include_object}


def model_differences(conn: Connection) -> list[Any]:
    """What autogenerate would put in a new revision: the models' changes the database lacks; on
    SQLite also the tables that lost AUTOINCREMENT (autogenerate does not see it, and batch mode drops
    it when it copies a table unless told with ``table_kwargs``)."""
    context = MigrationContext.configure(conn, opts=migration_options())
    differences: list[Any] = list(compare_metadata(context, Base.metadata))
    if conn.dialect.name == "sqlite":
        created: dict[str, str | None] = dict(
            conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
        )
        for table in Base.metadata.sorted_tables:
            wanted = table.dialect_options["sqlite"]["autoincrement"]
            if wanted and "AUTOINCREMENT" not in (created.get(table.name) or ""):
                differences.append(("sqlite_autoincrement", table.name))
    return differences


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def describe_upgrade(before: str | None, after: str) -> str:
    if before == after:
        return f"the database is up to date (revision {after})"
    return f"upgraded the database from revision {before or 'none'} to {after}"


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no mikro tables yet, or made before migrations)."""
    async with _connected(engine) as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the database to this mikro's newest revision; returns (revision before, revision now)."""
    async with _connected(engine, locked=True) as conn:
        postgres = conn.dialect.name == "postgresql"
        sqlite = conn.dialect.name == "sqlite"
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
            await conn.commit()
        if sqlite:
            # SQLite alters a table by copying it and dropping the original: with foreign keys on,
            # that drop would delete (ON DELETE CASCADE) every row referring to it. Only settable
            # outside a transaction, so before the migration's and after it.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            before = await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            await conn.rollback()
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()
    return before, head_revision()


def _upgrade(conn: Connection) -> str | None:
    before = _current(conn)
    if before is None and inspect(conn).has_table("users"):
        check_schema(conn, _baseline_metadata(), conn.engine.url.render_as_string())
        command.stamp(alembic_config(conn), BASELINE)
        before = BASELINE
    elif before is not None and not _known(before):
        raise DatabaseSchemaError(
            f"the database {conn.engine.url.render_as_string()} is at revision {before}, which this "
            f"mikro does not know (its newest is {head_revision()}): it was upgraded by a newer mikro; "
            "run that version (or newer) instead."
        )
    if before != head_revision():
        command.upgrade(alembic_config(conn), "head")
        if conn.dialect.name == "sqlite":
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise DatabaseSchemaError(f"the upgrade would break {len(broken)} references: {broken[:5]}")
    return before


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


@functools.cache
def _baseline_metadata() -> MetaData:
    """The first revision's tables, as that revision creates them (on an in-memory SQLite)."""
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
            metadata = MetaData()
            metadata.reflect(conn)
            metadata.remove(metadata.tables["alembic_version"])
        return metadata
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def _sqlite_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    async with sqlite_file_lock(engine, "migrate", wait=True):
        yield


def check_schema(conn: Connection, metadata: MetaData, where: str) -> None:
    """Raise :class:`DatabaseSchemaError` naming every column that differs from ``metadata``."""
    inspector = inspect(conn)
    problems: list[str] = []
    for table in metadata.sorted_tables:
        present: dict[str, Any] = {column["name"]: column for column in inspector.get_columns(table.name)}
        wanted = {column.name for column in table.columns}
        problems += [f"{table.name}.{name} is missing" for name in sorted(wanted - present.keys())]
        problems += [
            f"{table.name}.{name} is no longer used but refuses NULL"
            for name, column in present.items()
            if name not in wanted and not column["nullable"] and column.get("default") is None
        ]
    if problems:
        raise DatabaseSchemaError(
            f"the database {where} was made by a mikro older than its first migration "
            f"({BASELINE}) and cannot be upgraded: {'; '.join(problems)}. Serve a new data dir (or "
            "database), or bring the tables to revision 0001 by hand."
        )
