"""Alembic migrations: the revisions match the models; a database made by the last release before
migrations (tests/server/release_db) is upgraded on start and keeps every row and image; databases
mikro cannot upgrade are refused with one message and left as they were."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

import mikro
from mikro.server._database import Database
from mikro.server._migrate import (
    BASELINE,
    DatabaseSchemaError,
    _baseline_metadata,
    head_revision,
    model_differences,
)
from mikro.server._settings import Settings
from tests.fixtures_servers import MikroServer, free_port, process_env
from tests.server.release_db.make import pixels

RELEASE = Path(__file__).with_name("release_db")
ASYNCIO_ONLY = "the server's database layer is SQLAlchemy's asyncio extension"


def asyncio_only(test: Any) -> Any:
    """For tests that open the server's `Database` themselves."""
    test = pytest.mark.parametrize("anyio_backend", ["asyncio"])(test)
    return pytest.mark.anyio(pytest.mark.single_backend(reason=ASYNCIO_ONLY)(test))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'mikro.sqlite3'}"
    url: str = request.getfixturevalue("postgres_database")
    return Settings(database_url=url).sqlalchemy_url()


@asyncio_only
async def test_every_model_change_has_a_revision(database_url: str) -> None:
    """Fails when a model in mikro/server/_models.py changed without a new Alembic revision: run
    ``python -m mikro.server.migrations "what changed"``, review the revision, and commit it."""
    async with Database(database_url) as db:
        assert db.upgraded == (None, head_revision())
        async with db.engine.connect() as conn:
            assert await conn.run_sync(model_differences) == []
    async with Database(database_url) as again:  # an up-to-date database opens without changes
        assert again.upgraded == (head_revision(), head_revision())


# --- the database of the last release before migrations -------------------------------------------


def _copy_to_postgres(sqlite_file: Path, url: str) -> None:
    """The release's rows in a PostgreSQL database made as that release made it (revision 0001's tables,
    no Alembic bookkeeping), so both backends upgrade the same catalogue."""
    from alembic import command

    from mikro.server._migrate import alembic_config

    source = create_engine(f"sqlite:///{sqlite_file}")
    rows = {}
    with source.connect() as conn:
        for table in _baseline_metadata().sorted_tables:
            rows[table.name] = [dict(row._mapping) for row in conn.execute(table.select())]
    source.dispose()

    async def load() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), BASELINE))
                await conn.execute(text("DROP TABLE alembic_version"))
                target = MetaData()
                await conn.run_sync(lambda sync: target.reflect(sync))
                for table in target.sorted_tables:
                    if rows[table.name]:
                        await conn.execute(table.insert(), rows[table.name])
                    if "id" in table.c:
                        await conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                f"(SELECT coalesce(max(id), 1) FROM {table.name}))"
                            )
                        )
        finally:
            await engine.dispose()

    anyio.run(load, backend="asyncio")


