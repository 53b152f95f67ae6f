"""The database connection: engine, sessions, one-writer-at-a-time transactions on SQLite, batches of
read statements run in one call (`Database.rows`), and write transactions run as one synchronous job
(`Database.run_write`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import pydantic_core
from sqlalchemy import URL, Engine, Executable, create_engine, event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from mikro.server._json import loads
from mikro.server._migrate import upgrade
from mikro.server._sqlite import SQLITE_PRAGMAS, read_groups, sqlite_connector, sqlite_path, write_transaction

__all__ = [
    "Database",
    "RowReader",
    "SharedReader",
    "Statement",
    "WholeStatementSession",
    "close_session",
    "is_foreign_key_violation",
    "whole",
]

_T = TypeVar("_T")

#: A read statement and its parameters (None: it has none).
Statement: TypeAlias = tuple[Executable, Mapping[str, Any] | None]


class RowReader(Protocol):
    async def rows(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """The rows of each of ``statements``, read together."""
        ...


# Pooled connections are kept, not closed after each use: on SQLite every new connection costs a thread,
# a file open and its pragmas. A request holds one connection for its reads (`SharedReader`) and, while
# it writes, one more. A request may wait for the write lock while holding its reader's connection, so
# on SQLite the pool may grow well past its steady size (an idle SQLite connection is only a parked
# thread) rather than run dry; PostgreSQL's own connection limit (100 by default) bounds it there.
# Connections past the pool's size are closed when given back: on SQLite the pool keeps enough for a
# few dozen requests in flight, or every burst above 16 paid a connection (thread, file, pragmas, a
# registered function) per request.
_POOL_SIZE = {True: 64, False: 16}  # by `is_sqlite`
_MAX_OVERFLOW = {True: 80, False: 32}

# Worker threads (each with a pooled connection) reading batches of statements on SQLite at once: SQLite
# reads beside its writer in WAL mode, and the machine's cores bound the rest.
_READ_THREADS = 4


class Database:
    """Owns the engine. Use as ``async with Database(url) as db``; on entry the tables are created or
    upgraded to this mikro's newest migration (``upgraded`` says from which revision to which)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._read_sessions: async_sessionmaker[AsyncSession] | None = None
        self._write_lock: anyio.Lock | None = None
        self._thread_reads: Engine | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        self._queued: list[tuple[Sequence[Statement], asyncio.Future[list[Sequence[Any]]]]] | None = None
        self._write_engine: Engine | None = None
        self._thread_writes: sessionmaker[Session] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self.upgraded: tuple[str | None, str] | None = None

    async def __aenter__(self) -> Database:
        kwargs: dict[str, Any] = {
            "pool_size": _POOL_SIZE[self.is_sqlite],
            "max_overflow": _MAX_OVERFLOW[self.is_sqlite],
        }
        path = sqlite_path(self.url) if self.is_sqlite else None
        if path is not None:
            kwargs["async_creator"] = sqlite_connector(path)
        elif self.is_sqlite:
            # In-memory or with URL options: SQLAlchemy's own aiosqlite connections and pool.
            kwargs = {"connect_args": {"timeout": 30}}
        engine = create_async_engine(self.url, json_serializer=dumps, json_deserializer=loads, **kwargs)
        if self.is_sqlite and path is None:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, class_=WholeStatementSession)
        # A request's reads see one snapshot, as they do on SQLite (one read transaction): at
        # PostgreSQL's default READ COMMITTED, an image listed by one statement could lose its store
        # to another process's commit before the next statement reads it.
        readers = engine if self.is_sqlite else engine.execution_options(isolation_level="REPEATABLE READ")
        self._read_sessions = async_sessionmaker(
            readers, expire_on_commit=False, class_=WholeStatementSession
        )
        # SQLite has one writer; serialising our own writers avoids SQLITE_BUSY when a deferred
        # transaction upgrades to a write lock while another connection holds it.
        self._write_lock = anyio.Lock()
        try:
            self.upgraded = await upgrade(engine)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await engine.dispose()
            raise
        if path is not None:
            self._thread_reads = _thread_read_engine(path)
            self._read_threads = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="mikro-sqlite-read")
            self._write_engine = _thread_write_engine(path)
            self._thread_writes = sessionmaker(self._write_engine, expire_on_commit=False)
            # SQLite has one writer: one thread, whose one connection stays open.
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="mikro-sqlite-write")
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            if self._read_threads is not None:
                # Reads still running (their callers gone) finish and give their connections back first.
                await anyio.to_thread.run_sync(self._read_threads.shutdown)
            if self._writer is not None:
                # Nothing is queued here while a caller still waits: each waits for its own job.
                await anyio.to_thread.run_sync(self._writer.shutdown)
            if self._thread_reads is not None:
                await anyio.to_thread.run_sync(self._thread_reads.dispose)
            if self._write_engine is not None:
                await anyio.to_thread.run_sync(self._write_engine.dispose)
            if self._engine is not None:
                await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Database used outside `async with`"
        return self._engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed."""
        assert self._sessions is not None, "Database used outside `async with`"
        session = self._sessions()
        try:
            yield session
        except BaseException as e:
            await close_session(session, cancelled=not isinstance(e, Exception), is_sqlite=self.is_sqlite)
            raise
        else:
            await close_session(session, cancelled=False, is_sqlite=self.is_sqlite)

    @property
    def reads_in_threads(self) -> bool:
        """Whether `rows` reads in a worker thread (SQLite in a file) rather than through a session."""
        return self._thread_reads is not None

    async def rows(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """The rows of each of ``statements`` (plain Core reads), in one call: on SQLite one trip to a
        worker thread, where a session pays a trip to its connection's thread and the async
        adaptation's bookkeeping per statement (most of a small read's CPU); elsewhere one session, a
        statement after the other.

        On SQLite the calls made in one turn of the event loop (the DataLoaders a level of a response
        dispatches together, the reads of requests in flight) share the trip: asyncio's
        ``run_in_executor`` on a pool of this database's own (the server runs on asyncio), a third of
        the CPU of anyio's ``to_thread``. A cancelled caller stops waiting at once; its statements
        finish in their thread, which then gives the connection back (they only read: nothing is left
        half done)."""
        if self._thread_reads is None:
            async with self.read() as session:
                return await _each(session, statements)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Sequence[Any]]] = loop.create_future()
        if self._queued is None:
            self._queued = []
            loop.call_soon(self._send_queued, loop)
        self._queued.append((statements, future))
        return await future

    def _send_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        queued, self._queued = self._queued or [], None
        engine = self._thread_reads
        assert engine is not None
        groups = [statements for statements, _ in queued]
        futures = [future for _, future in queued]
        job = loop.run_in_executor(self._read_threads, read_groups, engine, groups)
        job.add_done_callback(lambda done: _answer(futures, done))

    def shared_reader(self) -> SharedReader:
        """One read session for all the reads of one HTTP request (``async with db.shared_reader()``)."""
        return SharedReader(self)

    def new_read_session(self) -> AsyncSession:
        assert self._read_sessions is not None, "Database used outside `async with`"
        return self._read_sessions()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back (nothing written) on error."""
        assert self._sessions is not None and self._write_lock is not None
        async with AsyncExitStack() as stack:
            if self.is_sqlite:
                await stack.enter_async_context(self._write_lock)
            session = self._sessions()
            cancelled = False
            try:
                yield session
                # Once the block is done its commit is not cancelled half-way (a client leaving now
                # gets what it asked for done, or, on error, nothing).
                with anyio.CancelScope(shield=True):
                    await session.commit()
            except BaseException as e:
                cancelled = not isinstance(e, Exception)
                raise
            finally:
                # Closing rolls back what was not committed, and gives the connection back even from a
                # cancelled request.
                await close_session(session, cancelled=cancelled, is_sqlite=self.is_sqlite)

    async def run_write(self, job: Callable[[Session], _T]) -> _T:
        """``job(session)`` as one transaction: committed when it returns, rolled back (nothing written)
        if it raises. ``job`` is synchronous: a transaction's statements cost no trip through the event
        loop each.

        On SQLite in a file it runs in this database's one writer thread on a synchronous engine (a
        third of the CPU of the async ORM's greenlets and aiosqlite's trip per statement), reached by
        asyncio's ``run_in_executor``; elsewhere (PostgreSQL, SQLite in memory) through an async
        session's ``run_sync``. A cancelled caller waits for the job to end (it cannot be stopped
        half-way in its thread), so that what it returns to is a transaction committed whole or
        rolled back whole, as for a commit in `write`."""
        if self._writer is None:
            async with self.write() as session:
                with anyio.CancelScope(shield=True):
                    result = await session.run_sync(job)
                return result
        assert self._write_lock is not None and self._thread_writes is not None
        # The lock still orders these jobs with the transactions of `write` (the async ORM's).
        async with self._write_lock:
            future = asyncio.get_running_loop().run_in_executor(
                self._writer, write_transaction, self._thread_writes, job
            )
            with anyio.CancelScope(shield=True):
                done = await future
            return done


