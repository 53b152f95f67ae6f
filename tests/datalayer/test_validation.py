"""Bad input is refused with mikro.ValidationError before anything reaches the store."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import mikro
from mikro.datalayer import GrantedStore, prepare_image, write_image

BAD: list[tuple[str, Any, dict[str, Any]]] = [
    ("dims of wrong length", np.zeros((4, 5, 6)), {"dims": "yx"}),
    ("unknown dim", np.zeros((4, 5, 6)), {"dims": "qyx"}),
    ("repeated dim", np.zeros((4, 5, 6)), {"dims": "yyx"}),
    ("no x", np.zeros((4, 5)), {"dims": "zy"}),
    ("ambiguous 3-D without dims", np.zeros((4, 5, 6)), {}),
    ("object dtype", np.array([["a", "b"], ["c", "d"]], dtype=object), {}),
    ("string dtype", np.array([["a", "b"], ["c", "d"]]), {}),
    ("complex dtype", np.zeros((4, 4), dtype=np.complex64), {}),
    ("empty", np.zeros((0, 5)), {}),
    ("empty dask", da.zeros((3, 0, 5), chunks=1), {"dims": "zyx"}),
    ("over the size limit", np.zeros((64, 64), dtype=np.uint16), {"max_bytes": 1000}),
    ("dims disagree with DataArray", xr.DataArray(np.zeros((3, 4)), dims=("y", "x")), {"dims": "xy"}),
    ("DataArray with odd dims", xr.DataArray(np.zeros((3, 4)), dims=("row", "col")), {}),
    (
        "NaN in coords",
        xr.DataArray(np.zeros((3, 4)), dims=("y", "x"), coords={"x": [0.0, 1.0, np.nan, 3.0]}),
        {},
    ),
    (
        "uneven coords",
        xr.DataArray(np.zeros((3, 4)), dims=("y", "x"), coords={"x": [0.0, 1.0, 2.5, 3.0]}),
        {},
    ),
    (
        "text coords on a space axis",
        xr.DataArray(np.zeros((2, 2)), dims=("y", "x"), coords={"y": ["a", "b"]}),
        {},
    ),
    ("negative pixel size", np.zeros((4, 4)), {"pixel_size": {"x": -1.0}}),
    ("pixel size for an unknown axis", np.zeros((4, 4)), {"pixel_size": {"q": 1.0}}),
    ("not an array", {"pixels": 1}, {}),
]


@pytest.mark.parametrize(("why", "data", "kwargs"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_validation_error(why: str, data: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(mikro.ValidationError):
        prepare_image(data, **kwargs)


@pytest.mark.anyio
async def test_nothing_written_for_bad_input(store: GrantedStore) -> None:
    async def upload(data: Any, **kwargs: Any) -> None:
        await write_image(store, prepare_image(data, **kwargs))

    with pytest.raises(mikro.ValidationError):
        await upload(np.zeros((2, 3, 4)), dims="zyy")
    assert store.stats.snapshot()["puts"] == 0


def test_good_input_is_brought_into_ome_order() -> None:
    values = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6).astype(np.uint16)
    image = prepare_image(values, dims=["c", "t", "z", "y", "x"])
    assert image.dims == ("t", "c", "z", "y", "x")
    np.testing.assert_array_equal(image.array, values.transpose(1, 0, 2, 3, 4))


def test_pixel_size_and_channel_names_come_from_the_dataarray() -> None:
    arr = xr.DataArray(
        np.zeros((2, 3, 4), dtype=np.uint8),
        dims=("c", "y", "x"),
        coords={"c": ["dapi", "gfp"], "y": [10.0, 10.5, 11.0], "x": [0.0, 0.1, 0.2, 0.3]},
    )
    image = prepare_image(arr)
    assert image.pixel_size == pytest.approx({"y": 0.5, "x": 0.1})
    assert image.channel_names == ("dapi", "gfp")
    assert prepare_image(arr, pixel_size={"x": 2.0}).pixel_size["x"] == 2.0


def test_two_d_dims_are_inferred() -> None:
    assert prepare_image(np.zeros((3, 4), dtype=bool)).dims == ("y", "x")
