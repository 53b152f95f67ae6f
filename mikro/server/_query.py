"""The ``Query`` root: get one object by id, or list them with filters and pagination."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from sqlalchemy import Select, exists, select
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._acquisition import SourceMatch
from mikro.server._context import context_of
from mikro.server._crud import (
    apply_base_filter,
    page_query,
    parse_id,
    visible_row,
    visible_row_statement,
    visible_to,
)
from mikro.server._errors import BadUserInput, NotFound
from mikro.server._inputs import (
    BaseFilter,
    DatasetFilter,
    MetricFilter,
    OffsetPaginationInput,
    RepresentationFilter,
    RoiFilter,
    TableFilter,
    ThumbnailFilter,
)

__all__ = ["Query"]

R = TypeVar("R")

#: Fingerprints one sourcesIngested request may ask about.
MAX_FINGERPRINTS = 2000


async def _get(info: Info[Any, Any], model: type[Any], raw_id: Any, convert: Callable[[Any], R]) -> R:
    ctx = context_of(info)
    user = ctx.require_user()
    (rows,) = await ctx.rows([visible_row_statement(model, raw_id)])
    return convert(visible_row(model, raw_id, user, rows))


async def _read_representation(info: Info[Any, Any], raw_id: Any) -> t.Representation:
    """The image ``raw_id`` if the caller may see it (else NOT_FOUND), read together with the relations
    the query selects of it, in one read: the relations keyed by the image's id, and the rows it refers
    to (store, sample ...) through its own row. A get then costs one trip to the database's reading
    thread, not one for the image and another for its relations (a tenth of its CPU); what the
    relations themselves need (`prefetch_representations`) is read after, as for a list."""
    ctx = context_of(info)
    user, loaders = ctx.require_user(), ctx.loaders
    statement = visible_row_statement(m.Representation, raw_id)
    image_id = int(statement[1]["id"])
    relations = []
    if loaders.caching:
        for loader_name, key_attribute in t.selected_relations(info):
            reference = None if key_attribute == "id" else key_attribute.removeprefix("_")
            relations.append((loader_name, key_attribute, loaders.of_image(loader_name, reference, image_id)))
    rows = await ctx.rows([statement, *(each for *_, statements in relations for each in statements)])
    rep = t.Representation.from_row(visible_row(m.Representation, raw_id, user, rows[0]))
    start = 1
    for loader_name, key_attribute, statements in relations:
        part, start = rows[start : start + len(statements)], start + len(statements)
        key = getattr(rep, key_attribute)
        if key is not None:
            loaders.prime_read(loader_name, int(key), part, found_only=key_attribute != "id")
    return rep


async def _list(
    info: Info[Any, Any],
    model: type[Any],
    convert: Callable[[Any], R],
    flt: BaseFilter | None,
    pagination: OffsetPaginationInput | None,
    narrow: Callable[[Select[Any]], Select[Any]] | None = None,
    search_column: Any = None,
    prefetch: Callable[[Info[Any, Any], list[R]], Awaitable[None]] | None = None,
) -> list[R]:
    """A page of ``model``'s rows the caller may see, as objects that can be shown (see `present`);
    ``prefetch`` loads their relations first, in the same reads as the rows `present` needs."""
    ctx = context_of(info)
    user = ctx.require_user()
    query = apply_base_filter(visible_to(model, user), model, flt, search_column=search_column)
    if narrow is not None:
        query = narrow(query)
    page = page_query(query, model, pagination, ctx.services.settings.max_page_size)
    (rows,) = await ctx.rows([(page, None)])
    items = [convert(row) for row in rows]
    if prefetch is not None:
        await prefetch(info, items)
    return await t.present(ctx.loaders, items)


def _representation_filter(flt: RepresentationFilter | None) -> Callable[[Select[Any]], Select[Any]]:
    def narrow(query: Select[Any]) -> Select[Any]:
        if flt is None:
            return query
        rep = m.Representation
        if flt.sample is not None:
            query = query.where(rep.sample_id == parse_id(flt.sample, "sample"))
        if flt.dataset is not None:
            query = query.where(rep.dataset_id == parse_id(flt.dataset, "dataset"))
        if flt.variety is not None:
            query = query.where(rep.variety == flt.variety.value)
        if flt.experiment is not None:
            link = m.representation_experiments.c
            query = query.where(
                exists().where(
                    link.representation_id == rep.id,
                    link.experiment_id == parse_id(flt.experiment, "experiment"),
                )
            )
        if flt.source_fingerprint is not None:
            query = query.where(rep.source_fingerprint == flt.source_fingerprint)
        if flt.derived_from is not None:
            origins = m.representation_origins.c
            query = query.where(
                exists().where(
                    origins.derived_id == rep.id,
                    origins.origin_id == parse_id(flt.derived_from, "representation"),
                )
            )
        return query

    return narrow


@strawberry.type
class Query:
    @strawberry.field
    async def me(self, info: Info[Any, Any]) -> t.User:
        ctx = context_of(info)
        user = ctx.require_user()
        return t.User(id=strawberry.ID(str(user.id)), username=user.username, is_admin=user.is_admin)

    @strawberry.field
    async def representation(self, info: Info[Any, Any], id: strawberry.ID) -> t.Representation:
        rep = await _read_representation(info, id)
        await t.prefetch_representations(info, [rep])
        return rep

    @strawberry.field
    async def representations(
        self,
        info: Info[Any, Any],
        filter: RepresentationFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Representation]:
        reps = await _list(
            info,
            m.Representation,
            t.Representation.from_row,
            filter,
            pagination,
            _representation_filter(filter),
            prefetch=t.prefetch_representations,
        )
        return reps

    @strawberry.field
    async def sample(self, info: Info[Any, Any], id: strawberry.ID) -> t.Sample:
        return await _get(info, m.Sample, id, t.Sample.from_row)

    @strawberry.field
    async def samples(
        self,
        info: Info[Any, Any],
        filter: BaseFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Sample]:
        return await _list(info, m.Sample, t.Sample.from_row, filter, pagination)

    @strawberry.field
    async def experiment(self, info: Info[Any, Any], id: strawberry.ID) -> t.Experiment:
        return await _get(info, m.Experiment, id, t.Experiment.from_row)

    @strawberry.field
    async def experiments(
        self,
        info: Info[Any, Any],
        filter: BaseFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Experiment]:
        return await _list(info, m.Experiment, t.Experiment.from_row, filter, pagination)

    @strawberry.field
    async def dataset(self, info: Info[Any, Any], id: strawberry.ID) -> t.Dataset:
        return await _get(info, m.Dataset, id, t.Dataset.from_row)

    @strawberry.field
    async def datasets(
        self,
        info: Info[Any, Any],
        filter: DatasetFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Dataset]:
        def narrow(query: Select[Any]) -> Select[Any]:
            if filter is not None and filter.parent is not None:
                query = query.where(m.Dataset.parent_id == parse_id(filter.parent, "dataset"))
            return query

        return await _list(info, m.Dataset, t.Dataset.from_row, filter, pagination, narrow)

    @strawberry.field
    async def roi(self, info: Info[Any, Any], id: strawberry.ID) -> t.ROI:
        return await _get(info, m.Roi, id, t.ROI.from_row)

    @strawberry.field
    async def rois(
        self,
        info: Info[Any, Any],
        filter: RoiFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.ROI]:
        def narrow(query: Select[Any]) -> Select[Any]:
            if filter is not None and filter.representation is not None:
                query = query.where(
                    m.Roi.representation_id == parse_id(filter.representation, "representation")
                )
            if filter is not None and filter.kind is not None:
                query = query.where(m.Roi.kind == filter.kind.value)
            return query

        return await _list(info, m.Roi, t.ROI.from_row, filter, pagination, narrow, search_column=m.Roi.label)

    @strawberry.field
    async def metric(self, info: Info[Any, Any], id: strawberry.ID) -> t.Metric:
        return await _get(info, m.Metric, id, t.Metric.from_row)

    @strawberry.field
    async def metrics(
        self,
        info: Info[Any, Any],
        filter: MetricFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Metric]:
        def narrow(query: Select[Any]) -> Select[Any]:
            if filter is None:
                return query
            if filter.representation is not None:
                query = query.where(
                    m.Metric.representation_id == parse_id(filter.representation, "representation")
                )
            if filter.roi is not None:
                query = query.where(m.Metric.roi_id == parse_id(filter.roi, "roi"))
            if filter.key is not None:
                query = query.where(m.Metric.key == filter.key)
            return query

        return await _list(
            info, m.Metric, t.Metric.from_row, filter, pagination, narrow, search_column=m.Metric.key
        )

    @strawberry.field
    async def table(self, info: Info[Any, Any], id: strawberry.ID) -> t.Table:
        return await _get(info, m.TableRow, id, t.Table.from_row)

    @strawberry.field
    async def tables(
        self,
        info: Info[Any, Any],
        filter: TableFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Table]:
        def narrow(query: Select[Any]) -> Select[Any]:
            if filter is not None and filter.origin is not None:
                link = m.table_origins.c
                query = query.where(
                    exists().where(
                        link.table_id == m.TableRow.id,
                        link.origin_id == parse_id(filter.origin, "representation"),
                    )
                )
            return query

        return await _list(info, m.TableRow, t.Table.from_row, filter, pagination, narrow)

    @strawberry.field
    async def thumbnail(self, info: Info[Any, Any], id: strawberry.ID) -> t.Thumbnail:
        return await _get(info, m.Thumbnail, id, t.Thumbnail.from_row)

    @strawberry.field
    async def thumbnails(
        self,
        info: Info[Any, Any],
        filter: ThumbnailFilter | None = None,
        pagination: OffsetPaginationInput | None = None,
    ) -> list[t.Thumbnail]:
        def narrow(query: Select[Any]) -> Select[Any]:
            if filter is not None and filter.representation is not None:
                query = query.where(
                    m.Thumbnail.representation_id == parse_id(filter.representation, "representation")
                )
            return query

        # A thumbnail has no name: `search` matches the name of its image.
        rep_name = (
            select(m.Representation.name)
            .where(m.Representation.id == m.Thumbnail.representation_id)
            .scalar_subquery()
        )
        return await _list(
            info, m.Thumbnail, t.Thumbnail.from_row, filter, pagination, narrow, search_column=rep_name
        )

    @strawberry.field
    async def zarr_store(self, info: Info[Any, Any], id: strawberry.ID) -> t.ZarrStore:
        ctx = context_of(info)
        user = ctx.require_user()
        (rows,) = await ctx.rows([visible_row_statement(m.Store, id)])
        store = visible_row(m.Store, id, user, rows)
        if store.kind != "ZARR":
            raise NotFound(f"store {id} is not a zarr store")
        return t.ZarrStore.from_row(store)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="The caller's own images ingested from any of these source fingerprints (at most "
        "2000 per request): what a rerun of an ingest may skip."
    )
    async def sources_ingested(self, info: Info[Any, Any], fingerprints: list[str]) -> list[SourceMatch]:
        if len(fingerprints) > MAX_FINGERPRINTS:
            raise BadUserInput(
                f"at most {MAX_FINGERPRINTS} fingerprints per request, not {len(fingerprints)}"
            )
        ctx = context_of(info)
        user = ctx.require_user()
        rep = m.Representation
        # The caller's own images only, also for an admin: another user's ingest is not this one's.
        query = select(rep.id, rep.source_fingerprint, rep.source_scene, rep.source_scene_count).where(
            rep.creator_id == user.id, rep.source_fingerprint.in_(set(fingerprints))
        )
        async with ctx.read() as session:
            rows = (await session.execute(query)).all()
        return [
            SourceMatch(
                fingerprint=str(fp), scene=scene, scene_count=count, representation=strawberry.ID(str(rid))
            )
            for rid, fp, scene, count in rows
        ]