class SharedReader:
    """The reads of one request share one session (one pooled connection, one autobegun transaction)
    instead of opening a session per read: on SQLite each session costs a checkout and a rollback
    round trip to the connection's thread.

    Blocks take turns (a lock), and each block ends with the session emptied, so a block sees what a
    fresh session would: rows as they are now, never what an earlier block loaded. A block must only
    run its own queries: awaiting something that itself needs this reader (a DataLoader, say) inside
    a block would wait for itself.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._session: AsyncSession | None = None
        self._lock: anyio.Lock | None = None
        self._closed = False

    async def __aenter__(self) -> SharedReader:
        # Uncontended (one field's reads at a time, most of the time) it is taken without a trip
        # through the event loop: every statement's block checks for cancellation anyway.
        self._lock = anyio.Lock(fast_acquire=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        if self._session is None and not self._lock.locked():
            # No session to close and no block in one (most requests: reads in threads, or none):
            # closed without the shielded lock round, a tenth of a trivial query's CPU.
            self._closed = True
            return
        # A DataLoader's batch runs in a task of its own, which a cancelled request does not cancel:
        # its read finishes before the session is closed under it.
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._closed = True
                await self._discard()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        assert self._lock is not None, "SharedReader used outside `async with`"
        if self._closed:
            # A batch that starts after its (cancelled) request ended reads with a session of its own.
            async with self._db.read() as session:
                yield session
            return
        async with self._lock:
            if self._session is None:
                self._session = self._db.new_read_session()
            session = self._session
            try:
                yield session
            except Exception as e:
                if isinstance(e, SQLAlchemyError):
                    # The connection may be in any state after a database error: start afresh.
                    await self._discard()
                raise
            except BaseException:
                # Cancelled mid-query: the same, but without a rollback on a connection that may still
                # be busy with the cancelled query (asyncpg refuses that): the pool drops it instead.
                await self._discard(invalidate=True)
                raise
            finally:
                # Most blocks read plain rows (the loaders' Core queries) and leave nothing to expunge;
                # emptying a session costs a new identity map each time.
                if session.identity_map or session.new or session.deleted:
                    session.expunge_all()

    async def rows(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """`Database.rows`; where that reads through a session, through this reader's (one snapshot
        on PostgreSQL)."""
        if self._db.reads_in_threads:
            return await self._db.rows(statements)
        async with self.session() as session:
            return await _each(session, statements)

    async def _discard(self, *, invalidate: bool = False) -> None:
        session, self._session = self._session, None
        if session is not None:
            await close_session(session, cancelled=invalidate, is_sqlite=self._db.is_sqlite)


async def whole(step: Awaitable[_T]) -> _T:
    """``step``'s result; a cancellation waits for it to end, then takes effect."""
    with anyio.CancelScope(shield=True):
        result = await step
    await anyio.lowlevel.checkpoint_if_cancelled()
    return result


