"""Loading many keys of several DataLoaders at once, for a list's relations (see
`prefetch_representations`).

``DataLoader.load`` per key costs a future, a place in a batch, and, once awaited with the rest, a
callback and an event-loop turn each: for a list of 100 images, some 700 keys per request, more than
the statements they add up to. Here each loader's missing keys get their futures in its cache, filled
by one call of its batch function per `BATCH` keys, all in one task; the fields then read the loaders
as before (a future a field finds unfinished or failed sends it the ordinary way: it awaits
``load``, and sees the failure there).

The batches of `SqlLoader`s (statements, then a function of their rows) are read together: all the
statements of one `load_all` in one `RowReader.rows` call (on SQLite one trip to a worker thread for
the nine relations of an image, instead of one per statement).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from mikro.server._database import RowReader, Statement

__all__ = ["BATCH", "SqlLoader", "load_all", "settled"]

BATCH = 500  # keys per statement: stays below SQLite's bound-parameter limit

R = TypeVar("R")


class SqlLoader(DataLoader[int, R]):
    """A DataLoader whose batch function is ``statements(keys)``, read by ``reader``, and
    ``finish(keys, rows of each statement)``: `load_all` reads the statements of several together."""

    def __init__(
        self,
        reader: RowReader,
        statements: Callable[[list[int]], list[Statement]],
        finish: Callable[[list[int], list[Sequence[Any]]], list[R]],
        *,
        cache: bool,
    ) -> None:
        self.reader = reader
        self.statements = statements
        self.finish = finish

        async def load(keys: list[int]) -> list[R]:
            return finish(keys, await reader.rows(statements(keys)))

        super().__init__(load_fn=load, cache=cache, max_batch_size=BATCH)


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


def _settle(futures: list[asyncio.Future[Any]], keys: list[int], values: Sequence[Any]) -> None:
    if len(values) != len(keys):
        raise RuntimeError(f"{len(keys)} keys loaded as {len(values)} values")
    for future, value in zip(futures, values, strict=True):
        future.set_result(value)


def _fail(futures: list[asyncio.Future[Any]], exc: Exception) -> None:
    for future in futures:
        future.set_exception(exc)


_Batch = tuple[DataLoader[int, Any], list[int], list[asyncio.Future[Any]]]


async def _read_together(batches: list[_Batch]) -> None:
    """The batches of `SqlLoader`s with one reader: all their statements in one read."""
    first = batches[0][0]
    assert isinstance(first, SqlLoader)
    planned: list[tuple[SqlLoader[Any], list[int], list[asyncio.Future[Any]], slice]] = []
    statements: list[Statement] = []
    try:
        for loader, keys, futures in batches:
            assert isinstance(loader, SqlLoader)
            own = loader.statements(keys)
            planned.append((loader, keys, futures, slice(len(statements), len(statements) + len(own))))
            statements += own
        rows = await first.reader.rows(statements)
    except Exception as exc:
        for _, _, futures in batches:
            _fail(futures, exc)
        return
    for loader, keys, futures, part in planned:
        try:
            _settle(futures, keys, loader.finish(keys, rows[part]))
        except Exception as exc:
            _fail(futures, exc)


async def _run(jobs: list[_Batch]) -> None:
    try:
        batches = [
            (loader, keys[start : start + BATCH], futures[start : start + BATCH])
            for loader, keys, futures in jobs
            for start in range(0, len(keys), BATCH)
        ]
        by_reader: dict[int, list[_Batch]] = {}
        for batch in batches:
            loader, keys, futures = batch
            if isinstance(loader, SqlLoader):
                by_reader.setdefault(id(loader.reader), []).append(batch)
                continue
            try:
                _settle(futures, keys, await loader.load_fn(keys))
            except Exception as exc:
                _fail(futures, exc)
        for together in by_reader.values():
            await _read_together(together)
    finally:
        # Stopped (the server shutting down): nothing may wait for these forever.
        for _, _, futures in jobs:
            for future in futures:
                if not future.done():
                    future.cancel()
