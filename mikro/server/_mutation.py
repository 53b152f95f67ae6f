"""Create, update and delete of every object type (the data plane is in ``_data_plane``)."""

from __future__ import annotations

import io
import logging
from typing import Any

import strawberry
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._auth import AuthUser
from mikro.server._context import Context
from mikro.server._crud import begin_mutation, drop_tags, get_owned, get_store, replace_tags
from mikro.server._data_plane import array_values, read_array
from mikro.server._errors import BadUserInput, Conflict
from mikro.server._inputs import (
    ChannelInput,
    DatasetInput,
    DatasetUpdateInput,
    ExperimentInput,
    ExperimentUpdateInput,
    MetricInput,
    MetricUpdateInput,
    PhysicalSizeInput,
    RepresentationInput,
    RepresentationUpdateInput,
    RoiInput,
    RoiUpdateInput,
    SampleInput,
    SampleUpdateInput,
    StoreThumbnailInput,
    TableInput,
    TableUpdateInput,
    ThumbnailInput,
    ThumbnailUpdateInput,
)
from mikro.server._services import Tx
from mikro.server._store_cleanup import delete_objects, delete_stores

__all__ = ["ObjectMutation"]

logger = logging.getLogger("mikro.server")

DIMS = ("c", "t", "z", "y", "x")
REP, ROI = "representation", "roi"


def _name(value: str) -> str:
    if not value.strip():
        raise BadUserInput("name must not be empty")
    return value


async def _update_described(session: AsyncSession, row: Any, input: Any) -> None:
    """Apply the name/description/tags of an update input (null means "no change") to a
    Sample, Experiment or Dataset row."""
    if input.name is not None:
        row.name = _name(input.name)
    if input.description is not None:
        row.description = input.description
    if input.tags is not None:
        await replace_tags(session, row, input.tags)


def _channels(channels: list[ChannelInput]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "emission_wavelength": c.emission_wavelength,
            "excitation_wavelength": c.excitation_wavelength,
            "color": c.color,
        }
        for c in channels
    ]


def _physical(size: PhysicalSizeInput | None) -> dict[str, Any] | None:
    if size is None:
        return None
    return {"x": size.x, "y": size.y, "z": size.z, "t": size.t}


def _vectors(vectors: list[list[float]]) -> list[list[float]]:
    if not vectors:
        raise BadUserInput("an ROI needs at least one vector")
    for i, vector in enumerate(vectors):
        if len(vector) != 5:
            raise BadUserInput(
                f"vectors[{i}] has {len(vector)} values; each must be a 5-D (c, t, z, y, x) point"
            )
    return [list(v) for v in vectors]


async def _owned_ids(
    session: AsyncSession, model: type[Any], raw_ids: list[Any], user: AuthUser
) -> list[int]:
    ids: list[int] = []
    for raw in dict.fromkeys(raw_ids):
        ids.append((await get_owned(session, model, raw, user)).id)
    return ids


async def _set_links(
    session: AsyncSession,
    table: Any,
    left: str,
    left_id: int,
    right: str,
    ids: list[int],
    *,
    new: bool = False,
) -> None:
    """Make ``ids`` the links of ``left_id`` (``new``: its row was made in this transaction, no links yet)."""
    if not new:
        await session.execute(delete(table).where(table.c[left] == left_id))
    if ids:
        await session.execute(insert(table), [{left: left_id, right: i} for i in ids])


async def _check_parent(session: AsyncSession, dataset_id: int | None, parent_id: int) -> None:
    """Refuse a parent that would make the dataset tree a cycle."""
    current: int | None = parent_id
    while current is not None:
        if current == dataset_id:
            raise BadUserInput("a dataset cannot be its own ancestor")
        current = await session.scalar(select(m.Dataset.parent_id).where(m.Dataset.id == current))


#: Where a thumbnail written into its image's own store lives, relative to the image's array.
STORE_THUMBNAIL_PREFIX = "thumbnail"


def _array_key(ctx: Context, store: m.Store) -> str:
    # finishUpload recorded the array's path: the store's key itself, or <key>/0 for an OME-Zarr group.
    for key in (f"{store.key}/0", store.key):
        if store.path == ctx.services.storage.path_of(key):
            return key
    return store.key


