"""Write images to a real store (folder, moto S3) and read them back: values, dims, dtype, chunks, sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from mikro.datalayer import (
    GrantedStore,
    WriteResult,
    compute,
    open_dataarray,
    prepare_image,
    write_image,
)
from mikro.datalayer._shard import ChunkCodec, encode_shard
from tests.datalayer.conftest import download


def make_data(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.7
    if dtype == "float32":
        return rng.normal(100, 20, shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(0, min(info.max, 5000), shape, dtype=dtype)


async def write_and_open(store: GrantedStore, data: Any, **kwargs: Any) -> tuple[WriteResult, xr.DataArray]:
    image = prepare_image(data, dims=kwargs.pop("dims", None), pixel_size=kwargs.pop("pixel_size", None))
    result = await write_image(store, image, **kwargs)
    lay = result.layout
    view = open_dataarray(
        store,
        shape=lay.shape,
        chunks=lay.chunks,
        shards=lay.shards,
        dtype=lay.dtype,
        dims=lay.dims,
        pixel_size=image.pixel_size,
        channel_names=image.channel_names,
    )
    return result, view


CASES = [
    # (input kind, shape, dims, dtype)
    ("numpy", (300, 500), "yx", "uint8"),
    ("numpy", (7, 130, 1100), "zyx", "uint16"),
    ("numpy", (2, 3, 5, 64, 80), "ctzyx", "float32"),
    ("xarray", (3, 40, 70), "cyx", "bool"),
    ("xarray", (2, 9, 100, 120), "tzyx", "uint16"),
    ("dask", (12, 2100, 90), "zyx", "uint8"),
    ("dask", (2, 2, 3, 50, 60), "tczyx", "bool"),
    ("dask", (200, 300), "yx", "float32"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "shape", "dims", "dtype"), CASES)
async def test_round_trip(
    store: GrantedStore, tmp_path: Path, kind: str, shape: tuple[int, ...], dims: str, dtype: str
) -> None:
    values = make_data(shape, dtype)
    pixel_size = {"x": 0.25, "y": 0.25} | ({"z": 1.5} if "z" in dims else {})
    data: Any = values
    kwargs: dict[str, Any] = {"pixel_size": pixel_size}
    if kind == "numpy":
        kwargs["dims"] = dims
    elif kind == "dask":
        data = da.from_array(values, chunks=tuple(max(1, n // 2) for n in shape))
        kwargs["dims"] = dims
    else:
        coords = {
            d: np.arange(n) * pixel_size[d] for d, n in zip(dims, shape, strict=True) if d in pixel_size
        }
        data = xr.DataArray(values, dims=tuple(dims), coords=coords)
        kwargs = {}

    result, view = await write_and_open(store, data, **kwargs)

    expected = xr.DataArray(values, dims=tuple(dims)).transpose(*view.dims)
    assert set(view.dims) == set(dims)
    assert view.dims == tuple(d for d in "tczyx" if d in dims)  # OME order on the store
    assert view.dtype == np.dtype(dtype)
    assert view.shape == expected.shape
    assert view.data.chunksize == result.layout.chunks
    got = await compute(view)
    np.testing.assert_array_equal(got.values, expected.values)
    for d, size in pixel_size.items():
        assert float(view.coords[d][1] - view.coords[d][0]) == pytest.approx(size)

    # zarr-python, knowing nothing of mikro, reads the same values (this checks the shard encoding).
    plain = zarr.open_array(str(download(store, tmp_path / "download")) + "/0", mode="r")
    assert plain.shape == expected.shape
    assert plain.chunks == result.layout.chunks
    assert plain.shards == result.layout.shards
    assert plain.metadata.dimension_names == view.dims
    np.testing.assert_array_equal(plain[...], expected.values)


@pytest.mark.anyio
async def test_uncompressed_round_trip(store: GrantedStore) -> None:
    values = make_data((4, 300, 200), "uint16")
    result, view = await write_and_open(store, values, dims="zyx", compression=None)
    assert result.bytes_stored > values.nbytes  # raw chunks plus index: nothing was compressed
    np.testing.assert_array_equal((await compute(view)).values, values)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("shape", "shard_planes"),
    [((3, 600, 500), 2), ((2, 1100, 1300), None)],
    ids=["planes", "tiles"],
)
@pytest.mark.parametrize("order", ["c", "other"])
async def test_uncompressed_shards_are_the_encoders_bytes(
    store: GrantedStore, shape: tuple[int, ...], shard_planes: int | None, order: str, tmp_path: Any
) -> None:
    """A folder store gets uncompressed shards written chunk by chunk from the pixels, an object store
    one buffer per shard: both must be exactly `encode_shard`'s bytes. "planes": whole-plane chunks, two
    to a shard, the last shard holding one (whole chunks of C-order input are written straight from
    it); "tiles": 1024-px tiles, the edge ones padded with zeros. With "other" the input is big-endian
    and Fortran-ordered: every chunk goes through the conversion."""
    values = make_data(shape, "uint16", seed=3)
    data = values if order == "c" else np.asfortranarray(values.astype(">u2"))
    options = {"target_shard_bytes": shard_planes * values[0].nbytes} if shard_planes else {}
    result, view = await write_and_open(store, data, dims="zyx", compression=None, **options)
    layout = result.layout
    assert any(s % c for s, c in zip(layout.shape, layout.shards, strict=True))  # edge shards
    codec = ChunkCodec.for_layout(layout)
    for pos in layout.shard_positions():
        expected = bytes(encode_shard(values[layout.shard_region(pos)], layout, codec))
        assert store.get(layout.shard_key(pos)) == expected
    np.testing.assert_array_equal((await compute(view)).values, values)
    plain = zarr.open_array(str(download(store, tmp_path)) + "/0", mode="r")
    np.testing.assert_array_equal(plain[...], values)


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
@pytest.mark.parametrize("compression", ["zstd", "blosc-lz4", "blosc-zstd"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "bool"])
async def test_every_compression_reads_back_in_mikro_and_zarr(
    store: GrantedStore, compression: str, dtype: str, tmp_path: Any
) -> None:
    smooth = np.add.outer(np.arange(300), np.arange(200)) % 97
    values = np.stack([smooth + z for z in range(3)]).astype(dtype)
    result, view = await write_and_open(store, values, dims="zyx", compression=compression)
    assert result.bytes_stored < values.nbytes / 2  # it did compress
    np.testing.assert_array_equal((await compute(view)).values, values)
    plain = zarr.open_array(str(download(store, tmp_path)) + "/0", mode="r")
    np.testing.assert_array_equal(plain[...], values)


@pytest.mark.anyio
async def test_slicing_matches_numpy(store: GrantedStore) -> None:
    values = make_data((3, 10, 90, 70), "uint16")
    _, view = await write_and_open(store, values, dims="czyx", target_shard_bytes=40_000)
    for sel in [
        (1, 4),
        (slice(None), slice(2, 9, 3), slice(None, None, -7), 5),
        (-1, -2, slice(80, 10, -9), slice(3, 4)),
        (Ellipsis, 69),
    ]:
        np.testing.assert_array_equal((await compute(view[sel])).values, values[sel])


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
async def test_dask_input_is_streamed_shard_by_shard(store: GrantedStore) -> None:
    """A 128 MiB dask image is written while at most a few 4 MiB shards are in memory at once."""
    import tracemalloc

    source = da.ones((128, 1024, 1024), dtype=np.uint8, chunks=(1, 1024, 1024)) * np.uint8(3)
    tracemalloc.start()
    try:
        result, view = await write_and_open(store, source, dims="zyx", target_shard_bytes=4 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.layout.nbytes == 128 * 2**20
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB while writing a 128 MiB dask array"
    assert int((await compute(view[77].max())).item()) == 3
