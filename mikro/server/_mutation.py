"""Create, update and delete of every object type (the data plane is in ``_data_plane``)."""

from __future__ import annotations

import io
import logging
from typing import Any

import strawberry
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.server import _models as m
from mikro.server import _types as t
from mikro.server._context import Context
from mikro.server._crud import begin_mutation, drop_tags, get_owned, get_store, replace_tags
from mikro.server._errors import BadUserInput, Conflict
from mikro.server._inputs import (
    DatasetInput,
    DatasetUpdateInput,
    ExperimentInput,
    ExperimentUpdateInput,
    MetricInput,
    MetricUpdateInput,
    RepresentationInput,
    RepresentationUpdateInput,
    RoiInput,
    RoiUpdateInput,
    SampleInput,
    SampleUpdateInput,
    TableInput,
    TableUpdateInput,
    ThumbnailInput,
    ThumbnailUpdateInput,
)
from mikro.server._ome_group import write_back
from mikro.server._png import png_size
from mikro.server._representation_create import MAX_BATCH, REP, create_representations
from mikro.server._row_values import channel_values, checked_name, owned_ids, physical_values, set_links
from mikro.server._services import Tx
from mikro.server._store_cleanup import delete_objects, delete_stores

__all__ = ["ObjectMutation"]

logger = logging.getLogger("mikro.server")

ROI = "roi"


async def _update_described(session: AsyncSession, row: Any, input: Any) -> None:
    """Apply the name/description/tags of an update input (null means "no change") to a
    Sample, Experiment or Dataset row."""
    if input.name is not None:
        row.name = checked_name(input.name)
    if input.description is not None:
        row.description = input.description
    if input.tags is not None:
        await replace_tags(session, row, input.tags)


def _vectors(vectors: list[list[float]]) -> list[list[float]]:
    if not vectors:
        raise BadUserInput("an ROI needs at least one vector")
    for i, vector in enumerate(vectors):
        if len(vector) != 5:
            raise BadUserInput(
                f"vectors[{i}] has {len(vector)} values; each must be a 5-D (c, t, z, y, x) point"
            )
    return [list(v) for v in vectors]


async def _check_parent(session: AsyncSession, dataset_id: int | None, parent_id: int) -> None:
    """Refuse a parent that would make the dataset tree a cycle."""
    current: int | None = parent_id
    while current is not None:
        if current == dataset_id:
            raise BadUserInput("a dataset cannot be its own ancestor")
        current = await session.scalar(select(m.Dataset.parent_id).where(m.Dataset.id == current))


async def _delete_rois(tx: Tx, roi_rows: list[m.Roi]) -> None:
    ids = [r.id for r in roi_rows]
    if not ids:
        return
    await tx.session.execute(delete(m.Metric).where(m.Metric.roi_id.in_(ids)))
    await drop_tags(tx.session, m.Roi, ids)
    await tx.session.execute(delete(m.Roi).where(m.Roi.id.in_(ids)))
    for r in roi_rows:
        tx.record(ROI, "DELETE", r.id, r.representation_id, r.creator_id)