async def _add_store_thumbnail(
    ctx: Context,
    session: AsyncSession,
    rep: m.Representation,
    store: m.Store,
    array_key: str,
    thumb: StoreThumbnailInput,
    user: AuthUser,
) -> None:
    """Record the PNG the client put at ``<array>/thumbnail/thumbnail.png`` as its own media store.

    Inside the array's prefix zarr never lists it (a group's member listing warns about foreign keys),
    and the nested prefix keeps ``deleteThumbnail`` (which deletes its store's prefix) off the pixels.
    The object is not checked: it was written with the image's grant before this call, and a missing
    PNG costs only this thumbnail (a check would cost the object store one request per image).
    """
    key = f"{array_key}/{STORE_THUMBNAIL_PREFIX}"
    media = m.Store(
        kind="MEDIA",
        bucket=store.bucket,
        key=key,
        path=ctx.services.storage.path_of(f"{key}/thumbnail.png"),
        creator_id=user.id,
        populated=True,
    )
    session.add(media)
    await session.flush()
    session.add(
        m.Thumbnail(
            representation_id=rep.id,
            store_id=media.id,
            width=thumb.width,
            height=thumb.height,
            creator_id=user.id,
        )
    )


async def _delete_rois(tx: Tx, roi_rows: list[m.Roi]) -> None:
    ids = [r.id for r in roi_rows]
    if not ids:
        return
    await tx.session.execute(delete(m.Metric).where(m.Metric.roi_id.in_(ids)))
    await drop_tags(tx.session, m.Roi, ids)
    await tx.session.execute(delete(m.Roi).where(m.Roi.id.in_(ids)))
    for r in roi_rows:
        await tx.record(ROI, "DELETE", r.id, r.representation_id, r.creator_id)


