"""A database made by another version of mikro is refused at start, with one message, and left as it was."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import create_engine

from mikro.server._database import Database
from mikro.server._models import Base
from mikro.server._schema_check import DatabaseSchemaError

ASYNCIO_ONLY = "the server's database layer is SQLAlchemy's asyncio extension"


def asyncio_only(test: Any) -> Any:
    """For tests that open the server's `Database` themselves."""
    test = pytest.mark.parametrize("anyio_backend", ["asyncio"])(test)
    return pytest.mark.anyio(pytest.mark.single_backend(reason=ASYNCIO_ONLY)(test))


def make_database(path: Path) -> None:
    """The tables of this mikro, and one user in them."""
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute(
            "insert into users (username, is_admin, token_hash, created_at) values (?, 0, 'x', '2026-01-01')",
            ("ann",),
        )


def users(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [name for (name,) in db.execute("select username from users")]


@asyncio_only
async def test_a_missing_column_is_named_and_nothing_is_changed(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_database(path)
    with sqlite3.connect(path) as db:
        db.execute("alter table samples drop column description")  # as an older mikro would have it

    with pytest.raises(DatabaseSchemaError, match=r"samples\.description is missing") as raised:
        async with Database(f"sqlite+aiosqlite:///{path}"):
            pytest.fail("a database with an outdated table was opened")
    assert "another version of mikro" in str(raised.value)
    assert users(path) == ["ann"]
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("pragma table_info(samples)")]
    assert "description" not in columns  # the check reports; it does not alter tables


@asyncio_only
async def test_an_old_column_that_refuses_null_is_named(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_database(path)
    with sqlite3.connect(path) as db:
        (create,) = db.execute("select sql from sqlite_master where name = 'samples'").fetchone()
        db.execute("drop table samples")
        db.execute(create.replace("(", "(legacy_store_id INTEGER NOT NULL, ", 1))

    with pytest.raises(DatabaseSchemaError, match=r"samples\.legacy_store_id is no longer used"):
        async with Database(f"sqlite+aiosqlite:///{path}"):
            pytest.fail("a database with an outdated table was opened")


@asyncio_only
async def test_an_up_to_date_database_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "current.sqlite3"
    make_database(path)
    async with Database(f"sqlite+aiosqlite:///{path}"):
        pass
    assert users(path) == ["ann"]


@pytest.mark.anyio
async def test_mikro_serve_says_why_it_will_not_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_database(data_dir / "mikro.sqlite3")
    with sqlite3.connect(data_dir / "mikro.sqlite3") as db:
        db.execute("alter table samples drop column description")

    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKRO_")}
    with anyio.fail_after(120):
        done = await anyio.run_process(
            [sys.executable, "-m", "mikro", "serve", "--data-dir", str(data_dir), "--port", "0"],
            env=env,
            check=False,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1
    assert stderr.startswith("mikro: the database") and "samples.description is missing" in stderr
    assert "Traceback" not in stderr
