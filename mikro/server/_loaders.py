"""Batched loading of related objects (strawberry DataLoaders): one query per relation and level,
however many objects a response holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute
from strawberry.dataloader import DataLoader

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._database import Database

__all__ = ["Loaders"]

R = TypeVar("R")
_BATCH = 500  # stays below SQLite's bound-parameter limit


class Loaders:
    """One set per request. Over a websocket the context lives long, so caching is off there: every
    event then shows the object as it is now."""

    def __init__(self, db: Database, *, cache: bool = True) -> None:
        self._db = db
        self._cache = cache
        self.user = self._by_id(m.User, t.User.from_row)
        self.store = self._by_id(m.Store, lambda row: row)
        self.sample = self._by_id(m.Sample, t.Sample.from_row)
        self.experiment = self._by_id(m.Experiment, t.Experiment.from_row)
        self.dataset = self._by_id(m.Dataset, t.Dataset.from_row)
        self.representation = self._by_id(m.Representation, t.Representation.from_row)
        self.roi = self._by_id(m.Roi, t.ROI.from_row)
        self.representations_of_sample = self._by_column(
            m.Representation, m.Representation.sample_id, t.Representation.from_row
        )
        self.representations_of_dataset = self._by_column(
            m.Representation, m.Representation.dataset_id, t.Representation.from_row
        )
        self.children_of_dataset = self._by_column(m.Dataset, m.Dataset.parent_id, t.Dataset.from_row)
        self.rois_of_representation = self._by_column(m.Roi, m.Roi.representation_id, t.ROI.from_row)
        self.metrics_of_representation = self._by_column(
            m.Metric, m.Metric.representation_id, t.Metric.from_row
        )
        self.thumbnails_of_representation = self._by_column(
            m.Thumbnail, m.Thumbnail.representation_id, t.Thumbnail.from_row
        )
        re, ro, to = m.representation_experiments.c, m.representation_origins.c, m.table_origins.c
        self.experiments_of_representation = self._through(
            m.Experiment, re.representation_id, re.experiment_id, t.Experiment.from_row
        )
        self.representations_of_experiment = self._through(
            m.Representation, re.experiment_id, re.representation_id, t.Representation.from_row
        )
        self.origins_of_representation = self._through(
            m.Representation, ro.derived_id, ro.origin_id, t.Representation.from_row
        )
        self.derived_of_representation = self._through(
            m.Representation, ro.origin_id, ro.derived_id, t.Representation.from_row
        )
        self.origins_of_table = self._through(
            m.Representation, to.table_id, to.origin_id, t.Representation.from_row
        )

    def _loader(self, fn: Callable[[list[int]], Awaitable[Sequence[R]]]) -> DataLoader[int, R]:
        return DataLoader(load_fn=fn, cache=self._cache, max_batch_size=_BATCH)

    def _by_id(self, model: type[Any], convert: Callable[[Any], R]) -> DataLoader[int, R | None]:
        async def load(keys: list[int]) -> list[R | None]:
            async with self._db.read() as session:
                rows = (await session.scalars(select(model).where(model.id.in_(keys)))).all()
                found = {row.id: convert(row) for row in rows}
            return [found.get(k) for k in keys]

        return self._loader(load)

    def _by_column(
        self, model: type[Any], column: InstrumentedAttribute[Any], convert: Callable[[Any], R]
    ) -> DataLoader[int, list[R]]:
        async def load(keys: list[int]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            async with self._db.read() as session:
                query = select(model).where(column.in_(keys)).order_by(model.id)
                for row in (await session.scalars(query)).all():
                    grouped[getattr(row, column.key)].append(convert(row))
            return [grouped.get(k, []) for k in keys]

        return self._loader(load)

    def _through(
        self,
        model: type[Any],
        key_column: ColumnElement[Any],
        target_column: ColumnElement[Any],
        convert: Callable[[Any], R],
    ) -> DataLoader[int, list[R]]:
        async def load(keys: list[int]) -> list[list[R]]:
            grouped: dict[int, list[R]] = defaultdict(list)
            async with self._db.read() as session:
                query = (
                    select(key_column, model)
                    .join(model, model.id == target_column)
                    .where(key_column.in_(keys))
                    .order_by(model.id)
                )
                for key, row in (await session.execute(query)).all():
                    grouped[key].append(convert(row))
            return [grouped.get(k, []) for k in keys]

        return self._loader(load)
