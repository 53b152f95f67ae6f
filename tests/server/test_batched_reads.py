"""Reads in batches (`Database.rows`, `load_all` over `SqlLoader`s): the relations of a list, loaded by
several loaders at once, are read in one call and answer as each loader alone would; a failing
statement fails the keys of that call only and leaves the next read unharmed; on SQLite the reads run
on read-only connections. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from mikro.server import Settings
from mikro.server import _models as m
from mikro.server._crud import visible_row_statement
from mikro.server._database import Database, Statement
from mikro.server._loaders import Loaders, _by_column_query, _by_id_query, _keyed_query, _through_query
from mikro.server._preload import SqlLoader, load_all

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="the server's loaders are strawberry DataLoaders, on asyncio"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    settings = Settings(data_dir=tmp_path)
    if request.param == "postgresql":
        settings = Settings(data_dir=tmp_path, database_url=request.getfixturevalue("postgres_database"))
    async with Database(settings.sqlalchemy_url()) as database:
        yield database


class Counted:
    """The database's reads, counted (the statements of each call)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[int] = []

    async def rows(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        self.calls.append(len(statements))
        return await self.db.rows(statements)


async def _rows(db: Database) -> dict[str, Any]:
    """Two users' samples, datasets and images; the first image in an experiment."""
    async with db.write() as s:
        users = [m.User(username=f"u{i}", token_hash=f"h{i}") for i in range(2)]
        s.add_all(users)
        await s.flush()
        samples = [m.Sample(name=f"s{i}", creator_id=u.id) for i, u in enumerate(users)]
        datasets = [m.Dataset(name=f"d{i}", creator_id=u.id) for i, u in enumerate(users)]
        experiment = m.Experiment(name="e", creator_id=users[0].id)
        stores = [
            m.Store(kind="ZARR", bucket="b", key=f"k{i}", path=f"p{i}", creator_id=u.id)
            for i, u in enumerate(users)
        ]
        s.add_all([*samples, *datasets, experiment, *stores])
        await s.flush()
        reps = [
            m.Representation(
                name=f"r{i}",
                store_id=stores[i].id,
                shape=[2, 2],
                dims=["y", "x"],
                dtype="uint16",
                variety="VOXEL",
                sample_id=samples[i].id,
                dataset_id=datasets[i].id,
                creator_id=users[i].id,
            )
            for i in range(2)
        ]
        s.add_all(reps)
        await s.flush()
        await s.execute(
            insert(m.representation_experiments),
            [{"representation_id": reps[0].id, "experiment_id": experiment.id}],
        )
        return {
            "samples": [x.id for x in samples],
            "datasets": [x.id for x in datasets],
            "reps": [x.id for x in reps],
            "experiment": experiment.id,
            "stores": [x.id for x in stores],
        }


async def test_the_relations_of_a_list_are_read_in_one_call(db: Database) -> None:
    ids = await _rows(db)
    reader = Counted(db)
    loaders = Loaders(reader)
    missing = 10**9
    samples, datasets, experiments = await load_all(
        [
            (loaders.sample, [*ids["samples"], missing]),
            (loaders.dataset, ids["datasets"]),
            (loaders.experiments_of_representation, ids["reps"]),
        ]
    )
    assert reader.calls == [3]
    assert [samples[k].result().name for k in ids["samples"]] == ["s0", "s1"]
    assert samples[missing].result() is None
    assert [datasets[k].result().name for k in ids["datasets"]] == ["d0", "d1"]
    first, second = (experiments[k].result() for k in ids["reps"])
    assert [e.name for e in first] == ["e"] and second == []
    # What the fields then read: the loaders' caches, no further read.
    cached = await loaders.sample.load(ids["samples"][1])
    assert cached is not None and cached.name == "s1"
    assert reader.calls == [3]


async def test_a_failing_statement_fails_its_call_and_the_next_read_works(db: Database) -> None:
    ids = await _rows(db)
    loaders = Loaders(db)

    def broken(keys: list[int]) -> list[Statement]:
        return [(text("SELECT nothing FROM no_such_table"), None)]

    failing: SqlLoader[Any] = SqlLoader(db, broken, lambda keys, rows: list(keys), cache=True)
    other, bad = await load_all([(loaders.sample, ids["samples"]), (failing, [1, 2])])
    assert all(isinstance(f.exception(), SQLAlchemyError) for f in (*other.values(), *bad.values()))
    # The pooled connection that failed reads the next batch normally.
    fresh = Loaders(db)
    (again,) = await load_all([(fresh.sample, ids["samples"])])
    assert [again[k].result().name for k in ids["samples"]] == ["s0", "s1"]


async def test_reads_made_at_once_answer_each_caller(db: Database) -> None:
    """Reads started together (on SQLite they share one trip to a thread): each caller gets its own
    rows, or its own error."""
    ids = await _rows(db)
    query = select(m.Sample.name).where(m.Sample.id == bindparam("id"))
    bad: Statement = (text("SELECT nothing FROM no_such_table"), None)
    got = await asyncio.gather(
        *(db.rows([(query, {"id": i})]) for i in ids["samples"]), db.rows([bad]), return_exceptions=True
    )
    *answers, failed = got
    assert [[tuple(row) for row in rows] for (rows,) in answers] == [[("s0",)], [("s1",)]]  # type: ignore[misc]
    assert isinstance(failed, SQLAlchemyError)


async def test_sqlite_reads_cannot_write(tmp_path: Path) -> None:
    async with Database(f"sqlite+aiosqlite:///{tmp_path / 'mikro.sqlite3'}") as db:
        assert db.reads_in_threads
        with pytest.raises(SQLAlchemyError, match="readonly"):
            await db.rows([(insert(m.User).values(username="x", token_hash="y"), None)])
        (users,) = await db.rows([(text("SELECT count(*) FROM users"), None)])
        assert users[0][0] == 0


async def test_reused_statements_read_what_sqlalchemy_reads(db: Database) -> None:
    """The loaders' statements (on SQLite run on pysqlite with their compiled SQL and the columns' own
    result processors) answer the same values, of the same types, under the same keys as SQLAlchemy's
    own execution of them does."""
    ids = await _rows(db)
    link = m.representation_experiments.c
    statements = [
        visible_row_statement(m.Representation, ids["reps"][0]),
        _keyed_query(_by_id_query, m.Sample, keys=ids["samples"]),
        _keyed_query(_by_id_query, m.Dataset, keys=ids["datasets"][:1]),
        _keyed_query(_by_id_query, m.Store, keys=ids["stores"]),
        _keyed_query(_by_column_query, m.Representation, "sample_id", keys=ids["samples"]),
        _keyed_query(
            _through_query, m.Experiment, link.representation_id, link.experiment_id, keys=ids["reps"]
        ),
    ]
    read = await db.rows(statements)
    async with db.read() as session:
        reference = [(await session.execute(query, params)).all() for query, params in statements]
    assert [len(rows) for rows in read] == [1, 2, 1, 2, 2, 1]
    for got, want in zip(read, reference, strict=True):
        assert [row._asdict() for row in got] == [row._asdict() for row in want]
        assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in want]
    assert read[0][0].created_at.tzinfo is not None and read[0][0].shape == [2, 2]
