"""What a new user reads off models and arguments: not-fetched is not absent, bad input says what fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mikro
from tests.client.conftest import unique

pytestmark = pytest.mark.anyio


async def make_representation(m: mikro.Mikro, **relations: object) -> mikro.Representation:
    return await m.create_representation(np.ones((4, 4), np.uint8), name=unique("img"), **relations)  # type: ignore[arg-type]


async def test_a_relation_not_fetched_raises_naming_the_call(m: mikro.Mikro) -> None:
    parent = await m.create_dataset(unique("parent"))
    child = await m.create_dataset(unique("child"), parent=parent)
    rep = await make_representation(m, dataset=child)
    assert rep.dataset is not None and rep.dataset.id == child.id
    with pytest.raises(mikro.NotFetchedError, match=rf"Dataset.parent .*m\.get_dataset\('{child.id}'\)"):
        _ = rep.dataset.parent
    # Fetched by the call that names it: a parent, and an honest None for the root.
    assert (await m.get_dataset(child.id)).parent.id == parent.id  # type: ignore[union-attr]
    assert (await m.get_dataset(parent.id)).parent is None
    with pytest.raises(mikro.NotFetchedError, match=r"m\.thumbnail_png"):
        _ = rep.thumbnails[0].png  # type: ignore[index]
    roi = await m.create_roi(rep, "POINT", [[0, 0, 0, 1, 1]])
    metric = await m.create_metric(rep, "area", 1.0, roi=roi)
    assert (await m.get_metric(metric.id)).roi.id == roi.id  # type: ignore[union-attr]
    assert (await m.get_metric((await m.create_metric(rep, "n", 2)).id)).roi is None


async def test_repr_shows_pixel_sizes_and_wavelengths(m: mikro.Mikro) -> None:
    rep = await m.create_representation(
        np.zeros((2, 8, 8), np.uint8),
        name=unique("r"),
        dims="cyx",
        channels=[{"name": "DAPI", "emission_wavelength": 461.0}, {"name": "GFP"}],
        pixel_size={"x": 0.25, "y": 0.25},
    )
    text = repr(rep)
    assert "PhysicalSize(x=0.25, y=0.25)" in text
    assert "Channel(name='DAPI', emission_wavelength=461.0)" in text
    page = rep._repr_html_()
    assert "461.0" in page and "0.25" in page
    # On the session's own loop the view does not block on a request: it says how to get the PNG.
    assert "await m.thumbnail_png" in page


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (800.0, 800.0),
        (np.int64(3), 3),
        (np.float32(1.5), 1.5),
        (np.arange(3), [0, 1, 2]),
        ({"mean": np.float64(2.0), "n": np.uint8(4)}, {"mean": 2.0, "n": 4}),
        (True, True),
    ],
)
async def test_metric_values_keep_their_type(m: mikro.Mikro, value: object, stored: object) -> None:
    rep = await make_representation(m)
    metric = await m.create_metric(rep, "k", value)
    fetched = (await m.get_metric(metric.id)).value
    assert fetched == stored and type(fetched) is type(stored)
    if isinstance(stored, float):
        updated = await m.update_metric(metric, value=np.float64(7.0))
        assert type((await m.get_metric(updated.id)).value) is float


@pytest.mark.parametrize("value", [math.nan, np.float64("inf"), None, object(), np.array([1.0, np.nan])])
async def test_metric_values_that_cannot_be_stored_are_validation_errors(
    m: mikro.Mikro, value: object
) -> None:
    rep = await make_representation(m)
    with pytest.raises(mikro.ValidationError):
        await m.create_metric(rep, "k", value)
    metric = await m.create_metric(rep, "k", 1)
    with pytest.raises(mikro.ValidationError):
        await m.update_metric(metric, value=value)
    assert (await m.get_metric(metric.id)).value == 1


async def test_bad_choices_list_the_accepted_values(m: mikro.Mikro) -> None:
    rep = await make_representation(m)
    with pytest.raises(
        mikro.ValidationError, match=r"kind must be one of POINT, LINE, .*ELLIPSE; got 'CIRCLE'"
    ):
        await m.create_roi(rep, kind="CIRCLE", vectors=[[0, 0, 0, 1, 1]])
    with pytest.raises(mikro.ValidationError, match=r"variety must be one of VOXEL, .*; got 'PHOTO'"):
        await m.create_representation(np.zeros((4, 4), np.uint8), name="x", variety="PHOTO")
    with pytest.raises(mikro.ValidationError, match="variety must be one of"):
        await m.list_representations(variety="nope")
    assert (
        await m.create_roi(rep, kind="rectangle", vectors=[[0, 0, 0, 0, 0], [0, 0, 0, 2, 2]])
    ).kind == "RECTANGLE"


async def test_deleting_a_dataset_refuses_a_non_empty_one_unless_recursive(m: mikro.Mikro) -> None:
    root = await m.create_dataset(unique("root"))
    child = await m.create_dataset(unique("child"), parent=root)
    image = await make_representation(m, dataset=child)
    empty = await m.create_dataset(unique("empty"))
    with pytest.raises(mikro.ConflictError, match="recursive=true"):
        await m.delete_dataset(root)
    with pytest.raises(mikro.ConflictError):
        await m.delete_dataset(child)  # it holds an image
    assert await m.delete_dataset(empty) == empty.id
    assert await m.delete_dataset(root, recursive=True) == root.id
    for gone in (root, child):
        with pytest.raises(mikro.NotFoundError):
            await m.get_dataset(gone)
    # The images of the subtree are kept, outside any dataset.
    assert (await m.get_representation(image.id)).dataset is None
