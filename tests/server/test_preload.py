"""`load_all` (mikro/server/_preload.py), which loads a list's relations for all its objects at once:
every key answered by the loader's own batch function, in batches SQLite can bind, into the loader's
cache (what the fields then read), a failing batch failing only its keys, a key another load is
already fetching waited for, not fetched twice."""

from __future__ import annotations

import asyncio

import pytest
from strawberry.dataloader import DataLoader

from mikro.server._preload import BATCH, load_all

pytestmark = [
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.anyio,
    pytest.mark.single_backend(reason="the server's loaders are strawberry DataLoaders, on asyncio"),
]


async def test_every_key_is_loaded_in_batches_into_the_cache() -> None:
    batches: list[list[int]] = []

    async def squares(keys: list[int]) -> list[int]:
        batches.append(keys)
        if 1100 in keys:
            raise LookupError("this batch fails")
        return [k * k for k in keys]

    loader: DataLoader[int, int] = DataLoader(load_fn=squares, max_batch_size=BATCH)
    early = loader.load(7)  # a field's own load, not dispatched yet: waited for, not loaded again
    keys = [*range(1200), 3, 3]
    (found,) = await load_all([(loader, keys)])

    assert sorted(found) == list(range(1200))
    assert [k for batch in batches for k in batch].count(7) == 1
    assert sorted(len(batch) for batch in batches) == [1, 1200 - 1 - 2 * BATCH, BATCH, BATCH]
    assert found[7] is early and await early == 49
    assert found[3].result() == 9 and found[499].result() == 499 * 499
    failed = found[1100].exception()
    assert isinstance(failed, LookupError)
    # Only the failing batch's keys (the last 199) fail.
    assert all(found[k].exception() is failed for k in range(1001, 1200))
    assert found[1000].result() == 1000 * 1000
    # The cache holds them: the fields' loads answer at once, without another batch.
    count = len(batches)
    assert await loader.load(12) == 144 and len(batches) == count
    with pytest.raises(LookupError):
        await loader.load(1100)


async def test_without_a_cache_each_call_loads() -> None:
    calls: list[list[int]] = []

    async def echo(keys: list[int]) -> list[int]:
        calls.append(keys)
        await asyncio.sleep(0)
        return keys

    loader: DataLoader[int, int] = DataLoader(load_fn=echo, cache=False)
    for _ in range(2):
        (found,) = await load_all([(loader, [1, 2, 2])])
        assert {k: f.result() for k, f in found.items()} == {1: 1, 2: 2}
    assert calls == [[1, 2], [1, 2]]