class WholeStatementSession(AsyncSession):
    """A session whose statements a cancelled request lets finish: the cancellation takes effect at the
    next statement boundary instead.

    A cancellation delivered inside SQLAlchemy's greenlet bridge lands wherever the driver awaits, and
    anyio cancels every await after it too, SQLAlchemy's own clean-up included: a connection
    cancelled mid-query was being terminated by a task the loop dropped pending at shutdown
    (aiosqlite), or left checked out for the garbage collector to terminate inside another request's
    cancelled scope (asyncpg). A request past its deadline waits for its current statement (each a few
    ms here; on PostgreSQL an operator bounds a runaway one with ``statement_timeout``) and stops
    before the next.
    """

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await whole(super().execute(*args, **kwargs))

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await whole(super().scalar(*args, **kwargs))

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return await whole(super().scalars(*args, **kwargs))

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await whole(super().get(*args, **kwargs))

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        await whole(super().flush(*args, **kwargs))

    async def refresh(self, *args: Any, **kwargs: Any) -> None:
        await whole(super().refresh(*args, **kwargs))


async def close_session(session: AsyncSession, *, cancelled: bool, is_sqlite: bool) -> None:
    """Give a session's connection back, even from a cancelled task. After a cancellation the connection
    may still be busy with the cancelled statement, and asyncpg refuses a rollback then: on PostgreSQL
    the pool drops that connection instead."""
    with anyio.CancelScope(shield=True):
        await (session.invalidate() if cancelled and not is_sqlite else session.close())