def _upgrade_message() -> str:
    """What mikro prints when it upgrades the release's database (recorded as the first revision)."""
    if head_revision() == BASELINE:
        return f"the database is up to date (revision {BASELINE})"
    return f"upgraded the database from revision {BASELINE} to {head_revision()}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def release_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MikroServer]:
    """A server started on a copy of the release's data dir (on PostgreSQL: its rows copied there)."""
    data_dir = tmp_path_factory.mktemp("release") / "data"
    shutil.copytree(RELEASE / "data", data_dir)
    settings: dict[str, Any] = {}
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_cluster").create_database()
        _copy_to_postgres(data_dir / "mikro.sqlite3", Settings(database_url=url).sqlalchemy_url())
        (data_dir / "mikro.sqlite3").unlink()
        settings["database_url"] = url
    server = MikroServer(data_dir, settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_release_database_is_upgraded_and_keeps_everything(release_server: MikroServer) -> None:
    out = (release_server.data_dir.with_name("data-logs") / "stdout.txt").read_text()
    assert _upgrade_message() in out
    expected = json.loads((RELEASE / "expected.json").read_text())

    async with mikro.connect(release_server.url, token=release_server.admin_token) as m:
        assert (await m.me()).is_admin  # the release's admin token still works
        (sample,) = await m.list_samples()
        assert (sample.name, sample.description, sample.tags) == ("HeLa", "cervix", ["old", "release"])
        assert [e.name for e in await m.list_experiments()] == ["drug screen"]
        (dataset,) = await m.list_datasets(tags=["old"])
        reps = sorted(await m.list_representations(dataset=dataset), key=lambda r: int(r.id))
        assert [r.id for r in reps] == expected["representations"]
        first, second = reps
        assert [c.name for c in first.channels] == ["DAPI", "GFP"]
        assert first.sample is not None and first.sample.id == sample.id
        assert first.acquisition_date is not None and first.acquisition_date.year == 2026
        assert [o.id for o in second.origins or []] == [first.id]
        for index, rep in enumerate(reps):  # every image's pixels, read from the store
            # Recorded as a new upload records it: the group, its level-0 array at "0", one level.
            assert rep.store.array_path == "0" and [level.path for level in rep.store.levels] == ["0"]
            assert rep.store.path.endswith(rep.store.key)
            values = await m.compute(rep.data)
            np.testing.assert_array_equal(values.values, pixels(index))
        (roi,) = await m.list_rois(representation=first)
        assert roi.label == "nucleus"
        metrics = {metric.key: metric.value for metric in await m.list_metrics(representation=first)}
        assert metrics == {"area": {"px": 12}, "mean": 3.5}
        thumbnails = await m.list_thumbnails(representation=first)  # the upload's own and ours
        assert (8, 6) in {(t.width, t.height) for t in thumbnails}
        for thumbnail in thumbnails:
            assert (await m.thumbnail_png(thumbnail)).startswith(b"\x89PNG")
        (table,) = await m.list_tables()
        assert (await table.data.pandas())["area"].tolist() == [10.5, 11.0, 9.25]
        # And it takes new rows: PostgreSQL's id sequences and SQLite's counters continue.
        new = await m.create_sample("new after upgrade")
        assert int(new.id) > int(sample.id)
        await m.delete_sample(new)


# --- databases mikro cannot upgrade ----------------------------------------------------------------


def _release_copy(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE / "data", data_dir)
    return data_dir / "mikro.sqlite3"


def _users(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [name for (name,) in db.execute("select username from users")]


@asyncio_only
async def test_an_older_database_without_a_column_is_named_and_left_alone(tmp_path: Path) -> None:
    path = _release_copy(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("drop index ix_samples_created_at")
        db.execute("alter table samples drop column description")  # as a mikro before 0.1 had it
    before = _users(path)

    with pytest.raises(DatabaseSchemaError, match=r"samples\.description is missing") as raised:
        async with Database(f"sqlite+aiosqlite:///{path}"):
            pytest.fail("a database with an outdated table was opened")
    assert "older than its first migration" in str(raised.value)
    assert _users(path) == before
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
    assert "alembic_version" not in tables  # nothing was recorded or changed


async def _mikro(*args: str) -> tuple[int, str, str]:
    env = process_env()
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-m", "mikro", *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.mark.anyio
async def test_mikro_serve_refuses_a_database_from_a_newer_mikro(tmp_path: Path) -> None:
    path = _release_copy(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("create table alembic_version (version_num varchar(32) primary key)")
        db.execute("insert into alembic_version values ('ffff_from_the_future')")

    code, _, stderr = await _mikro("serve", "--data-dir", str(path.parent), "--port", "0")
    assert code == 1
    assert stderr.startswith("mikro: the database") and "ffff_from_the_future" in stderr
    assert "newer mikro" in stderr and "Traceback" not in stderr
    code, out, _ = await _mikro("db", "current", "--data-dir", str(path.parent))
    assert code == 1 and "database: ffff_from_the_future" in out


@pytest.mark.anyio
async def test_mikro_db_upgrade_and_current(tmp_path: Path) -> None:
    data_dir = _release_copy(tmp_path).parent
    code, out, _ = await _mikro("db", "current", "--data-dir", str(data_dir))
    assert (code, out) == (1, f"database: none\nthis mikro: {head_revision()}\n")
    code, out, _ = await _mikro("db", "upgrade", "--data-dir", str(data_dir))
    assert code == 0 and _upgrade_message() in out
    code, out, _ = await _mikro("db", "current", "--data-dir", str(data_dir))
    assert (code, out) == (0, f"database: {head_revision()}\nthis mikro: {head_revision()}\n")
    code, out, _ = await _mikro("db", "upgrade", "--data-dir", str(data_dir))
    assert code == 0 and "up to date" in out


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.single_backend(reason="it only runs `mikro db` processes; its own loop just waits")
async def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    nobody = f"postgresql://mikro:hunter2@127.0.0.1:{free_port()}/mikro"
    missing = tmp_path / "no such dir" / "mikro.sqlite3"
    for command, url in (("current", nobody), ("upgrade", f"sqlite:///{missing}")):
        code, out, stderr = await _mikro("db", command, "--database-url", url)
        assert (code, out) == (1, "")
        assert stderr.startswith("mikro: cannot reach the database") and stderr.count("\n") == 1
        assert "hunter2" not in stderr


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.single_backend(reason="it only runs `mikro db upgrade` processes; its own loop just waits")
async def test_processes_starting_at_once_upgrade_once(database_url: str) -> None:
    url = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    outputs: list[str] = []

    async def upgrade() -> None:
        code, out, stderr = await _mikro("db", "upgrade", "--database-url", url)
        assert code == 0, stderr
        outputs.append(out)

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(upgrade)
    assert sorted(outputs) == [
        f"mikro: the database is up to date (revision {head_revision()})\n",
        f"mikro: upgraded the database from revision none to {head_revision()}\n",
    ]
