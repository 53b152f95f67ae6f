"""``rep.data`` computed on a dask.distributed cluster of spawned worker processes.

The cluster's workers are separate processes: they get ``rep.data``'s tasks pickled, read the chunks
themselves (folder store, or moto's S3 with STS credentials) and ask the real server for a fresh read
grant when the one they hold runs out. One small cluster serves the whole module (its startup costs
seconds); its Client is dask's default scheduler meanwhile, as ``Client(cluster)`` makes it in a
user's script, and the threaded scheduler is selected explicitly where a test compares against it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import dask
import numpy as np
import pytest
from distributed import Client

import mikro
from tests.fixtures_cluster import worker_store_count
from tests.fixtures_servers import MikroServer, unique

SHAPE = (6, 512, 512)  # six one-plane chunks in one shard: six read tasks


pytestmark = pytest.mark.usefixtures("no_ambient_config")


@pytest.fixture
async def m(server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = server.add_user("cluster")
    async with mikro.connect(server.url, token=token, timeout=30) as session:
        yield session


def stack(seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 60000, SHAPE).astype(np.uint16)


@pytest.mark.anyio
async def test_slice_reduction_and_whole_image_compute_on_the_cluster(
    m: mikro.Mikro, default_cluster: Client
) -> None:
    values = stack()
    rep = await m.create_representation(values, name=unique("cluster"), dims="zyx", thumbnail=False)
    view = (await m.get_representation(rep.id)).data
    assert view.dims == ("z", "y", "x")

    exprs = {
        "slice": (view[2, 100:300, 50:450], values[2, 100:300, 50:450]),
        "reduction": (view.astype("float64").mean(dim="z"), values.astype("float64").mean(axis=0)),
        "max": (view.max(), values.max()),
        "whole": (view, values),
    }
    on_cluster: dict[str, Any] = {}
    for label, (expr, expected) in exprs.items():
        before = worker_store_count(default_cluster, "gets")
        on_cluster[label] = await m.compute(expr)
        np.testing.assert_array_equal(np.asarray(on_cluster[label]), expected, err_msg=label)
        # The worker process read the chunks, also for the whole image (no local shortcut).
        reads = worker_store_count(default_cluster, "gets") - before
        assert reads > 0, label
        if label == "max":
            # Every task arrives with its own copy of the reader; in the worker they are one again, so
            # the array's metadata and shard index are not fetched again per task: one GET per chunk.
            assert reads <= SHAPE[0], reads
    assert on_cluster["whole"].dims == ("z", "y", "x")

    # The threaded scheduler (in this process) computes the same results.
    with dask.config.set(scheduler="threads"):
        for label, (expr, _) in exprs.items():
            local = await m.compute(expr)
            np.testing.assert_array_equal(np.asarray(local), np.asarray(on_cluster[label]), err_msg=label)


@pytest.mark.anyio
async def test_worker_refreshes_an_expiring_grant_and_reports_a_failed_refresh(
    short_grant_server: MikroServer, default_cluster: Client
) -> None:
    server = short_grant_server
    token = server.add_user("patient")
    async with mikro.connect(server.url, token=token, timeout=5, retries=0) as m:
        values = stack(1)
        rep = await m.create_representation(values, name=unique("slow"), dims="zyx", thumbnail=False)
        before = server.grants(rep.store.id)
        view = rep.data

        def slowly(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            time.sleep(0.4)  # six of these in one worker thread: the reads outlive a 1 s grant
            return block

        slow = view.data.map_blocks(slowly, dtype=view.dtype)
        total = await m.compute(slow.astype("int64").sum())
        assert int(total) == int(values.astype("int64").sum())
        # Only the worker read (this process never did): its first grant and its refreshes.
        assert server.grants(rep.store.id) - before >= 2

        # The image is deleted while the worker still holds a grant to it: once that grant runs out,
        # the refresh is refused and the computation fails with a GrantError, not a hang.
        await m.delete_representation(rep.id)
        await anyio.sleep(1.2)
        with pytest.raises(mikro.GrantError, match=f"could not get a read grant for store {rep.store.id}"):
            await m.compute(view.max())