def is_foreign_key_violation(exc: IntegrityError) -> bool:
    """Whether ``exc`` says a row refers to one that is not there (SQLSTATE 23503 on PostgreSQL)."""
    original = exc.orig
    if getattr(original, "sqlstate", None) == "23503":  # asyncpg's, as SQLAlchemy's adapter passes it on
        return True
    return getattr(original, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_FOREIGNKEY"


async def _each(session: AsyncSession, statements: Sequence[Statement]) -> list[Sequence[Any]]:
    return [(await session.execute(query, params)).all() for query, params in statements]


def _answer(
    futures: list[asyncio.Future[list[Sequence[Any]]]],
    job: asyncio.Future[list[list[Sequence[Any]] | Exception]],
) -> None:
    """Each caller's rows or error (a caller that stopped waiting is skipped)."""
    answers: list[Any]
    if job.cancelled():
        answers = [RuntimeError("the read was cancelled")] * len(futures)
    elif (failed := job.exception()) is not None:
        answers = [failed] * len(futures)
    else:
        answers = job.result()
    for future, answer in zip(futures, answers, strict=True):
        if future.done():
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)


def _thread_read_engine(path: str) -> Engine:
    """A synchronous engine on the same SQLite file for `Database.rows`, its connections read-only.
    Each is used by one worker thread at a time, but not always the same one."""
    engine = create_engine(
        URL.create("sqlite", database=path),
        pool_size=_READ_THREADS,
        max_overflow=0,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_deserializer=loads,
    )
    event.listen(engine, "connect", _read_only_pragmas)
    return engine


def dumps(value: Any) -> str:
    """``json.dumps`` for JSON columns, faster: pydantic-core's encoder writes a batch's shapes, channels
    and tags in a quarter of the stdlib's time (NaN and Infinity as the stdlib writes them, integers
    beyond 64 bits exact); what it refuses (lone surrogates, say) the stdlib encodes, as before."""
    try:
        return pydantic_core.to_json(value, inf_nan_mode="constants").decode()
    except (ValueError, TypeError):
        return json.dumps(value)


def _thread_write_engine(path: str) -> Engine:
    """A synchronous engine on the same SQLite file for `Database.run_write`: one connection, used by
    the writer thread alone."""
    engine = create_engine(
        URL.create("sqlite", database=path),
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=dumps,
        json_deserializer=loads,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _read_only_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA query_only=ON").close()
