"""One process at a time: the lock that lets exactly one server process do maintenance (and the
migration lock's SQLite file lock), on PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from mikro.server._locks import exclusive
from mikro.server._settings import Settings

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="the server's database layer is SQLAlchemy's asyncio extension"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'mikro.sqlite3'}"
    return Settings(database_url=request.getfixturevalue("postgres_database")).sqlalchemy_url()


async def test_exactly_one_holder_at_a_time(database_url: str) -> None:
    # Two engines stand for two server processes (each its own connections / open files).
    first, second = create_async_engine(database_url), create_async_engine(database_url)
    try:
        async with exclusive(first, "maintenance") as held:
            assert held
            async with exclusive(second, "maintenance") as other:
                assert not other  # told at once, not made to wait
            async with exclusive(second, "something else") as unrelated:
                assert unrelated
        async with exclusive(second, "maintenance") as after:
            assert after  # released when the holder's block ended
    finally:
        await first.dispose()
        await second.dispose()
