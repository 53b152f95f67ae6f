"""Batched loading of related objects (strawberry DataLoaders): one query per relation and level,
however many objects a response holds."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import strawberry
from sqlalchemy import Column, Select, Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._preload import BATCH

__all__ = ["Loaders"]

R = TypeVar("R")
_KEY = "link_key"

# The queries are built once, with an expanding IN parameter, and read plain rows (not ORM objects):
# the types' `from_row` only read column attributes, and this skips building the statement, its cache
# key and ORM identity bookkeeping for every batch. Each comes in two forms: ``IN (...)`` for many
# keys, and ``= :keys`` for one (a single object's relations), which SQLAlchemy runs without
# rendering the expanded IN list again on every execution (a fifth of a small statement's CPU).


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _keyed(column: Any, one: bool) -> Any:
    return column == bindparam("keys") if one else column.in_(bindparam("keys", expanding=True))


@functools.cache
def _by_id_query(model: Any, *columns: str, one: bool = False) -> Select[Any]:
    """Rows by id: the listed columns, or only ``id`` and ``columns`` (a blob) when given."""
    table = _table(model)
    selected = [table.c.id, *(table.c[c] for c in columns)] if columns else m.listed_columns(model)
    return select(*selected).where(_keyed(table.c.id, one))


@functools.cache
def _by_column_query(model: Any, column: str, *, one: bool = False) -> Select[Any]:
    table = _table(model)
    return select(*m.listed_columns(model)).where(_keyed(table.c[column], one)).order_by(table.c.id)


@functools.cache
def _through_query(
    model: Any, key_column: Column[Any], target_column: Column[Any], *, one: bool = False
) -> Select[Any]:
    table = _table(model)
    return (
        select(key_column.label(_KEY), *m.listed_columns(model))
        .join(table, table.c.id == target_column)
        .where(_keyed(key_column, one))
        .order_by(table.c.id)
    )


def _keyed_query(
    build: Callable[..., Select[Any]], *args: Any, keys: list[int]
) -> tuple[Select[Any], dict[str, Any]]:
    """``build(*args)``'s statement for ``keys`` and its parameters: the one-key form for one key."""
    if len(keys) == 1:
        return build(*args, one=True), {"keys": keys[0]}
    return build(*args), {"keys": keys}


