"""Lazy reads: no I/O until computed, one plane fetches only that plane's chunks, the loop stays free."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mikro.datalayer import GrantedStore, compute, open_dataarray, prepare_image, write_image
from mikro.datalayer._shard import ShardIndex
from tests.datalayer.conftest import CountingProvider


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise: compresses like a real image, not like zeros."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    smooth = 1000 + 800 * np.sin(x / 17.0 + z / 5.0) * np.cos(y / 23.0)
    return (smooth + rng.normal(0, 30, shape)).astype(np.uint16)


@pytest.mark.anyio
async def test_one_plane_reads_only_its_chunk(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider()
    values = blobs((64, 512, 512))
    writer = GrantedStore(provider)
    result = await write_image(writer, prepare_image(values, dims="zyx"))
    lay = result.layout
    assert lay.chunks == (1, 512, 512)

    reader_store = GrantedStore(provider)  # fresh: no cached shard index or metadata
    view = open_dataarray(
        reader_store, shape=lay.shape, chunks=lay.chunks, shards=lay.shards, dtype=lay.dtype, dims=lay.dims
    )
    plane = await compute(view[37])
    np.testing.assert_array_equal(plane.values, values[37])

    # The stored size of plane 37's chunk, from its shard's index.
    shard = 37 // lay.shards[0]
    key = f"0/c.{shard}.0.0"
    raw_index = writer.get_suffix(key, ShardIndex.nbytes(lay.chunks_per_shard))
    assert raw_index is not None
    _, chunk_bytes = ShardIndex.decode(raw_index, lay.chunks_per_shard).locate(
        (37 % lay.shards[0], 0, 0)
    ) or (0, 0)
    fetched = reader_store.stats.snapshot()["bytes_read"]
    assert chunk_bytes > 0
    assert fetched <= 1.1 * chunk_bytes, f"fetched {fetched} bytes for a {chunk_bytes}-byte chunk"


@pytest.mark.anyio
async def test_opening_and_slicing_do_no_io(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider()
    values = blobs((4, 64, 64))
    result = await write_image(GrantedStore(provider), prepare_image(values, dims="zyx"))
    calls = provider.calls
    lay = result.layout

    store = GrantedStore(provider)
    view = open_dataarray(
        store,
        shape=lay.shape,
        chunks=lay.chunks,
        shards=lay.shards,
        dtype=str(lay.dtype),
        dims=lay.dims,
        pixel_size={"x": 0.5, "y": 0.5},
    )
    expr = (view[1:3, 10:50].astype("float64") * 2).mean(dim="z")
    assert provider.calls == calls  # no grant was even asked for
    assert store.stats.snapshot()["gets"] == 0
    assert view.coords["x"].values[3] == 1.5
    np.testing.assert_allclose((await compute(expr)).values, (values[1:3, 10:50] * 2.0).mean(axis=0))


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
async def test_missing_shards_read_as_fill_value(make_provider: Callable[..., CountingProvider]) -> None:
    """A shard that was never written reads as zeros (zarr's fill value), like zarr itself."""
    provider = make_provider()
    values = blobs((8, 256, 512))
    writer = GrantedStore(provider)
    result = await write_image(
        writer, prepare_image(values, dims="zyx"), target_shard_bytes=4 * 256 * 512 * 2
    )
    assert result.layout.shards == (4, 256, 512)
    writer.delete(["0/c.1.0.0"])
    lay = result.layout
    view = open_dataarray(
        GrantedStore(provider),
        shape=lay.shape,
        chunks=lay.chunks,
        shards=lay.shards,
        dtype=lay.dtype,
        dims=lay.dims,
    )
    got = (await compute(view)).values
    np.testing.assert_array_equal(got[:4], values[:4])
    assert not got[4:].any()