@strawberry.type
class ObjectMutation:
    # --- samples, experiments, datasets -------------------------------------------------------------

    @strawberry.mutation
    async def create_sample(self, info: Info[Any, Any], input: SampleInput) -> t.Sample:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = m.Sample(name=checked_name(input.name), description=input.description, creator_id=user.id)
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
            row = m.Experiment(
                name=checked_name(input.name), description=input.description, creator_id=user.id
            )
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
                name=checked_name(input.name),
                description=input.description,
                parent_id=parent_id,
                creator_id=user.id,
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
    async def delete_dataset(
        self, info: Info[Any, Any], id: strawberry.ID, recursive: bool = False
    ) -> strawberry.ID:
        """Delete a dataset. One that holds datasets or images is refused (CONFLICT) unless
        ``recursive``: then its sub-datasets are deleted with it and the images in any of them are
        kept, outside any dataset (images are deleted only by deleteRepresentation)."""
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            s = tx.session
            row = await get_owned(s, m.Dataset, id, user)
            tree, level = [row.id], [row.id]
            while level:
                level = list(
                    (await s.scalars(select(m.Dataset.id).where(m.Dataset.parent_id.in_(level)))).all()
                )
                tree += level
            images = select(m.Representation.id).where(m.Representation.dataset_id.in_(tree))
            if not recursive and (len(tree) > 1 or (await s.scalar(images.limit(1))) is not None):
                raise Conflict(
                    f"dataset {row.id} is not empty (it holds datasets or images): delete it with "
                    "recursive=true to delete its sub-datasets too (their images are kept, outside any "
                    "dataset)"
                )
            await s.execute(
                update(m.Representation).where(m.Representation.dataset_id.in_(tree)).values(dataset_id=None)
            )
            await s.execute(update(m.Dataset).where(m.Dataset.id.in_(tree)).values(parent_id=None))
            await drop_tags(s, m.Dataset, tree)
            await s.execute(delete(m.Dataset).where(m.Dataset.id.in_(tree)))
        return strawberry.ID(str(row.id))

    # --- representations ----------------------------------------------------------------------------

    @strawberry.mutation
    async def create_representation(
        self, info: Info[Any, Any], input: RepresentationInput
    ) -> t.Representation:
        ctx, user = begin_mutation(info, input)
        (row,) = await create_representations(ctx, user, [input])
        return t.Representation.from_row(row)

    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description=f"Create several images in one request and one transaction (at most {MAX_BATCH}): all or "
        "none; an error names its input (inputs[i]). Returned in input order."
    )
    async def create_representations(
        self, info: Info[Any, Any], inputs: list[RepresentationInput]
    ) -> list[t.Representation]:
        ctx, user = begin_mutation(info, inputs)
        reps = [t.Representation.from_row(row) for row in await create_representations(ctx, user, inputs)]
        await t.prefetch_representations(info, reps)
        return reps

    @strawberry.mutation
    async def update_representation(
        self, info: Info[Any, Any], id: strawberry.ID, input: RepresentationUpdateInput
    ) -> t.Representation:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            s = tx.session
            row = await get_owned(s, m.Representation, id, user)
            if input.name is not None:
                row.name = checked_name(input.name)
            if input.variety is not None:
                row.variety = input.variety.value
            if input.sample is not None:
                row.sample_id = (await get_owned(s, m.Sample, input.sample, user)).id
            if input.dataset is not None:
                row.dataset_id = (await get_owned(s, m.Dataset, input.dataset, user)).id
            if input.experiments is not None:
                experiments = await owned_ids(s, m.Experiment, input.experiments, user)
                link = m.representation_experiments
                await set_links(s, link, "representation_id", row.id, "experiment_id", experiments)
            if input.tags is not None:
                await replace_tags(s, row, input.tags)
            if input.channels is not None:
                row.channels = channel_values(input.channels)
            if input.physical_size is not None:
                row.physical_size = physical_values(input.physical_size)
            if input.acquisition_date is not None:
                row.acquisition_date = input.acquisition_date
            await s.flush()
            if input.name is not None or input.channels is not None or input.physical_size is not None:
                # In the transaction: if the store cannot be written, the edit is rolled back.
                await write_back(ctx, s, row)
            tx.record(REP, "UPDATE", row.id, row.dataset_id, row.creator_id)
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
            keys = await s.run_sync(delete_stores, [row.store_id])
            tx.record(REP, "DELETE", row.id, row.dataset_id, row.creator_id)
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))

    # --- ROIs and metrics ---------------------------------------------------------------------------

    @strawberry.mutation
    async def create_roi(self, info: Info[Any, Any], input: RoiInput) -> t.ROI:
        ctx, user = begin_mutation(info, input)
        vectors = _vectors(input.vectors)
        async with ctx.services.transaction() as tx:
            rep = await get_owned(tx.session, m.Representation, input.representation, user, parent=True)
            row = m.Roi(
                representation_id=rep.id,
                kind=input.kind.value,
                vectors=vectors,
                label=input.label,
                creator_id=user.id,
            )
            tx.session.add(row)
            await replace_tags(tx.session, row, input.tags)
            tx.record(ROI, "CREATE", row.id, rep.id, row.creator_id)
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
            tx.record(ROI, "UPDATE", row.id, row.representation_id, row.creator_id)
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
            rep = await get_owned(tx.session, m.Representation, input.representation, user, parent=True)
            roi_id = None
            if input.roi is not None:
                roi = await get_owned(tx.session, m.Roi, input.roi, user, parent=True)
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
            row = m.TableRow(
                name=checked_name(input.name), store_id=store.id, columns=columns, creator_id=user.id
            )
            s.add(row)
            await replace_tags(s, row, input.tags)
            origins = await owned_ids(s, m.Representation, input.origins, user)
            await set_links(s, m.table_origins, "table_id", row.id, "origin_id", origins, new=True)
        return t.Table.from_row(row)

    @strawberry.mutation
    async def update_table(self, info: Info[Any, Any], id: strawberry.ID, input: TableUpdateInput) -> t.Table:
        ctx, user = begin_mutation(info, input)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.TableRow, id, user)
            if input.name is not None:
                row.name = checked_name(input.name)
            if input.tags is not None:
                await replace_tags(tx.session, row, input.tags)
            if input.origins is not None:
                origins = await owned_ids(tx.session, m.Representation, input.origins, user)
                await set_links(tx.session, m.table_origins, "table_id", row.id, "origin_id", origins)
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
            keys = await tx.session.run_sync(delete_stores, [row.store_id])
        await delete_objects(ctx.services, keys)
        return strawberry.ID(str(row.id))

    @strawberry.mutation
    async def create_thumbnail(self, info: Info[Any, Any], input: ThumbnailInput) -> t.Thumbnail:
        ctx, user = begin_mutation(info, input)
        width, height = png_size(input.png, "input.png")
        async with ctx.services.transaction() as tx:
            rep = await get_owned(tx.session, m.Representation, input.representation, user, parent=True)
            row = m.Thumbnail(
                representation_id=rep.id, png=input.png, width=width, height=height, creator_id=user.id
            )
            tx.session.add(row)
        return t.Thumbnail.from_row(row)

    @strawberry.mutation
    async def update_thumbnail(
        self, info: Info[Any, Any], id: strawberry.ID, input: ThumbnailUpdateInput
    ) -> t.Thumbnail:
        ctx, user = begin_mutation(info, input)
        width, height = png_size(input.png, "input.png")
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Thumbnail, id, user)
            row.png, row.width, row.height, row.key = input.png, width, height, None
        return t.Thumbnail.from_row(row)

    @strawberry.mutation
    async def delete_thumbnail(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        ctx, user = begin_mutation(info)
        async with ctx.services.transaction() as tx:
            row = await get_owned(tx.session, m.Thumbnail, id, user)
            await tx.session.delete(row)
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
