"""A script's plain dask reduction over a stored image (``rep.data.max().compute()``) gets its shards
fetched ahead of its tasks by mikro's threads, in the order the tasks want them, each shard once; and so
does the next such computation on the same view."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest

from mikro.datalayer import GrantedStore, _fetch
from tests.datalayer.conftest import CountingProvider
from tests.datalayer.test_read_fast import open_view, put_image, values_for
from tests.datalayer.test_read_files import _until_prefetch_ends

SHAPE = (32, 40, 60)
CHUNKS = (1, 16, 32)
SHARDS = (4, 48, 64)  # one shard per 4 planes: 8 shards in a row along z


@pytest.mark.anyio
async def test_a_plain_reduction_reads_its_shards_ahead_every_time(
    make_provider: Callable[..., CountingProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make_provider()
    values = values_for(SHAPE)
    layout = put_image(GrantedStore(provider), values, chunks=CHUNKS, shards=SHARDS)
    view = open_view(GrantedStore(provider), layout)

    fetched: list[tuple[str, str]] = []
    ahead_started = threading.Event()
    real = _fetch.fetch_object

    def watched(store: GrantedStore, key: str, capacity: int) -> Any:
        name = threading.current_thread().name
        fetched.append((name, key))
        if name == "mikro-prefetch":
            ahead_started.set()
        else:
            # A task fetching a shard itself lets the threads that read ahead start first (if there
            # are any), so that which thread fetched what does not depend on the machine's load.
            ahead_started.wait(timeout=10)
        return real(store, key, capacity)

    monkeypatch.setattr(_fetch, "fetch_object", watched)
    for _ in range(2):
        fetched.clear()
        ahead_started.clear()
        # dask's own (synchronous) scheduler, as a script's .compute() runs it: no m.compute.
        got = await anyio.to_thread.run_sync(lambda: view.max().compute(scheduler="sync"))
        assert int(got) == int(values.max())
        keys = [key for _, key in fetched]
        assert sorted(keys) == sorted(layout.shard_key(p) for p in layout.shard_positions())
        assert any(name == "mikro-prefetch" for name, _ in fetched), fetched
        await _until_prefetch_ends()
    np.testing.assert_array_equal(view.values, values)
    # Every chunk of a raw image handed to the tasks straight from its shard's bytes, edge chunks too.
    summed = await anyio.to_thread.run_sync(lambda: (view.astype("int64") + 1).compute().values)
    np.testing.assert_array_equal(summed, values.astype("int64") + 1)
