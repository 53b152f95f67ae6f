"""An upload cancelled halfway stops scheduling shards, waits for those in flight, and leaves nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import dask.array as da
import numpy as np
import pytest

import mikro
from mikro.datalayer import GrantedStore, prepare_image, write_image
from tests.datalayer.conftest import CountingProvider

PLANE = (256, 512)  # 256 KiB of uint16: one plane per chunk and, below, per shard


def counted_planes(n: int, delay: float, started: list[int], lock: threading.Lock) -> da.Array:
    def make(block: np.ndarray[Any, Any], block_info: Any = None) -> np.ndarray[Any, Any]:
        with lock:
            started.append(block_info[None]["chunk-location"][0])
        time.sleep(delay)
        return np.ones(block.shape, dtype=np.uint16)

    return da.zeros((n, *PLANE), dtype=np.uint16, chunks=(1, *PLANE)).map_blocks(make, dtype=np.uint16)


@pytest.mark.anyio
async def test_cancelled_upload_stops_and_cleans_up(make_provider: Callable[..., CountingProvider]) -> None:
    store = GrantedStore(make_provider())
    started: list[int] = []
    image = prepare_image(counted_planes(40, 0.05, started, threading.Lock()), dims="zyx")
    raised: list[BaseException] = []

    with anyio.CancelScope() as scope:

        def progress(done: int, total: int) -> None:
            if done >= total // 4:
                scope.cancel()

        try:
            await write_image(
                store,
                image,
                limiter=anyio.CapacityLimiter(2),
                target_shard_bytes=PLANE[0] * PLANE[1] * 2,
                progress=progress,
            )
        except anyio.get_cancelled_exc_class() as exc:
            raised.append(exc)
            raise

    assert scope.cancelled_caught and raised, "the upload must raise the backend's Cancelled"
    assert len(started) < 40, "shards kept being scheduled after the cancel"
    assert store.list_keys() == [], "a cancelled upload must not leave objects (nor any zarr.json)"


@pytest.mark.anyio
async def test_failed_upload_leaves_no_metadata(make_provider: Callable[..., CountingProvider]) -> None:
    """A shard that fails (here: the source raises) aborts the upload; no zarr.json marks it complete."""
    store = GrantedStore(make_provider())

    def explode(block: np.ndarray[Any, Any], block_info: Any = None) -> np.ndarray[Any, Any]:
        if block_info[None]["chunk-location"][0] == 5:
            raise mikro.StorageError("camera unplugged")
        return block

    source = da.zeros((8, *PLANE), dtype=np.uint16, chunks=(1, *PLANE)).map_blocks(explode, dtype=np.uint16)
    with pytest.raises(mikro.StorageError, match="camera unplugged"):
        await write_image(
            store, prepare_image(source, dims="zyx"), target_shard_bytes=PLANE[0] * PLANE[1] * 2
        )
    assert not [k for k in store.list_keys() if k.endswith("zarr.json")]