class Loaders:
    """One set per request, each loader made on first use. Over a websocket the context lives long,
    so its own set does not cache; each subscription event gets a caching set of its own instead
    (see _subscription.py), so that everything one event shows is read once, as it is then.

    ``read`` opens a session for one batch: the request's shared session over HTTP (the batches of all
    loaders then take turns on one connection), a fresh one per batch over websockets.
    """

    def __init__(
        self,
        read: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        *,
        cache: bool = True,
        caller: AuthUser | None = None,
    ) -> None:
        self._read = read
        self._cache = cache
        self._caller = caller
        self._views: dict[tuple[int, Callable[[Any], Any]], tuple[Any, Any]] = {}

    def view(self, row: Any, convert: Callable[[Any], R]) -> R:
        """``convert(row)``, made once per loaded row (a store shown by 100 images of a list is one
        object, not 100 of them with their levels)."""
        if not self._cache:
            return convert(row)
        key = (id(row), convert)
        cached = self._views.get(key)
        if cached is not None and cached[0] is row:
            value: R = cached[1]
            return value
        value = convert(row)
        self._views[key] = (row, value)
        return value

    # --- by id ---------------------------------------------------------------------------------------

    @functools.cached_property
    def user(self) -> DataLoader[int, t.User | None]:
        loader = self._by_id(m.User, t.User.from_row)
        if self._cache and self._caller is not None:
            # Most `creator`s a response shows are the caller, whom authentication has just looked up.
            caller = self._caller
            loader.prime(
                caller.id,
                t.User(id=strawberry.ID(str(caller.id)), username=caller.username, is_admin=caller.is_admin),
            )
        return loader

    @functools.cached_property
    def store(self) -> DataLoader[int, Any]:
        """Store rows as they are (the types pick ZarrStore or ParquetStore from them)."""
        return self._by_id(m.Store, lambda row: row)

    @functools.cached_property
    def thumbnail_png(self) -> DataLoader[int, bytes | str | None]:
        """The PNG of thumbnails, read only when a response shows it (one query for a gallery); for a
        thumbnail kept as an object, the object's key (see `Thumbnail.png`)."""
        return self._by_id(
            m.Thumbnail, lambda row: row.key if row.png is None else bytes(row.png), "png", "key"
        )

    @functools.cached_property
    def sample(self) -> DataLoader[int, t.Sample | None]:
        return self._by_id(m.Sample, t.Sample.from_row)

    @functools.cached_property
    def experiment(self) -> DataLoader[int, t.Experiment | None]:
        return self._by_id(m.Experiment, t.Experiment.from_row)

    @functools.cached_property
    def dataset(self) -> DataLoader[int, t.Dataset | None]:
        return self._by_id(m.Dataset, t.Dataset.from_row)

    @functools.cached_property
    def representation(self) -> DataLoader[int, t.Representation | None]:
        return self._by_id(m.Representation, t.Representation.from_row)

    @functools.cached_property
    def roi(self) -> DataLoader[int, t.ROI | None]:
        return self._by_id(m.Roi, t.ROI.from_row)

    @functools.cached_property
    def file(self) -> DataLoader[int, t.File | None]:
        return self._by_id(m.FileRow, t.File.from_row)

    # --- by a foreign key ----------------------------------------------------------------------------

    @functools.cached_property
    def representations_of_sample(self) -> DataLoader[int, list[t.Representation]]:
        return self._by_column(m.Representation, "sample_id", t.Representation.from_row)

    @functools.cached_property
    def representations_of_dataset(self) -> DataLoader[int, list[t.Representation]]:
        return self._by_column(m.Representation, "dataset_id", t.Representation.from_row)

    @functools.cached_property
    def children_of_dataset(self) -> DataLoader[int, list[t.Dataset]]:
        return self._by_column(m.Dataset, "parent_id", t.Dataset.from_row)

    @functools.cached_property
    def rois_of_representation(self) -> DataLoader[int, list[t.ROI]]:
        return self._by_column(m.Roi, "representation_id", t.ROI.from_row)

    @functools.cached_property
    def metrics_of_representation(self) -> DataLoader[int, list[t.Metric]]:
        return self._by_column(m.Metric, "representation_id", t.Metric.from_row)

    @functools.cached_property
    def thumbnails_of_representation(self) -> DataLoader[int, list[t.Thumbnail]]:
        return self._by_column(m.Thumbnail, "representation_id", t.Thumbnail.from_row)

    # --- through a link table ------------------------------------------------------------------------

    @functools.cached_property
    def experiments_of_representation(self) -> DataLoader[int, list[t.Experiment]]:
        link = m.representation_experiments.c
        return self._through(m.Experiment, link.representation_id, link.experiment_id, t.Experiment.from_row)

    @functools.cached_property
    def representations_of_experiment(self) -> DataLoader[int, list[t.Representation]]:
        link = m.representation_experiments.c
        return self._through(
            m.Representation, link.experiment_id, link.representation_id, t.Representation.from_row
        )

    @functools.cached_property
    def origins_of_representation(self) -> DataLoader[int, list[t.Representation]]:
        link = m.representation_origins.c
        return self._through(m.Representation, link.derived_id, link.origin_id, t.Representation.from_row)

    @functools.cached_property
    def derived_of_representation(self) -> DataLoader[int, list[t.Representation]]:
        link = m.representation_origins.c
        return self._through(m.Representation, link.origin_id, link.derived_id, t.Representation.from_row)

    @functools.cached_property
    def origins_of_table(self) -> DataLoader[int, list[t.Representation]]:
        link = m.table_origins.c
        return self._through(m.Representation, link.table_id, link.origin_id, t.Representation.from_row)

    @functools.cached_property
    def samples_of_file(self) -> DataLoader[int, list[t.Sample]]:
        link = m.file_samples.c
        return self._through(m.Sample, link.file_id, link.sample_id, t.Sample.from_row)

    @functools.cached_property
    def experiments_of_file(self) -> DataLoader[int, list[t.Experiment]]:
        link = m.file_experiments.c
        return self._through(m.Experiment, link.file_id, link.experiment_id, t.Experiment.from_row)

    @functools.cached_property
    def datasets_of_file(self) -> DataLoader[int, list[t.Dataset]]:
        link = m.file_datasets.c
        return self._through(m.Dataset, link.file_id, link.dataset_id, t.Dataset.from_row)

    @functools.cached_property
    def representations_of_file(self) -> DataLoader[int, list[t.Representation]]:
        """Images made from each file (their original) and images it is attached to, by id."""
        link = m.file_representations.c
        made_from = self._by_column(m.Representation, "original_file_id", t.Representation.from_row)
        attached = self._through(
            m.Representation, link.file_id, link.representation_id, t.Representation.from_row
        )

        async def load(keys: list[int]) -> list[list[t.Representation]]:
            originals = await made_from.load_many(keys)
            links = await attached.load_many(keys)
            merged = []
            for first, second in zip(originals, links, strict=True):
                by_id = {int(rep.id): rep for rep in (*first, *second)}
                merged.append([by_id[i] for i in sorted(by_id)])
            return merged

        return self._loader(load)

    # --- the three shapes ----------------------------------------------------------------------------

    def _loader(self, fn: Callable[[list[int]], Awaitable[Sequence[R]]]) -> DataLoader[int, R]:
        return DataLoader(load_fn=fn, cache=self._cache, max_batch_size=BATCH)

    async def _rows(self, build: Callable[..., Select[Any]], *args: Any, keys: list[int]) -> Sequence[Any]:
        query, params = _keyed_query(build, *args, keys=keys)
        async with self._read() as session:
            rows: Sequence[Any] = (await session.execute(query, params)).all()
        return rows

    def _by_id(self, model: Any, convert: Callable[[Any], R], *columns: str) -> DataLoader[int, R | None]:
        async def load(keys: list[int]) -> list[R | None]:
            found = {
                row.id: convert(row) for row in await self._rows(_by_id_query, model, *columns, keys=keys)
            }
            return [found.get(k) for k in keys]

        return self._loader(load)

    def _by_column(self, model: Any, column: str, convert: Callable[[Any], R]) -> DataLoader[int, list[R]]:
        async def load(keys: list[int]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            for row in await self._rows(_by_column_query, model, column, keys=keys):
                grouped[getattr(row, column)].append(convert(row))
            return [grouped.get(k, []) for k in keys]

        return self._loader(load)

    def _through(
        self,
        model: Any,
        key_column: Column[Any],
        target_column: Column[Any],
        convert: Callable[[Any], R],
    ) -> DataLoader[int, list[R]]:
        async def load(keys: list[int]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            # One object per target row: 100 images in one experiment are 100 rows of the same one.
            converted: dict[int, R] = {}
            for row in await self._rows(_through_query, model, key_column, target_column, keys=keys):
                target = converted.get(row.id)
                if target is None:
                    target = converted[row.id] = convert(row)
                grouped[getattr(row, _KEY)].append(target)
            return [grouped.get(k, []) for k in keys]

        return self._loader(load)