@strawberry.type
class ObjectMutation:
    # --- samples, experiments, datasets -------------------------------------------------------------

    @strawberry.mutation
    async def create_sample(self, info: Info[Any, Any], input: SampleInput) -> t.Sample:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = m.Sample(name=_name(input.name), description=input.description, creator_id=user.id)
            tx.session.add(row)
            await replace_tags(tx.session, row, input.tags)
        return t.Sample.from_row(row)

    @strawberry.mutation
    async def update_sample(
        self, info: Info[Any, Any], id: strawberry.ID, input: SampleUpdateInput
    ) -> t.Sample:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Sample, id, user)
            await _update_described(tx.session, row, input)
        return t.Sample.from_row(row)

    @strawberry.mutation
    async def delete_sample(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Sample, id, user)
            await tx.session.execute(
                update(m.Representation).where(m.Representation.sample_id == row.id).values(sample_id=None)
            )
            await drop_tags(tx.session, m.Sample, [row.id])
            await tx.session.delete(row)
        return strawberry.ID(str(row.id))

    @strawberry.mutation
    async def create_experiment(self, info: Info[Any, Any], input: ExperimentInput) -> t.Experiment:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = m.Experiment(name=_name(input.name), description=input.description, creator_id=user.id)
            tx.session.add(row)
            await replace_tags(tx.session, row, input.tags)
        return t.Experiment.from_row(row)

    @strawberry.mutation
    async def update_experiment(
        self, info: Info[Any, Any], id: strawberry.ID, input: ExperimentUpdateInput
    ) -> t.Experiment:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Experiment, id, user)
            await _update_described(tx.session, row, input)
        return t.Experiment.from_row(row)

    @strawberry.mutation
    async def delete_experiment(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Experiment, id, user)
            link = m.representation_experiments
            await tx.session.execute(delete(link).where(link.c.experiment_id == row.id))
            await drop_tags(tx.session, m.Experiment, [row.id])
            await tx.session.delete(row)
        return strawberry.ID(str(row.id))

    @strawberry.mutation
    async def create_dataset(self, info: Info[Any, Any], input: DatasetInput) -> t.Dataset:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            parent_id = None
            if input.parent is not None:
                parent_id = (await get_owned(tx.session, m.Dataset, input.parent, user)).id
            row = m.Dataset(
                name=_name(input.name), description=input.description, parent_id=parent_id, creator_id=user.id
            )
            tx.session.add(row)
            await replace_tags(tx.session, row, input.tags)
        return t.Dataset.from_row(row)

    @strawberry.mutation
    async def update_dataset(
        self, info: Info[Any, Any], id: strawberry.ID, input: DatasetUpdateInput
    ) -> t.Dataset:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Dataset, id, user)
            if input.parent is not None:
                parent = await get_owned(tx.session, m.Dataset, input.parent, user)
                await _check_parent(tx.session, row.id, parent.id)
                row.parent_id = parent.id
            await _update_described(tx.session, row, input)
        return t.Dataset.from_row(row)

    @strawberry.mutation
    async def delete_dataset(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Dataset, id, user)
            # Children and images outlive their dataset: they are detached, not deleted.
            await tx.session.execute(
                update(m.Dataset).where(m.Dataset.parent_id == row.id).values(parent_id=None)
            )
            await tx.session.execute(
                update(m.Representation).where(m.Representation.dataset_id == row.id).values(dataset_id=None)
            )
            await drop_tags(tx.session, m.Dataset, [row.id])
            await tx.session.delete(row)
        return strawberry.ID(str(row.id))

    # --- representations ----------------------------------------------------------------------------

    @strawberry.mutation
    async def create_representation(
        self, info: Info[Any, Any], input: RepresentationInput
    ) -> t.Representation:
        ctx, user = begin_mutation(info, input)
        if input.thumbnail is not None and (input.thumbnail.width < 1 or input.thumbnail.height < 1):
            raise BadUserInput("thumbnail width and height must be positive")
        # Every check reads before the write transaction: SQLite holds its one write lock from the
        # transaction's first statement to the commit, and concurrent uploads queue on it.
        async with ctx.read() as session:
            store = await get_store(session, input.store, user, "ZARR")
            used = await session.scalar(
                select(m.Representation.id).where(m.Representation.store_id == store.id)
            )
            sample_id = (await get_owned(session, m.Sample, input.sample, user)).id if input.sample else None
            dataset = (await get_owned(session, m.Dataset, input.dataset, user)).id if input.dataset else None
            experiments = await _owned_ids(session, m.Experiment, input.experiments, user)
            origins = await _owned_ids(session, m.Representation, input.origins, user)
        if used is not None:
            raise Conflict(f"store {input.store} already holds representation {used}")
        # Finishing here saves the client a finishUpload round trip per image; the object read happens
        # before the transaction too.
        array = None if store.populated else await read_array(ctx, store.key)
        shape: list[Any] | None
        dtype: str | None
        if array is not None:
            shape, dtype, names, array_key = array.shape, array.dtype, array.dimension_names, array.key
        else:
            shape, dtype, names = store.shape, store.dtype, store.dimension_names
            array_key = _array_key(ctx, store)
        dims = list(names or [])
        if not dims or any(d not in DIMS for d in dims) or len(set(dims)) != len(dims):
            raise BadUserInput(f"the array's dimension_names {names!r} must be distinct names from c,t,z,y,x")
        assert shape is not None and dtype is not None
        async with ctx.services.transaction() as tx:
            s = tx.session
            if array is not None:
                # A concurrent finishUpload read the same objects: whichever lands first is the same.
                await s.execute(
                    update(m.Store)
                    .where(m.Store.id == store.id, m.Store.populated.is_(False))
                    .values(**array_values(ctx, array))
                )
            row = m.Representation(
                name=_name(input.name),
                store_id=store.id,
                shape=list(shape),
                dims=dims,
                dtype=dtype,
                variety=input.variety.value,
                sample_id=sample_id,
                dataset_id=dataset,
                channels=_channels(input.channels),
                physical_size=_physical(input.physical_size),
                acquisition_date=input.acquisition_date,
                creator_id=user.id,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                # The store was taken by a concurrent createRepresentation (one image per store).
                raise Conflict(f"store {input.store} already holds a representation") from None
            await replace_tags(s, row, input.tags)
            link = m.representation_experiments
            await _set_links(s, link, "representation_id", row.id, "experiment_id", experiments, new=True)
            origin_link = m.representation_origins
            await _set_links(s, origin_link, "derived_id", row.id, "origin_id", origins, new=True)
            if input.thumbnail is not None:
                await _add_store_thumbnail(ctx, s, row, store, array_key, input.thumbnail, user)
            await tx.record(REP, "CREATE", row.id, row.dataset_id, row.creator_id)
        return t.Representation.from_row(row)

    @strawberry.mutation
    async def update_representation(
        self, info: Info[Any, Any], id: strawberry.ID, input: RepresentationUpdateInput
    ) -> t.Representation:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            s = tx.session
            row = await get_owned(s, m.Representation, id, user)
            if input.name is not None:
                row.name = _name(input.name)
            if input.variety is not None:
                row.variety = input.variety.value
            if input.sample is not None:
                row.sample_id = (await get_owned(s, m.Sample, input.sample, user)).id
            if input.dataset is not None:
                row.dataset_id = (await get_owned(s, m.Dataset, input.dataset, user)).id
            if input.experiments is not None:
                experiments = await _owned_ids(s, m.Experiment, input.experiments, user)
                link = m.representation_experiments
                await _set_links(s, link, "representation_id", row.id, "experiment_id", experiments)
            if input.tags is not None:
                await replace_tags(s, row, input.tags)
            if input.channels is not None:
                row.channels = _channels(input.channels)
            if input.physical_size is not None:
                row.physical_size = _physical(input.physical_size)
            if input.acquisition_date is not None:
                row.acquisition_date = input.acquisition_date
            await s.flush()
            await tx.record(REP, "UPDATE", row.id, row.dataset_id, row.creator_id)
        return t.Representation.from_row(row)

    @strawberry.mutation
    async def delete_representation(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            s = tx.session
            row = await get_owned(s, m.Representation, id, user)
            await s.execute(delete(m.Metric).where(m.Metric.representation_id == row.id))
            await _delete_rois(
                tx, list((await s.scalars(select(m.Roi).where(m.Roi.representation_id == row.id))).all())
            )
            thumbs = list(
                (await s.scalars(select(m.Thumbnail).where(m.Thumbnail.representation_id == row.id))).all()
            )
            await s.execute(delete(m.Thumbnail).where(m.Thumbnail.representation_id == row.id))
            for table, column in (
                (m.representation_experiments, "representation_id"),
                (m.representation_origins, "derived_id"),
                (m.representation_origins, "origin_id"),
                (m.table_origins, "origin_id"),
            ):
                await s.execute(delete(table).where(table.c[column] == row.id))
            await drop_tags(s, m.Representation, [row.id])
            await s.delete(row)
            await s.flush()
            keys = await delete_stores(s, [row.store_id, *(th.store_id for th in thumbs)])
            await tx.record(REP, "DELETE", row.id, row.dataset_id, row.creator_id)
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))

    # --- ROIs and metrics ---------------------------------------------------------------------------

    @strawberry.mutation
    async def create_roi(self, info: Info[Any, Any], input: RoiInput) -> t.ROI:
        ctx, user = begin_mutation(info, input)
        vectors = _vectors(input.vectors)
        async with ctx.services.transaction() as tx:
            rep = await get_owned(tx.session, m.Representation, input.representation, user)
            row = m.Roi(
                representation_id=rep.id,
                kind=input.kind.value,
                vectors=vectors,
                label=input.label,
                creator_id=user.id,
            )
            tx.session.add(row)
            await replace_tags(tx.session, row, input.tags)
            await tx.record(ROI, "CREATE", row.id, rep.id, row.creator_id)
        return t.ROI.from_row(row)

    @strawberry.mutation
    async def update_roi(self, info: Info[Any, Any], id: strawberry.ID, input: RoiUpdateInput) -> t.ROI:
        ctx, user = begin_mutation(info, input)
        vectors = _vectors(input.vectors) if input.vectors is not None else None
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Roi, id, user)
            if input.kind is not None:
                row.kind = input.kind.value
            if vectors is not None:
                row.vectors = vectors
            if input.label is not None:
                row.label = input.label
            if input.tags is not None:
                await replace_tags(tx.session, row, input.tags)
            await tx.session.flush()
            await tx.record(ROI, "UPDATE", row.id, row.representation_id, row.creator_id)
        return t.ROI.from_row(row)

    @strawberry.mutation
    async def delete_roi(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Roi, id, user)
            await _delete_rois(tx, [row])
        return strawberry.ID(str(row.id))

    @strawberry.mutation
    async def create_metric(self, info: Info[Any, Any], input: MetricInput) -> t.Metric:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            rep = await get_owned(tx.session, m.Representation, input.representation, user)
            roi_id = None
            if input.roi is not None:
                roi = await get_owned(tx.session, m.Roi, input.roi, user)
                if roi.representation_id != rep.id:
                    raise BadUserInput(f"roi {input.roi} is not on representation {input.representation}")
                roi_id = roi.id
            if not input.key.strip():
                raise BadUserInput("a metric needs a key")
            row = m.Metric(
                representation_id=rep.id, roi_id=roi_id, key=input.key, value=input.value, creator_id=user.id
            )
            tx.session.add(row)
        return t.Metric.from_row(row)

    @strawberry.mutation
    async def update_metric(
        self, info: Info[Any, Any], id: strawberry.ID, input: MetricUpdateInput
    ) -> t.Metric:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Metric, id, user)
            if input.key is not None:
                if not input.key.strip():
                    raise BadUserInput("a metric needs a key")
                row.key = input.key
            if input.value is not None:
                row.value = input.value
        return t.Metric.from_row(row)

    @strawberry.mutation
    async def delete_metric(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Metric, id, user)
            await tx.session.delete(row)
        return strawberry.ID(str(row.id))

    # --- tables and thumbnails ----------------------------------------------------------------------

    @strawberry.mutation
    async def create_table(self, info: Info[Any, Any], input: TableInput) -> t.Table:
        ctx, user = begin_mutation(info, input)
        async with ctx.read() as session:
            store = await get_store(session, input.store, user, "PARQUET")
        if store.populated:
            raise Conflict(f"store {input.store} already holds a table")
        columns = await ctx.services.run_io(_parquet_columns, ctx, store.key)
        async with ctx.services.transaction() as tx:
            s = tx.session
            store = await get_store(s, input.store, user, "PARQUET")
            if store.populated:
                raise Conflict(f"store {input.store} already holds a table")
            store.populated = True
            store.path = ctx.services.storage.path_of(f"{store.key}/table.parquet")
            row = m.TableRow(name=_name(input.name), store_id=store.id, columns=columns, creator_id=user.id)
            s.add(row)
            await replace_tags(s, row, input.tags)
            origins = await _owned_ids(s, m.Representation, input.origins, user)
            await _set_links(s, m.table_origins, "table_id", row.id, "origin_id", origins, new=True)
        return t.Table.from_row(row)

    @strawberry.mutation
    async def update_table(self, info: Info[Any, Any], id: strawberry.ID, input: TableUpdateInput) -> t.Table:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.TableRow, id, user)
            if input.name is not None:
                row.name = _name(input.name)
            if input.tags is not None:
                await replace_tags(tx.session, row, input.tags)
            if input.origins is not None:
                origins = await _owned_ids(tx.session, m.Representation, input.origins, user)
                await _set_links(tx.session, m.table_origins, "table_id", row.id, "origin_id", origins)
        return t.Table.from_row(row)

    @strawberry.mutation
    async def delete_table(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.TableRow, id, user)
            await tx.session.execute(delete(m.table_origins).where(m.table_origins.c.table_id == row.id))
            await drop_tags(tx.session, m.TableRow, [row.id])
            await tx.session.delete(row)
            await tx.session.flush()
            keys = await delete_stores(tx.session, [row.store_id])
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))

    @strawberry.mutation
    async def create_thumbnail(self, info: Info[Any, Any], input: ThumbnailInput) -> t.Thumbnail:
        ctx, user = begin_mutation(info, input)
        if input.width < 1 or input.height < 1:
            raise BadUserInput("width and height must be positive")
        async with ctx.read() as session:
            store = await get_store(session, input.store, user, "MEDIA")
        key = f"{store.key}/thumbnail.png"
        if not await ctx.services.run_io(ctx.services.storage.exists, key):
            raise BadUserInput(f"no thumbnail at {key}: upload thumbnail.png before createThumbnail")
        async with ctx.services.transaction() as tx:
            s = tx.session
            store = await get_store(s, input.store, user, "MEDIA")
            if store.populated:
                raise Conflict(f"store {input.store} already holds a thumbnail")
            rep = await get_owned(s, m.Representation, input.representation, user)
            store.populated = True
            store.path = ctx.services.storage.path_of(key)
            row = m.Thumbnail(
                representation_id=rep.id,
                store_id=store.id,
                width=input.width,
                height=input.height,
                creator_id=user.id,
            )
            s.add(row)
        return t.Thumbnail.from_row(row)

    @strawberry.mutation
    async def update_thumbnail(
        self, info: Info[Any, Any], id: strawberry.ID, input: ThumbnailUpdateInput
    ) -> t.Thumbnail:
        ctx, user = begin_mutation(info, input)
        for value in (input.width, input.height):
            if value is not None and value < 1:
                raise BadUserInput("width and height must be positive")
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Thumbnail, id, user)
            if input.width is not None:
                row.width = input.width
            if input.height is not None:
                row.height = input.height
        return t.Thumbnail.from_row(row)

    @strawberry.mutation
    async def delete_thumbnail(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Thumbnail, id, user)
            await tx.session.delete(row)
            await tx.session.flush()
            keys = await delete_stores(tx.session, [row.store_id])
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))


def _parquet_columns(ctx: Context, prefix: str) -> list[dict[str, str]]:
    """Column names and types of ``<prefix>/table.parquet`` (blocking: runs in a worker thread)."""
    import pyarrow.parquet as pq

    raw = ctx.services.storage.read(f"{prefix}/table.parquet")
    if raw is None:
        raise BadUserInput(f"no table at {prefix}/table.parquet: upload it before createTable")
    try:
        schema = pq.read_schema(io.BytesIO(raw))
    except Exception as e:
        raise BadUserInput(f"{prefix}/table.parquet is not a parquet file: {e}") from None
    return [{"name": field.name, "type": str(field.type)} for field in schema]
