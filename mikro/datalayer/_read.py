"""Lazy reads: an ``xarray.DataArray`` over dask whose tasks fetch only the chunks they touch.

Building the view does no I/O: shape, chunks, shards and dtype come from the server's ``ZarrStore``
record. One dask task reads one inner chunk (dask fuses a later slice into it, so ``rep.data[3, :10]``
decodes only that); the shard index it needs is fetched once per shard and cached. The array's
``zarr.json`` is read once, on first use, to learn the codecs and the chunk keys' separator. How
bytes are fetched and decoded into place is `mikro.datalayer._fetch`.

`compute` reads a whole stored image (``await m.compute(rep.data)``) without dask: worker threads
fetch it shard by shard, one GET each, straight into one preallocated array (in the memory of a result
dropped earlier when there is one: `mikro.datalayer._result_memory`). Through dask that would
be one request per chunk and then a concatenation: a second copy of the whole image, which costs as
much client CPU as the download itself. For any other expression that needs every chunk of an image
(``rep.data.max()``), the chunk tasks share whole shards, one GET each, instead of making a range
request per chunk; a bare dask ``.compute()`` gets that too (`mikro.datalayer._full_reads`), not the
whole-image path.

A bare ``.compute()`` / ``.values`` inside an ``async def`` blocks the event loop for the whole
download: use ``await compute(obj)`` (or ``await m.compute(obj)``), which runs it in a worker thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._fetch import ScratchBuffers, ShardCache, ShardIndexes, ShardRead
from mikro.datalayer._full_reads import (
    READER_ATTRIBUTE,
    install_array_optimize_hook,
    layer_reader,
    readers_read_in_full,
)
from mikro.datalayer._gc import full_collections_deferred
from mikro.datalayer._grant import GrantProvider
from mikro.datalayer._layout import ARRAY_PATH, SPACE_UNIT, TIME_UNIT, shard_key
from mikro.datalayer._readable import chunk_key_separator
from mikro.datalayer._remote import distributed_scheduler_active, rebuild_reader
from mikro.datalayer._result_memory import fault_in, result_array
from mikro.datalayer._shard import ChunkCodec
from mikro.datalayer._store import GrantedStore

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["ShardedArrayReader", "compute", "open_dataarray"]

#: `compute` reads a whole image in blocks of at most this much (a shard, or part of a larger one).
MAX_BLOCK_BYTES = 128 * 2**20
#: Whole shards kept at most for a computation that reads every chunk (`ShardCache`).
SHARD_CACHE_BYTES = 256 * 2**20
#: A plain dask computation noted as reading every chunk stops sharing whole shards after this long
#: without a chunk read (it failed, or was never run).
FULL_READ_IDLE_SECONDS = 2.0
#: Shards fetched at once by `compute` when it reads a whole image (each one GET in a worker thread).
#: Measured on 2 cores against moto: 4 reads as fast as 8, and the event loop's worst heartbeat lag
#: (time spent runnable, waiting for a CPU) drops from a median of 28 ms to 17.
WHOLE_READ_CONCURRENCY = 4


def _layer_reader(layer: Any) -> ShardedArrayReader | None:
    reader = layer_reader(layer)
    return reader if isinstance(reader, ShardedArrayReader) else None


class ShardedArrayReader:
    """Blocking, thread-safe reads of regions of one sharded zarr v3 array on a `GrantedStore`.

    ``reader[...]`` supports integers, slices (any step), integer or boolean index arrays and ``None``,
    like a numpy array, and fetches only the inner chunks the selection's bounding box touches.
    """

    def __init__(
        self,
        store: GrantedStore,
        *,
        shape: Sequence[int],
        chunks: Sequence[int],
        shards: Sequence[int],
        dtype: str | np.dtype[Any],
        array_path: str = ARRAY_PATH,
    ) -> None:
        self.store = store
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(n) for n in chunks)
        self.shards = tuple(int(n) for n in shards)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        if not (len(self.chunks) == len(self.shards) == self.ndim):
            raise StorageError(f"inconsistent zarr metadata: shape {shape}, chunks {chunks}, shards {shards}")
        if any(c <= 0 for c in self.chunks) or any(
            s % c for s, c in zip(self.shards, self.chunks, strict=True)
        ):
            raise StorageError(f"shard shape {shards} is not a multiple of chunk shape {chunks}")
        self.array_path = array_path.strip("/")
        self.chunks_per_shard = tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))
        self._lock = threading.Lock()
        self._metadata_lock = threading.Lock()
        self._codec: ChunkCodec | None = None
        self._separator: str | None = None
        self._scratch: ScratchBuffers | None = None
        self._indexes = ShardIndexes(store, self._shard_key, self.chunks_per_shard)
        self._cache: ShardCache | None = None
        self._reading_everything = 0
        # Chunk reads still expected from computations noted as reading every chunk
        # (`expect_full_read`), how many of them are running, and when the last one came or ended.
        self._full_reads_due = 0
        self._full_reads_running = 0
        self._full_reads_seen = 0.0

    # -- metadata -----------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.array_path}/{name}" if self.array_path else name

    def _shard_key(self, shard: Sequence[int]) -> str:
        # The separator is the stored array's own ("." now, "/" in images mikro wrote earlier): the
        # ``zarr.json`` every reader reads before its first shard says which, at no extra request.
        # Callers read it first (`codec`): here, under `_lock`, reading it could deadlock.
        separator = self._separator
        if separator is None:
            raise RuntimeError("a shard key was asked for before the array's zarr.json was read")
        return shard_key(self.array_path, shard, separator)

    def codec(self) -> ChunkCodec:
        """The array's chunk codec, from its ``zarr.json`` (read once, by the first thread that asks)."""
        with self._lock:
            if self._codec is not None:
                return self._codec
        with self._metadata_lock:
            if self._codec is None:
                raw = self.store.get(self._key("zarr.json"))
                assert raw is not None
                meta = json.loads(raw)
                if tuple(meta.get("shape", ())) != self.shape:
                    raise StorageError(
                        f"the stored array has shape {meta.get('shape')}, the server says {self.shape}"
                    )
                codec = ChunkCodec.from_array_metadata(meta)
                if codec.chunk_shape != self.chunks or np.dtype(meta["data_type"]) != self.dtype:
                    raise StorageError("the stored array's chunks or dtype disagree with the server's record")
                separator = chunk_key_separator(meta)
                with self._lock:
                    self._separator = separator
                    self._scratch = ScratchBuffers(codec)
                    self._codec = codec
            return self._codec

    def block_shape(self) -> tuple[int, ...]:
        """The blocks `compute` reads a whole image in: one shard, split along its outer axes (in whole
        chunks) if very large, so that even a one-shard image is fetched by several threads."""
        task = list(self.shards)
        itemsize = self.dtype.itemsize
        for i in range(self.ndim):
            per = self.chunks_per_shard[i]
            for k in range(per, 0, -1):
                # Divisors of the shard's chunk count along this axis keep every block inside one shard.
                if per % k:
                    continue
                task[i] = k * self.chunks[i]
                if math.prod(task) * itemsize <= MAX_BLOCK_BYTES:
                    break
            if math.prod(task) * itemsize <= MAX_BLOCK_BYTES:
                break
        return tuple(min(t, max(n, 1)) for t, n in zip(task, self.shape, strict=True))

    @property
    def nblocks(self) -> int:
        """How many inner chunks (dask tasks of `open_dataarray`) the array has."""
        return math.prod(math.ceil(n / c) for n, c in zip(self.shape, self.chunks, strict=True))

    def expect_full_read(self) -> None:
        """A computation about to run reads every chunk of this array (a plain dask ``.compute()``, noted
        by `mikro.datalayer._full_reads`): its next `nblocks` chunk reads share whole shards.

        Nothing tells the reader when that computation ends, so the expectation ends by itself: when
        that many reads were made, or when none came for `FULL_READ_IDLE_SECONDS` (a computation that
        failed, or was only optimised). A slice read while it lasts fetches whole shards: more bytes,
        the same values.
        """
        with self._lock:
            if self._reading_everything:
                return  # `compute` holds whole-shard mode around this computation already
            if not self._full_reads_due and not self._full_reads_running:
                # An earlier computation's cache has fetched every shard already: it would fetch
                # nothing ahead for this one.
                self._drop_cache()
            self._full_reads_due += self.nblocks
            self._full_reads_seen = time.monotonic()

    def _cache_for_read(self) -> tuple[ShardCache | None, bool]:
        """The shard cache for the next chunk read (None: read just the chunk), and whether the read is
        one of those `expect_full_read` noted (`_full_read_done` must follow it then)."""
        with self._lock:
            if not self._reading_everything and self._full_reads_due:
                now = time.monotonic()
                # Idle means no such read running either: under load one shard's GET can outlast it.
                if not self._full_reads_running and now - self._full_reads_seen > FULL_READ_IDLE_SECONDS:
                    self._full_reads_due = 0
                else:
                    self._full_reads_due -= 1
                    self._full_reads_running += 1
                    self._full_reads_seen = now
                    if self._cache is None:
                        self._cache = self._prefetching_cache()
                    return self._cache, True
            if not self._reading_everything:
                self._drop_cache()
            return self._cache, False

    def _full_read_done(self) -> None:
        with self._lock:
            self._full_reads_running -= 1
            self._full_reads_seen = time.monotonic()

    def _prefetching_cache(self) -> ShardCache:
        """A cache for a computation that reads every chunk, fetching every shard ahead of its tasks."""
        cache = ShardCache(self._indexes, max_bytes=SHARD_CACHE_BYTES)
        grid = (math.ceil(n / s) for n, s in zip(self.shape, self.shards, strict=True))
        cache.prefetch(
            self.store,
            [(self._shard_key(p), p) for p in np.ndindex(*grid)],
            capacity=math.prod(self.shards) * self.dtype.itemsize + self._indexes.nbytes,
            ahead=WHOLE_READ_CONCURRENCY,
            # Generous: giving up early only costs the fetching ahead, not whole-shard reads.
            idle_seconds=10 * FULL_READ_IDLE_SECONDS,
        )
        return cache

    def _drop_cache(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    @contextlib.contextmanager
    def reading_everything(self) -> Iterator[None]:
        """While inside, chunk reads take whole shards (one GET each) and share them (`ShardCache`).

        For a computation that needs every chunk; `compute` enters it when the graph says so.
        """
        self.codec()  # the shard keys need the stored separator, and the lock below is not reentrant
        with self._lock:
            self._reading_everything += 1
            if self._cache is None:
                self._cache = self._prefetching_cache()
        try:
            yield
        finally:
            with self._lock:
                self._reading_everything -= 1
                if not self._reading_everything and not self._full_reads_due:
                    self._drop_cache()

    # -- reads --------------------------------------------------------------------------------------

    def read_into(self, out: np.ndarray[Any, Any], box: Sequence[slice]) -> None:
        """Write the array inside ``box`` (slices with step 1, within bounds) into ``out`` (box-shaped)."""
        if out.shape != tuple(b.stop - b.start for b in box):
            raise ValueError(f"out has shape {out.shape}, the box {tuple(box)} needs another")
        if out.size == 0:
            return
        self._read(box, out)

    def _read(self, box: Sequence[slice], out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        """The array inside ``box``: written into ``out``, or (``out`` None) a new array, or a view of a
        shared whole shard's bytes when the box lies inside one raw chunk (`ShardRead.shared`)."""
        codec = self.codec()
        scratch = self._scratch
        assert scratch is not None
        cache, noted = self._cache_for_read()
        first = [b.start // s for b, s in zip(box, self.shards, strict=True)]
        last = [math.ceil(b.stop / s) for b, s in zip(box, self.shards, strict=True)]
        try:
            reads = [
                ShardRead(
                    store=self.store,
                    key=self._shard_key(shard),
                    codec=codec,
                    shape=self.shape,
                    chunks=self.chunks,
                    shards=self.shards,
                    position=shard,
                    box=box,
                    indexes=self._indexes,
                    scratch=scratch,
                    cache=cache,
                )
                for shard in (
                    tuple(lo + d for lo, d in zip(first, delta, strict=True))
                    for delta in np.ndindex(*(hi - lo for lo, hi in zip(first, last, strict=True)))
                )
            ]
            if out is None:
                if len(reads) == 1 and (view := reads[0].shared(self.dtype)) is not None:
                    return view
                out = np.empty(tuple(b.stop - b.start for b in box), dtype=self.dtype)
            for read in reads:
                read.run(out)
            return out
        finally:
            if noted:
                self._full_read_done()

    def read_all(self) -> np.ndarray[Any, Any]:
        """The whole array, read as `compute` reads a whole image (shard by shard, a few at once, straight
        into one array) but blocking: for a plain dask ``.compute()`` / ``.values`` of ``rep.data``
        itself (`mikro.datalayer._full_reads`)."""
        self.codec()
        out, new_memory = result_array(self.shape, self.dtype)
        boxes = list(_blocks(self))
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(WHOLE_READ_CONCURRENCY, len(boxes)), thread_name_prefix="mikro-read"
        ) as pool:
            futures = [pool.submit(_read_block, self, out[box], box, new_memory) for box in boxes]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return out

    def chunk_box(self, index: Sequence[int]) -> tuple[slice, ...]:
        """The region of the array that dask chunk ``index`` (one inner chunk) covers."""
        return tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunks, self.shape, strict=True)
        )

    def read_region(self, box: Sequence[slice]) -> np.ndarray[Any, Any]:
        """The array inside ``box`` (slices with step 1, within bounds), as a new array."""
        if any(b.stop <= b.start for b in box):
            return np.empty(tuple(max(b.stop - b.start, 0) for b in box), dtype=self.dtype)
        return self._read(box, None)

    def read_chunk(self, chunk: Sequence[int]) -> np.ndarray[Any, Any] | None:
        """One inner chunk (full chunk shape, fill value past the array's edge), None if never written."""
        self.codec()
        index = self._indexes.get(tuple(c // k for c, k in zip(chunk, self.chunks_per_shard, strict=True)))
        local = tuple(c % k for c, k in zip(chunk, self.chunks_per_shard, strict=True))
        if index is None or index.locate(local) is None:
            return None
        box = tuple(
            slice(c * n, min((c + 1) * n, s)) for c, n, s in zip(chunk, self.chunks, self.shape, strict=True)
        )
        out = np.zeros(self.chunks, dtype=self.dtype)
        self.read_into(out[tuple(slice(0, b.stop - b.start) for b in box)], box)
        return out

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        try:
            box, post = _normalize(key, self.shape)
        except _Unsupported:
            # An index the bounding-box logic does not understand: read everything, let numpy apply it.
            whole: np.ndarray[Any, Any] = self.read_region(tuple(slice(0, n) for n in self.shape))
            return whole[key]  # type: ignore[no-any-return]
        out: np.ndarray[Any, Any] = self.read_region(box)[post]
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        # dask.distributed pickles tasks for worker processes: there, locks and caches are made anew and
        # shared by every task of this array (`mikro.datalayer._remote.rebuild_reader`).
        args = (self.store, self.shape, self.chunks, self.shards, self.dtype, self.array_path)
        return (rebuild_reader, args)

    def __repr__(self) -> str:
        return f"ShardedArrayReader(shape={self.shape}, chunks={self.chunks}, dtype={self.dtype})"


class _Unsupported(Exception):
    """An index `_normalize` cannot turn into a bounding box."""


def _normalize(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[Any, ...]]:
    """Split an index into the bounding box to read and the indexing to apply to that box.

    Integers keep their axis in the box (one element wide) and become 0 in ``post``, so that ``post``
    applied to the box means exactly what ``key`` means for the whole array, fancy indexes included.
    """
    if not isinstance(key, tuple):
        key = (key,)
    real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - real) + key[at + 1 :]
    else:
        key = key + (slice(None),) * (len(shape) - real)
    if real > len(shape):
        raise IndexError(f"too many indices for an array of shape {shape}")
    box: list[slice] = []
    post: list[Any] = []
    axes = iter(shape)
    for k in key:
        if k is None:
            post.append(None)
            continue
        n = next(axes)
        if isinstance(k, int | np.integer):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
            box.append(slice(i, i + 1))
            post.append(0)
        elif isinstance(k, slice):
            r = range(*k.indices(n))
            if len(r) == 0:
                box.append(slice(0, 0))
                post.append(slice(0, 0))
                continue
            lo, hi = min(r[0], r[-1]), max(r[0], r[-1]) + 1
            box.append(slice(lo, hi))
            stop = r.stop - lo
            post.append(slice(r.start - lo, None if stop < 0 else stop, r.step))
        elif isinstance(k, list | np.ndarray):
            idx = np.asarray(k)
            if idx.dtype == bool:
                if idx.ndim != 1 or idx.shape[0] != n:
                    raise _Unsupported
                idx = np.flatnonzero(idx)
            elif not np.issubdtype(idx.dtype, np.integer):
                raise _Unsupported
            idx = np.where(idx < 0, idx + n, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise IndexError(f"an index array is out of bounds for an axis of size {n}")
            lo = int(idx.min()) if idx.size else 0
            box.append(slice(lo, int(idx.max()) + 1 if idx.size else 0))
            post.append(idx - lo)
        else:
            raise _Unsupported
    return tuple(box), tuple(post)


def open_dataarray(
    source: GrantedStore | GrantProvider,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    shards: Sequence[int],
    dtype: str | np.dtype[Any],
    dims: Sequence[str],
    pixel_size: Mapping[str, float | None] | None = None,
    channel_names: Sequence[str | None] | None = None,
    name: str | None = None,
    token: str | None = None,
    array_path: str = ARRAY_PATH,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """A lazy DataArray over a stored image; no I/O happens until something is computed.

    ``token`` names the dask graph (use the store id: a finished store never changes, so equal tokens
    mean equal data). One dask chunk is one inner zarr chunk (at most a few MiB): the temporaries of a
    computation on it stay small enough for malloc to reuse, and numpy holds the GIL only briefly on
    each. A slice fetches only the chunks it touches; the whole image, through `compute`, is fetched
    shard by shard.
    """
    # dask and xarray cost seconds to import: only pay when an image is opened.
    import dask.array as da
    import xarray as xr

    store = source if isinstance(source, GrantedStore) else GrantedStore(source)
    reader = ShardedArrayReader(
        store, shape=shape, chunks=chunks, shards=shards, dtype=dtype, array_path=array_path
    )
    if len(dims) != reader.ndim:
        raise StorageError(f"dims {list(dims)} do not match the stored array's {reader.ndim} axes")
    graph_name = f"mikro-{token}" if token else f"mikro-{id(reader):x}"
    array = da.from_array(  # type: ignore[no-untyped-call]
        reader,
        chunks=reader.chunks,
        name=graph_name,
        meta=np.empty((0,) * reader.ndim, dtype=reader.dtype),
        asarray=False,
        lock=False,
        # fancy=True lets dask's optimizer fuse a later slice into the getter (it skips fancy=False
        # getters), so a task decodes only what is asked; the reader understands fused index arrays.
        fancy=True,
        inline_array=True,
    )
    with contextlib.suppress(AttributeError, KeyError, TypeError):  # without it: no shortcuts, still right
        setattr(array.dask.layers[graph_name], READER_ATTRIBUTE, reader)
    install_array_optimize_hook()
    coords: dict[str, Any] = {}
    for i, d in enumerate(dims):
        size = (pixel_size or {}).get(d)
        if d in ("t", "z", "y", "x") and size:
            unit = TIME_UNIT if d == "t" else SPACE_UNIT
            coords[d] = xr.Variable(d, np.arange(reader.shape[i]) * float(size), attrs={"units": unit})
        elif d == "c" and channel_names and len(channel_names) == reader.shape[i] and all(channel_names):
            coords[d] = [str(c) for c in channel_names]
    return xr.DataArray(array, dims=tuple(dims), coords=coords, name=name, attrs=dict(attrs or {}))


def _whole_image_reader(obj: Any) -> ShardedArrayReader | None:
    """The reader behind ``obj`` if ``obj`` is exactly an `open_dataarray` array (or its dask array)."""
    array = getattr(obj, "data", None) if hasattr(obj, "dims") else obj
    name = getattr(array, "name", None)
    if not isinstance(name, str):
        return None
    layers = getattr(getattr(array, "dask", None), "layers", None)
    # An array derived from ours (sliced, transposed, computed on) has another name and more layers.
    if not isinstance(layers, Mapping) or set(layers) != {name}:
        return None
    reader = _layer_reader(layers[name])
    return reader if reader is not None and getattr(array, "shape", None) == reader.shape else None


def _blocks(reader: ShardedArrayReader) -> Iterator[tuple[slice, ...]]:
    task = reader.block_shape()
    grid = [range(0, n, t) for n, t in zip(reader.shape, task, strict=True)]
    for starts in np.ndindex(*(len(g) for g in grid)):
        yield tuple(
            slice(g[i], min(g[i] + t, n)) for g, i, t, n in zip(grid, starts, task, reader.shape, strict=True)
        )


def _read_block(
    reader: ShardedArrayReader, out: np.ndarray[Any, Any], box: tuple[slice, ...], new_memory: bool
) -> None:
    if new_memory:
        fault_in(out)
    reader.read_into(out, box)


async def _read_whole(
    reader: ShardedArrayReader, limiter: anyio.CapacityLimiter | None
) -> np.ndarray[Any, Any]:
    await anyio.to_thread.run_sync(reader.codec, limiter=limiter)
    # Page faults on fresh memory can cost more than the rest of the read (`_result_memory`): a dropped
    # result's memory is reused, and only new memory is faulted in ahead of the stream.
    out, new_memory = result_array(reader.shape, reader.dtype)
    boxes = iter(list(_blocks(reader)))
    failures: list[Exception] = []

    async def worker() -> None:
        for box in boxes:
            if failures:
                return
            try:
                await anyio.to_thread.run_sync(
                    _read_block, reader, out[box], box, new_memory, limiter=limiter
                )
            except Exception as exc:  # the first failure is raised as is, not in an ExceptionGroup
                failures.append(exc)
                return

    async with anyio.create_task_group() as tg:
        for _ in range(WHOLE_READ_CONCURRENCY):
            tg.start_soon(worker)
    if failures:
        raise failures[0]
    return out


async def compute(obj: Any, *, limiter: anyio.CapacityLimiter | None = None) -> Any:
    """Compute a dask-backed object (DataArray, Dataset, dask array, ...) in a worker thread.

    The event loop keeps running (asyncio or trio) while dask fetches and computes. Cancelling waits for
    the computation already under way to finish (dask cannot be interrupted), then raises.
    Non-lazy objects are returned unchanged. A whole stored image (``rep.data`` itself) is read without
    dask, shard by shard into one array; cancelling that stops after the shards in flight. An expression
    that needs every chunk of a stored image fetches each shard once, shared by the chunk tasks.
    """
    if not hasattr(obj, "compute"):
        return obj
    with full_collections_deferred():
        # With a distributed Client as dask's default scheduler, the cluster reads the whole image too.
        reader = None if distributed_scheduler_active() else _whole_image_reader(obj)
        if reader is not None:
            values = await _read_whole(reader, limiter)
            return obj.copy(deep=False, data=values) if hasattr(obj, "dims") else values
        return await anyio.to_thread.run_sync(_compute_in_thread, obj, limiter=limiter)


def _compute_in_thread(obj: Any) -> Any:
    with contextlib.ExitStack() as stack:
        for reader in _read_in_full(obj):
            stack.enter_context(reader.reading_everything())
        return obj.compute()


def _read_in_full(obj: Any) -> list[ShardedArrayReader]:
    """The `open_dataarray` arrays whose every chunk computing ``obj`` needs (``rep.data.max()``)."""
    try:
        graph = obj.__dask_graph__()
        keys = obj.__dask_keys__()
    except (AttributeError, TypeError):
        return []
    return [r for r in readers_read_in_full(graph, keys) if isinstance(r, ShardedArrayReader)]
