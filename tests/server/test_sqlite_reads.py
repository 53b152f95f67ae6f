"""The server's SQLite connections answer reads on the event loop without waiting: a read that SQLite
cannot answer at once (another connection holds the lock) must wait for it on the connection's thread,
as every statement did before, and not fail; and a write after such a read still waits for its lock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from mikro.server._sqlite import OneTripConnection, sqlite_connector

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="aiosqlite's connections answer on asyncio futures"),
]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "reads.sqlite3"


@pytest.fixture
async def connection(path: Path) -> AsyncIterator[OneTripConnection]:
    conn = sqlite_connector(str(path))()
    await conn
    try:
        # A rollback journal, unlike WAL, makes readers wait for a writer: the case to cover.
        for statement in (
            "PRAGMA journal_mode=DELETE",
            "CREATE TABLE t (x INTEGER)",
            "INSERT INTO t VALUES (1)",
        ):
            async with conn.cursor() as cursor:
                await cursor.execute(statement)
        await conn.commit()
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def holder(path: Path, connection: OneTripConnection) -> Iterator[sqlite3.Connection]:
    """Another connection, as another process would hold the database."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield other
    finally:
        other.close()


async def _count(conn: OneTripConnection) -> int:
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT count(*) FROM t")
        row = await cursor.fetchone()
    return int(row[0])


async def _released_later(holder: sqlite3.Connection) -> None:
    await anyio.sleep(0.3)
    holder.execute("COMMIT")


async def test_a_read_while_another_connection_writes_waits_and_answers(
    connection: OneTripConnection, holder: sqlite3.Connection
) -> None:
    assert await _count(connection) == 1  # answered on the loop
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (2)")
    async with anyio.create_task_group() as tg:
        tg.start_soon(_released_later, holder)
        # Locked now: the read goes to the connection's thread and waits there.
        assert await _count(connection) == 2


async def test_a_write_after_a_read_still_waits_for_the_lock(
    connection: OneTripConnection, holder: sqlite3.Connection
) -> None:
    assert await _count(connection) == 1  # the busy timeout was turned off for this read
    holder.execute("BEGIN EXCLUSIVE")
    async with anyio.create_task_group() as tg:
        tg.start_soon(_released_later, holder)
        async with connection.cursor() as cursor:
            await cursor.execute("INSERT INTO t VALUES (3)")
        await connection.commit()
    assert await _count(connection) == 2
