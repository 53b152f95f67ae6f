"""Batched loading of related objects (strawberry DataLoaders): one query per relation and level,
however many objects a response holds."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import strawberry
from sqlalchemy import Column, Select, Table, bindparam, select
from strawberry.dataloader import DataLoader

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._database import RowReader, Statement
from mikro.server._preload import SqlLoader
from mikro.server._sqlite import reused

__all__ = ["Loaders"]

R = TypeVar("R")
V = TypeVar("V")
_KEY = "link_key"
_Plan = tuple[Callable[[list[int]], list[Statement]], Callable[[list[int], list[Sequence[Any]]], list[V]]]

# The queries are built once (and marked `reused`: on SQLite they run compiled once, see _sqlite.py),
# with an expanding IN parameter, and read plain rows (not ORM objects):
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
    return reused(select(*selected).where(_keyed(table.c.id, one)))


@functools.cache
def _by_column_query(model: Any, column: str, *, one: bool = False) -> Select[Any]:
    table = _table(model)
    return reused(select(*m.listed_columns(model)).where(_keyed(table.c[column], one)).order_by(table.c.id))


@functools.cache
def _through_query(
    model: Any, key_column: Column[Any], target_column: Column[Any], *, one: bool = False
) -> Select[Any]:
    table = _table(model)
    return reused(
        select(key_column.label(_KEY), *m.listed_columns(model))
        .join(table, table.c.id == target_column)
        .where(_keyed(key_column, one))
        .order_by(table.c.id)
    )


#: An image's columns that refer to a row of another table, and that table's model (see `of_image`).
_IMAGE_REFERENCES = {
    "store_id": m.Store,
    "sample_id": m.Sample,
    "dataset_id": m.Dataset,
    "original_file_id": m.FileRow,
}


@functools.cache
def _of_image_query(reference: str) -> Select[Any]:
    """The row an image refers to by its column ``reference`` (as `_by_id_query` reads it), by the
    image's id."""
    model, images = _IMAGE_REFERENCES[reference], _table(m.Representation)
    referred = select(images.c[reference]).where(images.c.id == bindparam("keys")).scalar_subquery()
    return reused(select(*m.listed_columns(model)).where(_table(model).c.id == referred))


def _keyed_query(build: Callable[..., Select[Any]], *args: Any, keys: list[int]) -> Statement:
    """``build(*args)``'s statement for ``keys`` and its parameters: the one-key form for one key."""
    if len(keys) == 1:
        return build(*args, one=True), {"keys": keys[0]}
    return build(*args), {"keys": keys}


class Loaders:
    """One set per request, each loader made on first use. Over a websocket the context lives long,
    so its own set does not cache; each subscription event gets a caching set of its own instead
    (see _subscription.py), so that everything one event shows is read once, as it is then.

    ``reader`` reads a batch's statements: the request's shared reader over HTTP, the database itself
    over websockets (a fresh session per batch where it reads through sessions).
    """

    def __init__(self, reader: RowReader, *, cache: bool = True, caller: AuthUser | None = None) -> None:
        self._reader = reader
        self._cache = cache
        self._caller = caller
        self._views: dict[tuple[int, Callable[[Any], Any]], tuple[Any, Any]] = {}

    @property
    def caching(self) -> bool:
        """Whether these loaders remember what they loaded (one request's, or one event's)."""
        return self._cache

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

    def of_image(self, name: str, reference: str | None, image_id: int) -> list[Statement]:
        """The statements of loader ``name``'s value for one image, by the image's id: the loader's own
        (its key is the image's id) or, with ``reference``, those of the row the image refers to by
        that column. They can be read with the image's own row, in one call (see `prime_read`)."""
        loader = getattr(self, name)
        assert isinstance(loader, SqlLoader)
        if reference is None:
            return loader.statements([image_id])
        return [(_of_image_query(reference), {"keys": image_id})]

    def prime_read(self, name: str, key: int, rows: list[Sequence[Any]], *, found_only: bool) -> None:
        """Remember loader ``name``'s value for ``key`` from the rows of its `of_image` statements;
        ``found_only``: not when nothing was found (the row the image referred to when the image was
        read may be another by now: the loader reads it by its key when asked)."""
        loader = getattr(self, name)
        assert isinstance(loader, SqlLoader)
        value = loader.finish([key], rows)[0]
        if value is not None or not found_only:
            loader.prime(key, value)

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
        made_from = self._by_column_plan(m.Representation, "original_file_id", t.Representation.from_row)
        attached = self._through_plan(
            m.Representation, link.file_id, link.representation_id, t.Representation.from_row
        )

        def finish(keys: list[int], rows: list[Sequence[Any]]) -> list[list[t.Representation]]:
            merged = []
            originals, links = made_from[1](keys, rows[:1]), attached[1](keys, rows[1:])
            for first, second in zip(originals, links, strict=True):
                by_id = {int(rep.id): rep for rep in (*first, *second)}
                merged.append([by_id[i] for i in sorted(by_id)])
            return merged

        return self._loader(lambda keys: [*made_from[0](keys), *attached[0](keys)], finish)

    # --- the three shapes ----------------------------------------------------------------------------

    def _loader(
        self,
        statements: Callable[[list[int]], list[Statement]],
        finish: Callable[[list[int], list[Sequence[Any]]], list[R]],
    ) -> DataLoader[int, R]:
        return SqlLoader(self._reader, statements, finish, cache=self._cache)

    def _by_id(self, model: Any, convert: Callable[[Any], R], *columns: str) -> DataLoader[int, R | None]:
        def statements(keys: list[int]) -> list[Statement]:
            return [_keyed_query(_by_id_query, model, *columns, keys=keys)]

        def finish(keys: list[int], rows: list[Sequence[Any]]) -> list[R | None]:
            found = {row.id: convert(row) for row in rows[0]}
            return [found.get(k) for k in keys]

        return self._loader(statements, finish)

    def _by_column(self, model: Any, column: str, convert: Callable[[Any], R]) -> DataLoader[int, list[R]]:
        return self._loader(*self._by_column_plan(model, column, convert))

    def _through(
        self,
        model: Any,
        key_column: Column[Any],
        target_column: Column[Any],
        convert: Callable[[Any], R],
    ) -> DataLoader[int, list[R]]:
        return self._loader(*self._through_plan(model, key_column, target_column, convert))

    # A plan: the statements of a batch of keys, and the values of the keys from their rows.

    def _by_column_plan(self, model: Any, column: str, convert: Callable[[Any], R]) -> _Plan[list[R]]:
        def statements(keys: list[int]) -> list[Statement]:
            return [_keyed_query(_by_column_query, model, column, keys=keys)]

        def finish(keys: list[int], rows: list[Sequence[Any]]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            for row in rows[0]:
                grouped[getattr(row, column)].append(convert(row))
            return [grouped.get(k, []) for k in keys]

        return statements, finish

    def _through_plan(
        self,
        model: Any,
        key_column: Column[Any],
        target_column: Column[Any],
        convert: Callable[[Any], R],
    ) -> _Plan[list[R]]:
        def statements(keys: list[int]) -> list[Statement]:
            return [_keyed_query(_through_query, model, key_column, target_column, keys=keys)]

        def finish(keys: list[int], rows: list[Sequence[Any]]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            # One object per target row: 100 images in one experiment are 100 rows of the same one.
            converted: dict[int, R] = {}
            for row in rows[0]:
                target = converted.get(row.id)
                if target is None:
                    target = converted[row.id] = convert(row)
                grouped[getattr(row, _KEY)].append(target)
            return [grouped.get(k, []) for k in keys]

        return statements, finish
