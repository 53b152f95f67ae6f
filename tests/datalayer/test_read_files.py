"""A folder store's shards are read as files (``preadv`` into place): damage is an error, never wrong pixels;
and the shards a computation reads ahead of its tasks leave no threads behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from mikro.datalayer import GrantedStore, _read, compute
from mikro.datalayer._shard import ShardIndex
from tests.datalayer.conftest import CountingProvider
from tests.datalayer.test_read_fast import SHAPE, open_view, put_image, values_for


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
@pytest.mark.parametrize("compression", [None, "blosc-lz4"])
async def test_a_shard_file_cut_short_is_a_storage_error(
    make_provider: Callable[..., CountingProvider], compression: Any
) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression=compression)
    view = open_view(GrantedStore(provider), layout)
    np.testing.assert_array_equal((await compute(view)).values, values)

    # Chunks lost from the middle of a shard, its index (at the end) kept: it points past the end now.
    shard = Path(provider.issued[0].path) / layout.shard_key((1, 1, 1))
    data = shard.read_bytes()
    shard.write_bytes(data[:100] + data[-ShardIndex.nbytes(layout.chunks_per_shard) :])
    view = open_view(GrantedStore(provider), layout)
    with pytest.raises(mikro.StorageError, match="past its end"):
        await compute(view)
    with pytest.raises(mikro.StorageError, match="past its end"):
        await anyio.to_thread.run_sync(lambda: view.values)
    # A shard that is gone reads as the fill value, as zarr reads it.
    shard.unlink()
    got = (await compute(open_view(GrantedStore(provider), layout))).values
    np.testing.assert_array_equal(got[:4, :32, :64], values[:4, :32, :64])
    assert not got[4:, 32:, 64:].any()


def _prefetching() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mikro-prefetch"]


async def _until_prefetch_ends() -> None:
    with anyio.fail_after(30):
        while _prefetching():  # plain threads: nothing to await on
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_reading_ahead_leaves_no_threads(
    make_provider: Callable[..., CountingProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards fetched ahead of a full computation's tasks: every one once, and the threads that fetch
    them end with the computation, or soon after it failed."""
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, compression="zstd")
    store = GrantedStore(provider)
    view = open_view(store, layout)

    total = await anyio.to_thread.run_sync(lambda: (view.astype("int64") + 1).sum().compute())
    assert int(total) == int(values.astype("int64").sum()) + values.size
    assert store.stats.snapshot()["gets"] == 1 + 8  # zarr.json, then each of the 8 shards once
    await _until_prefetch_ends()

    monkeypatch.setattr(_read, "FULL_READ_IDLE_SECONDS", 0.1)

    def fail(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise RuntimeError("a user's function failed")

    failing = open_view(GrantedStore(provider), layout).data.map_blocks(fail, dtype="uint16").sum()
    with pytest.raises(RuntimeError, match="a user's function failed"):
        await anyio.to_thread.run_sync(lambda: failing.compute(scheduler="sync"))
    await _until_prefetch_ends()
