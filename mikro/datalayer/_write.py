"""Write a validated image to a granted store as OME-Zarr 0.5: shards in worker threads, with its
metadata; and make its thumbnail.

Shards are encoded here (see `_shard`) and put whole with obstore's sync API, several at once: each
shard is encoded in one ``anyio.to_thread.run_sync`` call and put in another, under the caller's
`CapacityLimiter`, and no more shards are scheduled than the limiter has tokens, so memory stays bounded
(dask inputs are computed one shard region at a time, never as a whole). The metadata documents go up
beside the first shard: nothing reads the store before the server records it, so an image is complete
when it is registered, not when its ``zarr.json`` appears. The thumbnail (a PNG, not stored here: it is
sent with the image's registration) is made as soon as every shard has been read (the projection is then
complete), beside the last shards' uploads. On failure or
cancellation the objects already written are deleted (best effort) and the error propagates; nothing is
registered with the server here.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.abc
import numpy as np

from mikro.datalayer._gc import full_collections_deferred
from mikro.datalayer._layout import (
    ARRAY_PATH,
    DEFAULT_COMPRESSION,
    TARGET_SHARD_BYTES,
    Compression,
    ImageLayout,
    choose_layout,
    group_metadata,
    ome_attributes,
)
from mikro.datalayer._shard import ChunkCodec, encode_shard
from mikro.datalayer._store import GrantedStore
from mikro.datalayer._thumbnail import Thumbnail, make_thumbnail
from mikro.datalayer._validate import PreparedImage

__all__ = ["ProgressCallback", "WriteResult", "write_image"]

log = logging.getLogger(__name__)

#: ``progress(bytes_done, bytes_total)`` in uncompressed bytes, called on the event loop after each shard.
ProgressCallback = Callable[[int, int], None]

#: Longest side of the max projection kept for the thumbnail (it is accumulated while shards are written).
PROJECTION_SIDE = 512
CLEANUP_SECONDS = 10.0


@dataclass(frozen=True)
class WriteResult:
    """What was written: the layout, byte counts, wall time and a (downsampled) max projection."""

    layout: ImageLayout
    bytes_stored: int
    seconds: float
    projection: np.ndarray[Any, Any]
    keys: tuple[str, ...]
    #: The array's ``zarr.json`` as written (the server records shape, dtype and chunks from it).
    array_metadata: bytes
    #: The thumbnail made with ``thumbnail=True`` (None without one); it is not in the store.
    thumbnail: Thumbnail | None = None

    @property
    def nbytes(self) -> int:
        return self.layout.nbytes


class _Projection:
    """Max projection over every axis but y/x, sampled on a grid of step ``step`` (thread-safe)."""

    def __init__(self, layout: ImageLayout) -> None:
        ny, nx = layout.shape[-2:]
        self.step = max(1, math.ceil(max(ny, nx) / PROJECTION_SIDE))
        dtype = layout.dtype
        if dtype.kind == "b":
            low: Any = False
        elif dtype.kind == "f":
            low = -np.inf
        else:
            low = np.iinfo(dtype).min
        self.image = np.full((math.ceil(ny / self.step), math.ceil(nx / self.step)), low, dtype=dtype)
        self._fmax = dtype.kind == "f"
        self._lock = threading.Lock()

    def add(self, block: np.ndarray[Any, Any], region: Sequence[slice]) -> None:
        y0, x0 = region[-2].start, region[-1].start
        oy, ox = (-y0) % self.step, (-x0) % self.step
        sampled = block[..., oy :: self.step, ox :: self.step]
        if sampled.size == 0:
            return
        lead = tuple(range(sampled.ndim - 2))
        part = (np.fmax.reduce if self._fmax else np.maximum.reduce)(sampled, axis=lead) if lead else sampled
        gy, gx = (y0 + oy) // self.step, (x0 + ox) // self.step
        with self._lock:
            view = self.image[gy : gy + part.shape[0], gx : gx + part.shape[1]]
            (np.fmax if self._fmax else np.maximum)(view, part, out=view)


def _encode_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


async def write_image(
    store: GrantedStore,
    image: PreparedImage,
    *,
    name: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    compression: Compression = DEFAULT_COMPRESSION,
    level: int = 1,
    target_shard_bytes: int = TARGET_SHARD_BYTES,
    progress: ProgressCallback | None = None,
    thumbnail: bool = False,
) -> WriteResult:
    """Write ``image`` as an OME-Zarr 0.5 image (group at the store root, array at ``"0"``).

    With ``thumbnail``, a PNG thumbnail of the max projection is made too (in a worker thread, as
    soon as every shard has been read: beside the last shards' uploads rather than after them) and
    returned in the result; it is not written to the store.
    """
    started = time.perf_counter()
    layout = choose_layout(
        image.shape,
        image.dtype,
        image.dims,
        compression=compression,
        level=level,
        target_shard_bytes=target_shard_bytes,
    )
    codec = ChunkCodec.for_layout(layout)
    projection = _Projection(layout)
    limiter = limiter if limiter is not None else anyio.CapacityLimiter(4)
    # One shard per token in flight: more would only queue whole shards in memory.
    slots = anyio.Semaphore(max(1, int(limiter.total_tokens)))
    written: list[str] = []
    counters = {"stored": 0, "done": 0, "projected": 0}
    shard_count = math.prod(layout.shard_grid)
    made: list[Thumbnail] = []

    def encode(position: tuple[int, ...]) -> tuple[memoryview | bytes, int]:
        region = layout.shard_region(position)
        block: Any = image.array[region]
        if image.is_lazy:
            block = block.compute()
        block = np.asarray(block)
        projection.add(block, region)
        return encode_shard(block, layout, codec), block.nbytes

    def make() -> None:
        made.append(make_thumbnail(projection.image))

    async def run_shard(position: tuple[int, ...], tg: anyio.abc.TaskGroup) -> None:
        try:
            key = layout.shard_key(position)
            written.append(key)
            payload, raw = await anyio.to_thread.run_sync(partial(encode, position), limiter=limiter)
            counters["projected"] += 1
            if thumbnail and counters["projected"] == shard_count:
                tg.start_soon(partial(anyio.to_thread.run_sync, make, limiter=limiter))
            await anyio.to_thread.run_sync(store.put, key, payload, limiter=limiter)
            counters["stored"] += len(payload)
            counters["done"] += raw
            if progress is not None:
                progress(counters["done"], layout.nbytes)
        finally:
            slots.release()

    array_doc = _encode_json(layout.array_metadata())
    group_doc = _encode_json(group_metadata(ome_attributes(layout.dims, image.pixel_size, name=name)))

    def write_metadata() -> None:
        store.put(f"{ARRAY_PATH}/zarr.json", array_doc)
        store.put("zarr.json", group_doc)

    try:
        try:
            with full_collections_deferred():
                async with anyio.create_task_group() as tg:
                    # The metadata goes up beside the first shard rather than after the last: nothing
                    # reads the store before the server records it, and an image of one shard then
                    # costs one request's latency instead of three.
                    written.extend([f"{ARRAY_PATH}/zarr.json", "zarr.json"])
                    tg.start_soon(partial(anyio.to_thread.run_sync, write_metadata, limiter=limiter))
                    for position in layout.shard_positions():
                        await slots.acquire()
                        tg.start_soon(run_shard, position, tg)
        except BaseExceptionGroup as group:
            # Callers expect the one mikro error (GrantError, StorageError ...), not a task-group wrapper.
            raise _first_error(group)  # noqa: B904 - the error keeps its own cause
    except BaseException:
        await _cleanup(store, written)
        raise
    return WriteResult(
        layout=layout,
        bytes_stored=counters["stored"],
        seconds=time.perf_counter() - started,
        projection=projection.image,
        keys=tuple(written),
        array_metadata=array_doc,
        thumbnail=made[0] if made else None,
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return group


async def _cleanup(store: GrantedStore, keys: list[str]) -> None:
    """Delete what a failed upload wrote; bounded in time, never raises (the original error matters)."""
    if not keys:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
        try:
            # abandon_on_cancel: an unreachable store must not hold the caller past the deadline.
            await anyio.to_thread.run_sync(store.delete, list(keys), abandon_on_cancel=True)
        except Exception as exc:
            log.warning("could not delete %d objects of a failed upload: %s", len(keys), exc)
