"""SQLite through aiosqlite with one trip to the connection's thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips per statement (create a cursor, execute, fetch, close)
and one more for every rollback, even when there is no transaction to roll back. Each trip is a queue
hand-off to aiosqlite's thread and a wake-up of the event loop; for the small queries of the reference
server those trips, not SQLite, were most of the CPU per request. ``OneTripConnection`` is an
aiosqlite connection whose cursors run execute + fetchall + close as one function in the thread and
then answer from the buffered rows, and whose rollback is skipped when SQLite has no open transaction.
SQLAlchemy's own aiosqlite dialect drives it unchanged (``create_async_engine(async_creator=...)``).

`read_groups` runs batches of read statements in a worker thread (see `Database.rows`). The statements
the server builds once and runs again and again (marked with `reused`: the loaders' and the gets'
builders) run on the pysqlite connection itself, compiled once by SQLAlchemy for its SQLite dialect,
their values converted by the columns' own result processors: SQLAlchemy's execution path (cache key,
execution context, cursor result) cost four times what SQLite itself does for these small reads (270 µs
against 100 for the ten statements of an image with its relations). Any other statement runs through
SQLAlchemy as usual.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import Engine, Executable, Select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = [
    "SQLITE_PRAGMAS",
    "OneTripConnection",
    "read_groups",
    "reused",
    "sqlite_connector",
    "sqlite_path",
    "write_transaction",
]

_Q = TypeVar("_Q", bound=Select[Any])
_T = TypeVar("_T")
_Statement = tuple[Executable, Mapping[str, Any] | None]

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


# --- reads in a worker thread --------------------------------------------------------------------------


class _Plan:
    """A reused statement compiled for SQLite: its SQL (expanded per call), the result processors of
    its columns (by index) and the row type (attribute access by column key, as SQLAlchemy's rows)."""

    __slots__ = ("compiled", "make", "processors")

    def __init__(self, query: Select[Any], make: Callable[[Any], Any], dialect: Dialect) -> None:
        compiled = query.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.compiled = compiled
        columns = list(query.selected_columns)
        self.processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]
        self.make = make

    def run(self, connection: sqlite3.Connection, params: Mapping[str, Any] | None) -> list[Any]:
        state = self.compiled.construct_expanded_state(params)
        try:
            rows = connection.execute(state.statement, state.positional_parameters).fetchall()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(state.statement, params, exc, sqlite3.Error) from exc
        make, processors = self.make, self.processors
        if not processors:
            return [make(row) for row in rows]
        out = []
        for row in rows:
            values = list(row)
            for index, processor in processors:
                if values[index] is not None:
                    values[index] = processor(values[index])
            out.append(make(values))
        return out


#: id(statement) -> (the statement, its row maker, its plan once made by a reading thread).
_REUSED: dict[int, tuple[Select[Any], Callable[[Any], Any], _Plan | None]] = {}


def reused(query: _Q) -> _Q:
    """Mark ``query`` (built once, kept, run again and again) to be run on pysqlite directly by
    `read_groups`. Its columns' keys must be valid field names (no leading underscore)."""
    row_type: Any = namedtuple("Row", list(query.selected_columns.keys()))  # type: ignore[misc]
    _REUSED[id(query)] = (query, row_type._make, None)
    return query


def _plan(query: Executable, dialect: Dialect) -> _Plan | None:
    entry = _REUSED.get(id(query))
    if entry is None or entry[0] is not query:
        return None
    reused_query, make, plan = entry
    if plan is None:
        # Made by whichever thread reads it first (two at once make two equal plans, one is kept).
        plan = _Plan(reused_query, make, dialect)
        _REUSED[id(query)] = (reused_query, make, plan)
    return plan


def read_groups(engine: Engine, groups: list[Sequence[_Statement]]) -> list[list[Sequence[Any]] | Exception]:
    """Each group's rows, or the error that stopped it (a group fails alone). In a worker thread."""
    answers: list[list[Sequence[Any]] | Exception] = []
    dialect = engine.dialect
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        for statements in groups:
            try:
                found: list[Sequence[Any]] = []
                for query, params in statements:
                    plan = _plan(query, dialect)
                    if plan is None:
                        found.append(connection.execute(query, params).all())
                    else:
                        found.append(plan.run(raw, params))  # type: ignore[arg-type]
                answers.append(found)
            except Exception as exc:
                connection.rollback()
                answers.append(exc)
    return answers


def write_transaction(sessions: sessionmaker[Session], job: Callable[[Session], _T]) -> _T:
    """``job`` in one transaction, committed if it returns; closing the session rolls back what an
    error left uncommitted. In the writer thread (see `Database.run_write`)."""
    with sessions() as session:
        result = job(session)
        session.commit()
        return result
