"""SQLite through aiosqlite with one trip to the connection's thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips per statement (create a cursor, execute, fetch, close)
and one more for every rollback, even when there is no transaction to roll back. Each trip is a queue
hand-off to aiosqlite's thread and a wake-up of the event loop; for the small queries of the reference
server those trips, not SQLite, were most of the CPU per request. ``OneTripConnection`` is an
aiosqlite connection whose cursors run execute + fetchall + close as one function in the thread and
then answer from the buffered rows, and whose rollback is skipped when SQLite has no open transaction.
SQLAlchemy's own aiosqlite dialect drives it unchanged (``create_async_engine(async_creator=...)``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

__all__ = ["SQLITE_PRAGMAS", "OneTripConnection", "sqlite_connector", "sqlite_path"]

# Run once per connection, when it is opened (connections are pooled, so not per request):
# WAL lets readers run beside the writer; synchronous=NORMAL is durable in WAL mode except for the
# last transactions before a power cut; foreign keys are off in SQLite unless asked for.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA temp_store=MEMORY",
)

_Outcome = tuple[Any, int, int | None, list[Any]]


class _BufferedCursor:
    """The aiosqlite cursor interface SQLAlchemy uses, answered from rows fetched in one trip."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        self._rows: list[Any] = []

    async def __aenter__(self) -> _BufferedCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._rows = []

    def _run(self, operation: str, parameters: Any, many: bool) -> _Outcome:
        # In the connection's thread.
        cursor = self._connection._conn.cursor()
        try:
            if many:
                cursor.executemany(operation, parameters)
            elif parameters is None:
                cursor.execute(operation)
            else:
                cursor.execute(operation, parameters)
            rows = cursor.fetchall() if cursor.description else []
            return cursor.description, cursor.rowcount, cursor.lastrowid, rows
        finally:
            cursor.close()

    async def _call(self, operation: str, parameters: Any, many: bool) -> _BufferedCursor:
        outcome: _Outcome = await self._connection._execute(  # type: ignore[no-untyped-call]
            self._run, operation, parameters, many
        )
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def execute(self, operation: str, parameters: Any = None) -> _BufferedCursor:
        return await self._call(operation, parameters, False)

    async def executemany(self, operation: str, parameters: Sequence[Any]) -> _BufferedCursor:
        return await self._call(operation, parameters, True)

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> _BufferedCursor:  # type: ignore[override]
        return _BufferedCursor(self)

    async def rollback(self) -> None:
        # Reading `in_transaction` is allowed from any thread; the connection is idle here (SQLAlchemy
        # serialises its use). pysqlite opens a transaction only before a write, so a session that
        # only read has nothing to roll back.
        if self._connection is not None and self._conn.in_transaction:
            await super().rollback()


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite+aiosqlite:///path`` URL; None for in-memory or URLs with options."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or parsed.query or database.startswith("file:"):
        return None
    return database


def sqlite_connector(path: str) -> Callable[[], OneTripConnection]:
    """An ``async_creator`` for SQLAlchemy: a pooled connection to ``path``, pragmas applied once."""

    def connect() -> sqlite3.Connection:
        # In the connection's thread.
        connection = sqlite3.connect(path, timeout=30)
        try:
            for pragma in SQLITE_PRAGMAS:
                connection.execute(pragma).close()
        except BaseException:
            connection.close()
            raise
        return connection

    def create() -> OneTripConnection:
        connection = OneTripConnection(connect, 64)
        # As SQLAlchemy does for aiosqlite: a forgotten connection must not keep the process alive.
        connection._thread.daemon = True
        return connection

    return create
