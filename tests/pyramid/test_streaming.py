"""A dask image larger than the memory an upload may use gets its pyramid without being held whole."""

from __future__ import annotations

import datetime as dt
import math
import tracemalloc
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest

from mikro.datalayer import GrantedStore, StorageGrant, open_dataarray, prepare_image, write_image
from mikro.datalayer._layout import choose_layout
from mikro.datalayer._pyramid import PyramidBuilder, plan_levels
from tests.pyramid._reference import mean_2x

pytestmark = pytest.mark.anyio

MiB = 2**20


@pytest.fixture
def store(tmp_path: Path) -> GrantedStore:
    """A folder store (the memory bound is the client's: the store kind does not change it)."""
    grant = StorageGrant(
        store_id="streamed",
        kind="file",
        bucket="",
        prefix="image.zarr",
        path=str(tmp_path / "image.zarr"),
        write=True,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    return GrantedStore(lambda: grant, grant=grant)


def _plane(block: np.ndarray[Any, Any], block_info: dict[Any, Any] | None = None) -> np.ndarray[Any, Any]:
    # Pixels from their position: any block can be recomputed for the reference, none is stored.
    assert block_info is not None
    (z0, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    # uint16 arithmetic wraps modulo 2**16, a multiple of 4096: the result is exact without wide temporaries.
    y = np.arange(y0, y1, dtype=np.uint16)[:, None] * np.uint16(7)
    x = np.arange(x0, x1, dtype=np.uint16)[None, :] * np.uint16(3) + np.uint16(z0 * 1000)
    return ((y + x) & np.uint16(4095))[None]


@pytest.mark.slow
async def test_dask_input_builds_its_pyramid_in_bounded_memory(store: GrantedStore) -> None:
    shape = (3, 4096, 4096)  # 96 MiB of uint16, never materialised by the upload
    lazy = da.zeros(shape, dtype=np.uint16, chunks=(1, 1024, 1024)).map_blocks(_plane, dtype=np.uint16)
    image = prepare_image(lazy, dims="zyx")
    tracemalloc.start()
    try:
        result = await write_image(store, image, pyramid="auto", target_shard_bytes=2 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [layout.shape for layout in result.levels] == [shape, (3, 2048, 2048), (3, 1024, 1024)]
    assert peak < 40 * MiB, f"peak {peak / MiB:.0f} MiB for a {image.nbytes / MiB:.0f} MiB image"

    coarsest = result.levels[-1]
    level = open_dataarray(
        store,
        shape=coarsest.shape,
        chunks=coarsest.chunks,
        shards=coarsest.shards,
        dtype=coarsest.dtype,
        dims=coarsest.dims,
        array_path=coarsest.path,
    )
    np.testing.assert_array_equal(level.values, mean_2x(mean_2x(lazy.compute())))


def test_open_shards_stay_few() -> None:
    """The shards of coarser levels waiting for blocks are bounded by a row of the level above."""
    base = choose_layout((4, 4096, 6144), np.dtype(np.uint16), ("z", "y", "x"), target_shard_bytes=2 * MiB)
    layouts, factors = plan_levels(base, {}, "auto", target_shard_bytes=2 * MiB)
    builder = PyramidBuilder(layouts, factors, "mean")
    most = 0
    for position in base.shard_positions():
        region = base.shard_region(position)
        block = np.ones(tuple(r.stop - r.start for r in region), dtype=np.uint16)
        builder.add(0, region, block)
        most = max(most, builder.open_bytes)
    assert builder.open_bytes == 0  # every shard of every level was completed
    # At most one row of shards (along x) open per coarser level: 11.5 MiB here, for a 192 MiB image.
    row = sum(math.prod(lay.shards) * lay.dtype.itemsize * lay.shard_grid[-1] for lay in layouts[1:])
    assert most <= row < base.nbytes / 10
