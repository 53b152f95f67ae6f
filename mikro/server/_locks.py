"""Locks between server processes on one database: "exactly one process does this".

PostgreSQL: session advisory locks on a connection held for the block (released by PostgreSQL if the
process dies). SQLite, whose processes share one machine: ``flock`` on a file beside the database
(released by the kernel if the process dies). A database in memory has one process only.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mikro.server._sqlite import sqlite_path

__all__ = ["exclusive", "sqlite_file_lock"]


@contextlib.asynccontextmanager
async def sqlite_file_lock(engine: AsyncEngine, name: str, *, wait: bool) -> AsyncIterator[bool]:
    """``flock`` on ``<database>.<name>-lock``; yields whether it is held (always, with ``wait``)."""
    path = sqlite_path(engine.url.render_as_string()) if engine.dialect.name == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # Windows: one local process is all mikro runs there.
        path = None
    if path is None:
        yield True
        return
    fd = os.open(f"{path}.{name}-lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            if wait:
                await anyio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never blocks
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yields True in the one process that holds ``name`` now, False (at once) in the others."""
    if engine.dialect.name != "postgresql":
        async with sqlite_file_lock(engine, name, wait=False) as held:
            yield held
        return
    key = zlib.crc32(f"mikro:{name}".encode())
    async with engine.connect() as conn:
        held = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                with anyio.CancelScope(shield=True):
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await conn.commit()
