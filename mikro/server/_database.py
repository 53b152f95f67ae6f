"""The database connection: engine, sessions, and one-writer-at-a-time transactions on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mikro.server._models import Base

__all__ = ["Database"]


class Database:
    """Owns the engine. Use as ``async with Database(url) as db``; tables are created on entry."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._write_lock: anyio.Lock | None = None

    async def __aenter__(self) -> Database:
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer; serialising our own writers avoids SQLITE_BUSY when a deferred
        # transaction upgrades to a write lock while another connection holds it.
        self._write_lock = anyio.Lock()
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await engine.dispose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._engine is not None:
            with anyio.CancelScope(shield=True):
                await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Database used outside `async with`"
        return self._engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed."""
        assert self._sessions is not None, "Database used outside `async with`"
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back (nothing written) on error."""
        assert self._sessions is not None and self._write_lock is not None
        async with AsyncExitStack() as stack:
            if self.is_sqlite:
                await stack.enter_async_context(self._write_lock)
            session = self._sessions()
            try:
                async with session.begin():
                    yield session
            finally:
                # A cancelled request must still release its connection cleanly.
                with anyio.CancelScope(shield=True):
                    await session.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
