"""Every typed operation against the real reference server; relations come back as models."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import mikro
from mikro.api import RepresentationVariety, RoiKind
from tests.client._data import make_representation, make_table, make_thumbnail, png_bytes
from tests.client.conftest import unique

pytestmark = pytest.mark.anyio


async def test_me_is_the_token_owner(m: mikro.Mikro) -> None:
    me = await m.me()
    assert me.username.startswith("alice-")
    assert me.is_admin is False


async def test_sample_lifecycle(m: mikro.Mikro) -> None:
    name = unique("HeLa")
    sample = await m.create_sample(name, description="cervix", tags=["cells", "demo"])
    assert (sample.name, sample.description, sample.tags) == (name, "cervix", ["cells", "demo"])
    assert sample.creator.username.startswith("alice-")
    assert sample.created_at.tzinfo is not None or isinstance(sample.created_at, dt.datetime)

    fetched = await m.get_sample(sample.id)
    assert fetched.id == sample.id and fetched.representations == []

    # ids as str, int or model all work
    assert (await m.get_sample(int(sample.id))).id == sample.id
    assert [s.id for s in await m.list_samples(ids=[sample])] == [sample.id]
    assert [s.id for s in await m.list_samples(name_contains=name[-10:].upper())] == [sample.id]
    assert [s.id for s in await m.search_samples(name)] == [sample.id]
    assert sample.id in [s.id for s in await m.list_samples(tags=["cells", "demo"], limit=1000)]
    assert await m.list_samples(ids=[sample], tags=["cells", "other"]) == []

    updated = await m.update_sample(sample, name=name + "-2", tags=["x"])
    assert (updated.name, updated.tags, updated.description) == (name + "-2", ["x"], "cervix")

    assert await m.delete_sample(sample) == sample.id
    with pytest.raises(mikro.NotFoundError):
        await m.get_sample(sample.id)


async def test_created_after_and_before_filter(m: mikro.Mikro) -> None:
    tag = unique("t")
    sample = await m.create_sample(unique("timed"), tags=[tag])
    assert [
        s.id
        for s in await m.list_samples(tags=[tag], created_before=sample.created_at + dt.timedelta(seconds=1))
    ] == [sample.id]
    assert await m.list_samples(tags=[tag], created_after=sample.created_at + dt.timedelta(seconds=1)) == []


async def test_experiment_lifecycle(m: mikro.Mikro) -> None:
    name = unique("screen")
    experiment = await m.create_experiment(name, description="drug screen", tags=["a"])
    assert (await m.get_experiment(experiment)).name == name
    assert [e.id for e in await m.search_experiments(name)] == [experiment.id]
    assert [e.id for e in await m.list_experiments(ids=[experiment.id], tags=["a"])] == [experiment.id]
    updated = await m.update_experiment(experiment, description="changed")
    assert (updated.name, updated.description) == (name, "changed")
    assert await m.delete_experiment(experiment.id) == experiment.id
    with pytest.raises(mikro.NotFoundError):
        await m.get_experiment(experiment)


async def test_dataset_tree(m: mikro.Mikro) -> None:
    root = await m.create_dataset(unique("root"))
    child = await m.create_dataset(unique("child"), parent=root, tags=["c"])
    other = await m.create_dataset(unique("other"))
    assert child.parent is not None and child.parent.id == root.id and child.parent.name == root.name

    fetched = await m.get_dataset(root)
    assert [c.id for c in fetched.children or []] == [child.id]
    assert fetched.parent is None
    assert [d.id for d in await m.list_datasets(parent=root)] == [child.id]
    assert [d.id for d in await m.search_datasets(child.name)] == [child.id]

    moved = await m.update_dataset(child, parent=other.id)
    assert moved.parent is not None and moved.parent.id == other.id
    assert await m.list_datasets(parent=root) == []
    for d in (child, root, other):
        assert await m.delete_dataset(d) == d.id


async def test_representation_relations_without_extra_requests(m: mikro.Mikro) -> None:
    sample = await m.create_sample(unique("s"))
    experiment = await m.create_experiment(unique("e"))
    dataset = await m.create_dataset(unique("d"))
    raw = await make_representation(
        m,
        unique("raw"),
        sample=sample,
        experiments=[experiment],
        dataset=dataset.id,
        tags=["raw"],
        channels=[{"name": "DAPI", "emission_wavelength": 461.0}],
        physical_size={"x": 0.1, "y": 0.1, "z": 0.5},
    )
    assert (raw.shape, raw.dims, raw.dtype) == ([2, 4, 5], ["z", "y", "x"], "uint16")
    assert raw.variety is RepresentationVariety.VOXEL
    assert raw.store.populated and raw.store.shape == [2, 4, 5]
    assert raw.channels[0].name == "DAPI" and raw.channels[0].emission_wavelength == 461.0
    assert raw.physical_size is not None and raw.physical_size.z == 0.5

    mask = await make_representation(m, unique("mask"), origins=[raw], variety="MASK", dataset=dataset)
    got = await m.get_representation(mask.id)
    # relations one level deep, as models, from the one request
    assert got.origins is not None and got.origins[0].id == raw.id and got.origins[0].name == raw.name
    assert got.dataset is not None and got.dataset.name == dataset.name
    assert got.variety is RepresentationVariety.MASK
    got_raw = await m.get_representation(raw)
    assert got_raw.sample is not None and got_raw.sample.name == sample.name
    assert got_raw.experiments is not None and [e.name for e in got_raw.experiments] == [experiment.name]
    assert got_raw.derived is not None and [d.id for d in got_raw.derived] == [mask.id]
    # one level only: the nested sample's own relations are "not fetched", not "empty"
    with pytest.raises(mikro.NotFetchedError, match=r"m\.get_sample"):
        _ = got_raw.sample.representations
    # nested models carry the session too: their pixels open lazily from where they are
    origin_pixels = got.origins[0].data
    assert origin_pixels.dims == ("z", "y", "x") and origin_pixels.shape == (2, 4, 5)
    assert int(await m.compute(origin_pixels.max())) == 2 * 4 * 5 - 1

    # relations from the other side
    assert [r.id for r in (await m.get_sample(sample)).representations or []] == [raw.id]
    assert [r.id for r in (await m.get_experiment(experiment)).representations or []] == [raw.id]
    by_dataset = await m.list_representations(dataset=dataset)
    assert {r.id for r in by_dataset} == {raw.id, mask.id}
    assert [
        r.id for r in await m.list_representations(dataset=dataset.id, variety=RepresentationVariety.MASK)
    ] == [mask.id]
    assert [r.id for r in await m.list_representations(derived_from=raw)] == [mask.id]
    assert [r.id for r in await m.list_representations(sample=sample, experiment=experiment)] == [raw.id]
    assert [r.id for r in await m.search_representations(raw.name)] == [raw.id]

    updated = await m.update_representation(
        raw,
        name=raw.name + "-renamed",
        tags=["raw", "checked"],
        channels=[mikro.Channel(name="GFP", emission_wavelength=510.0)],
        physical_size=mikro.PhysicalSize(x=0.2, y=0.2),
        acquisition_date=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    )
    assert updated.name == raw.name + "-renamed" and updated.tags == ["raw", "checked"]
    assert [c.name for c in updated.channels] == ["GFP"]
    assert updated.physical_size is not None and updated.physical_size.x == 0.2
    assert updated.acquisition_date is not None and updated.acquisition_date.year == 2024
    assert updated.sample is not None and updated.sample.id == sample.id  # untouched

    assert await m.delete_representation(mask) == mask.id
    with pytest.raises(mikro.NotFoundError):
        await m.get_representation(mask.id)


async def test_roi_and_metric_lifecycle(m: mikro.Mikro) -> None:
    rep = await make_representation(m, unique("img"))
    vectors = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 3, 4]], dtype=float)
    roi = await m.create_roi(rep, RoiKind.RECTANGLE, vectors, label="nucleus", tags=["auto"])
    assert roi.vectors == vectors.tolist() and roi.kind is RoiKind.RECTANGLE
    assert roi.representation is not None and roi.representation.name == rep.name
    point = await m.create_roi(rep.id, "POINT", [[0, 0, 0, 2, 2]])

    assert {r.id for r in await m.list_rois(representation=rep)} == {roi.id, point.id}
    assert [r.id for r in await m.list_rois(representation=rep, kind="POINT")] == [point.id]
    assert [r.id for r in await m.search_rois("nucleus") if r.id == roi.id] == [roi.id]
    moved = await m.update_roi(roi, vectors=[[0, 0, 0, 2, 2], [0, 0, 0, 5, 5]], label="cell")
    assert moved.label == "cell" and moved.vectors[1] == [0, 0, 0, 5, 5]

    metric = await m.create_metric(rep, "area", {"px": 12, "um2": 0.12}, roi=roi)
    assert metric.value == {"px": 12, "um2": 0.12}
    assert metric.roi is not None and metric.roi.id == roi.id
    assert metric.representation is not None and metric.representation.id == rep.id
    count = await m.create_metric(rep, "count", 3)
    assert (await m.get_metric(count)).value == 3
    assert [x.id for x in await m.list_metrics(representation=rep, key="area")] == [metric.id]
    assert [x.id for x in await m.list_metrics(roi=roi)] == [metric.id]
    assert {
        x.id for x in await m.search_metrics("are") if x.representation and x.representation.id == rep.id
    } == {metric.id}
    assert (await m.update_metric(count, value=[1, 2])).value == [1, 2]

    full = await m.get_representation(rep)
    assert {r.id for r in full.rois or []} == {roi.id, point.id}
    assert {x.key for x in full.metrics or []} == {"area", "count"}

    assert await m.delete_metric(metric) == metric.id
    assert await m.delete_roi(point) == point.id
    assert [r.id for r in await m.list_rois(representation=rep)] == [roi.id]
    with pytest.raises(mikro.NotFoundError):
        await m.get_roi(point.id)
    with pytest.raises(mikro.NotFoundError):
        await m.get_metric(metric.id)


async def test_table_and_thumbnail(m: mikro.Mikro) -> None:
    rep = await make_representation(m, unique("img"))
    table = await make_table(m, unique("measurements"), origins=[rep], tags=["stats"])
    assert [(c.name, c.type) for c in table.columns][:1] == [("label", "int64")]
    assert table.origins is not None and [o.id for o in table.origins] == [rep.id]
    assert (await m.get_table(table)).store.id == table.store.id
    assert [t.id for t in await m.list_tables(origin=rep)] == [table.id]
    renamed = await m.update_table(table, name=table.name + "-v2", tags=["stats", "final"])
    assert renamed.name.endswith("-v2") and renamed.tags == ["stats", "final"]

    thumb = await make_thumbnail(m, rep)
    assert (thumb.width, thumb.height) == (8, 6)
    with pytest.raises(mikro.NotFetchedError):  # the PNG only on request
        _ = thumb.png
    assert thumb.representation is not None and thumb.representation.id == rep.id
    assert (await m.get_thumbnail(thumb.id)).width == 8
    assert await m.thumbnail_png(thumb) == png_bytes()
    assert [t.id for t in await m.list_thumbnails(representation=rep)] == [thumb.id]
    assert [t.id for t in (await m.get_representation(rep)).thumbnails or []] == [thumb.id]

    brighter = png_bytes(12, 4, value=250)
    updated = await m.update_thumbnail(thumb, brighter)
    assert (updated.id, updated.width, updated.height) == (thumb.id, 12, 4)
    assert await mikro.athumbnail_png(thumb.id) == brighter  # the module-level helper, same session
    with pytest.raises(mikro.ValidationError, match="not a PNG"):
        await m.update_thumbnail(thumb, b"GIF89a")
    with pytest.raises(mikro.ValidationError, match="at most 4096"):
        await m.create_thumbnail(rep, png_bytes(4097, 1))
    assert await m.thumbnail_png(thumb) == brighter
    assert [t.id for t in await m.list_thumbnails(representation=rep)] == [thumb.id]

    assert await m.delete_thumbnail(thumb) == thumb.id
    with pytest.raises(mikro.NotFoundError):
        await m.thumbnail_png(thumb)
    assert await m.delete_table(table) == table.id
    assert await m.list_tables(origin=rep) == []


async def test_iter_pages_through_everything(m: mikro.Mikro) -> None:
    tag = unique("batch")
    created = [await m.create_sample(f"{tag}-{i}", tags=[tag]) for i in range(7)]
    assert len(await m.list_samples(tags=[tag], limit=3)) == 3
    assert [s.id for s in await m.list_samples(tags=[tag], offset=6, limit=3)] == [created[6].id]
    seen = [s.id async for s in m.iter_samples(tags=[tag], page_size=3)]
    assert seen == [s.id for s in created]  # 3 + 3 + 1: three pages, in order, no repeats
    exact = [s.id async for s in m.iter_samples(tags=[tag], page_size=7)]
    assert exact == seen  # a full last page is followed by an empty one, not by an error

    rep = await make_representation(m, unique("img"))
    rois = [await m.create_roi(rep, "POINT", [[0, 0, 0, i, i]]) for i in range(5)]
    assert [r.id async for r in m.iter_rois(representation=rep, page_size=2)] == [r.id for r in rois]
    with pytest.raises(mikro.ValidationError):
        [s async for s in m.iter_samples(page_size=0)]


async def test_grants_for_own_stores(m: mikro.Mikro) -> None:
    rep = await make_representation(m, unique("img"))
    grant = await m.request_access(rep.store)
    assert grant.store_id == rep.store.id and grant.write is False
    storage = grant.to_storage_grant()
    assert storage.kind == "file" and storage.store_id == rep.store.id and storage.path == grant.path
    assert (await m.get_zarr_store(rep.store.id)).shape == [2, 4, 5]
    upload = await m.request_upload()
    assert upload.write is True and upload.upload_kind is mikro.UploadKind.ZARR
