"""Loading many keys of several DataLoaders at once, for a list's relations (see
`prefetch_representations`).

``DataLoader.load`` per key costs a future, a place in a batch, and, once awaited with the rest, a
callback and an event-loop turn each: for a list of 100 images, some 700 keys per request, more than
the statements they add up to. Here each loader's missing keys get their futures in its cache, filled
by one call of its batch function per `BATCH` keys, all in one task; the fields then read the loaders
as before (a future a field finds unfinished or failed sends it the ordinary way: it awaits
``load``, and sees the failure there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from strawberry.dataloader import DataLoader

__all__ = ["BATCH", "load_all", "settled"]

BATCH = 500  # keys per statement: stays below SQLite's bound-parameter limit

_Wanted = Sequence[tuple[DataLoader[int, Any], Collection[int]]]


async def settled(pending: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until all of ``pending`` are done, their failures left to whoever reads them."""
    if all(future.done() for future in pending):
        return
    # Waited on, never awaited directly: a cancelled request (a sibling field failed) must not cancel
    # the loads, and its reads finish before it ends and gives its session back.
    try:
        await asyncio.wait(pending)
    except asyncio.CancelledError:
        await asyncio.wait(pending)
        raise


async def load_all(wanted: _Wanted) -> list[dict[int, asyncio.Future[Any]]]:
    """Per ``(loader, keys)`` of ``wanted``, each key's finished future (its value or its failure)."""
    loop = asyncio.get_running_loop()
    found: list[dict[int, asyncio.Future[Any]]] = []
    jobs: list[tuple[DataLoader[int, Any], list[int], list[asyncio.Future[Any]]]] = []
    pending: list[asyncio.Future[Any]] = []
    for loader, keys in wanted:
        futures: dict[int, asyncio.Future[Any]] = {}
        missing: list[int] = []
        for key in keys:
            if key in futures:
                continue
            future = loader.cache_map.get(key) if loader.cache else None
            if future is None:
                future = futures[key] = loop.create_future()
                missing.append(key)
                if loader.cache:
                    loader.cache_map.set(key, future)
            else:
                futures[key] = future
                if not future.done():
                    pending.append(future)  # loading for a field already
        found.append(futures)
        if missing:
            jobs.append((loader, missing, [futures[key] for key in missing]))
    if jobs:
        pending.append(asyncio.ensure_future(_run(jobs)))
    await settled(pending)
    return found


async def _values(loader: DataLoader[int, Any], keys: list[int]) -> list[Any]:
    values = list(await loader.load_fn(keys))
    if len(values) != len(keys):
        raise RuntimeError(f"{len(keys)} keys loaded as {len(values)} values")
    return values


async def _run(jobs: list[tuple[DataLoader[int, Any], list[int], list[asyncio.Future[Any]]]]) -> None:
    try:
        for loader, keys, futures in jobs:
            for start in range(0, len(keys), BATCH):
                batch = futures[start : start + BATCH]
                try:
                    values = await _values(loader, keys[start : start + BATCH])
                except Exception as exc:
                    for future in batch:
                        future.set_exception(exc)
                else:
                    for future, value in zip(batch, values, strict=True):
                        future.set_result(value)
    finally:
        # Stopped (the server shutting down): nothing may wait for these forever.
        for _, _, futures in jobs:
            for future in futures:
                if not future.done():
                    future.cancel()
