"""Grants that expire during a long upload or read are refreshed; a revoked grant is a GrantError."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import dask.array as da
import numpy as np
import pytest

import mikro
from mikro.datalayer import GrantedStore, compute, open_dataarray, prepare_image, write_image
from tests.datalayer.conftest import CountingProvider


def slow_planes(n: int, delay: float) -> da.Array:
    def make(block: np.ndarray[Any, Any], block_info: Any = None) -> np.ndarray[Any, Any]:
        time.sleep(delay)
        z = block_info[None]["chunk-location"][0]
        return np.full(block.shape, z + 1, dtype=np.uint16)

    # 256 KiB planes: big enough that each plane is its own chunk (and here its own shard).
    return da.zeros((n, 256, 512), dtype=np.uint16, chunks=(1, 256, 512)).map_blocks(make, dtype=np.uint16)


@pytest.mark.anyio
async def test_grant_refreshed_during_long_upload(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider(ttl=0.8)
    store = GrantedStore(provider)
    # One plane per shard, one shard at a time, 0.15 s per plane: the upload outlives several grants.
    image = prepare_image(slow_planes(12, 0.15), dims="zyx")
    result = await write_image(
        store, image, limiter=anyio.CapacityLimiter(1), target_shard_bytes=256 * 512 * 2
    )
    assert result.layout.shards[0] == 1
    assert provider.calls >= 3
    lay = result.layout
    view = open_dataarray(
        store, shape=lay.shape, chunks=lay.chunks, shards=lay.shards, dtype=lay.dtype, dims=lay.dims
    )
    got = (await compute(view)).values
    assert [int(p[0, 0]) for p in got] == list(range(1, 13))


@pytest.mark.anyio
async def test_grant_refreshed_during_long_read(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider()
    values = np.arange(12 * 256 * 512, dtype=np.uint16).reshape(12, 256, 512)
    result = await write_image(GrantedStore(provider), prepare_image(values, dims="zyx"))
    lay = result.layout

    provider.ttl = 0.6
    reader = GrantedStore(provider)
    calls = provider.calls
    view = open_dataarray(
        reader, shape=lay.shape, chunks=lay.chunks, shards=lay.shards, dtype=lay.dtype, dims=lay.dims
    )

    # A long read: one plane at a time, as a viewer scrolling through z would.
    for z in range(lay.shape[0]):
        plane = await compute(view[z])
        np.testing.assert_array_equal(plane.values, values[z])
        await anyio.sleep(0.15)
    assert provider.calls - calls >= 2


@pytest.mark.anyio
async def test_revoked_grant_is_a_grant_error(make_provider: Callable[..., CountingProvider]) -> None:
    provider = make_provider(ttl=0.4)
    store = GrantedStore(provider)
    result = await write_image(store, prepare_image(np.ones((2, 32, 32), dtype=np.uint8), dims="zyx"))
    lay = result.layout
    view = open_dataarray(
        store, shape=lay.shape, chunks=lay.chunks, shards=lay.shards, dtype=lay.dtype, dims=lay.dims
    )
    provider.revoked = True
    await anyio.sleep(0.4)  # let the grant in hand run out
    with pytest.raises(mikro.GrantError, match="revoked"):
        await compute(view[1])
    with pytest.raises(mikro.GrantError):
        await write_image(store, prepare_image(np.ones((32, 32), dtype=np.uint8)))
