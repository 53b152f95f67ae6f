"""Lazy reads: an ``xarray.DataArray`` over dask whose tasks fetch only the chunks they touch.

Building the view does no I/O: shape, chunks, shards and dtype come from the server's ``ZarrStore``
record. Each dask task (one inner chunk) runs in whatever thread dask uses and fetches, with obstore's
sync API, the shard index (once per shard, cached) and the chunk's byte range inside the shard. The
array's ``zarr.json`` is read once, on first use, to learn the codecs.

A bare ``.compute()`` / ``.values`` inside an ``async def`` blocks the event loop for the whole
download: use ``await compute(obj)`` (or ``await m.compute(obj)``), which runs it in a worker thread.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._gc import full_collections_deferred
from mikro.datalayer._grant import GrantProvider
from mikro.datalayer._layout import ARRAY_PATH, SPACE_UNIT, TIME_UNIT
from mikro.datalayer._shard import ChunkCodec, ShardIndex
from mikro.datalayer._store import GrantedStore

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["ShardedArrayReader", "compute", "open_dataarray"]

#: Shard indexes kept per reader (each is 16 bytes per chunk of the shard).
INDEX_CACHE_ENTRIES = 4096


class ShardedArrayReader:
    """Blocking, thread-safe reads of regions of one sharded zarr v3 array on a `GrantedStore`.

    ``reader[...]`` supports integers and slices (any step), like a numpy array, and fetches only the
    inner chunks the selection touches.
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
        if any(s % c for s, c in zip(self.shards, self.chunks, strict=True)):
            raise StorageError(f"shard shape {shards} is not a multiple of chunk shape {chunks}")
        self.array_path = array_path.strip("/")
        self.chunks_per_shard = tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))
        self._lock = threading.Lock()
        self._codec: ChunkCodec | None = None
        self._indexes: OrderedDict[tuple[int, ...], ShardIndex | None] = OrderedDict()

    # -- metadata -----------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.array_path}/{name}" if self.array_path else name

    def codec(self) -> ChunkCodec:
        with self._lock:
            if self._codec is not None:
                return self._codec
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
        with self._lock:
            self._codec = codec
        return codec

    def _shard_index(self, shard: tuple[int, ...]) -> ShardIndex | None:
        with self._lock:
            if shard in self._indexes:
                self._indexes.move_to_end(shard)
                return self._indexes[shard]
        key = self._key("c/" + "/".join(map(str, shard)))
        raw = self.store.get_suffix(key, ShardIndex.nbytes(self.chunks_per_shard), missing_ok=True)
        index = ShardIndex.decode(raw, self.chunks_per_shard) if raw is not None else None
        with self._lock:
            self._indexes[shard] = index
            while len(self._indexes) > INDEX_CACHE_ENTRIES:
                self._indexes.popitem(last=False)
        return index

    # -- reads --------------------------------------------------------------------------------------

    def read_chunk(self, chunk: Sequence[int]) -> np.ndarray[Any, Any] | None:
        """One inner chunk (full chunk shape), or None if it was never written (fill value)."""
        codec = self.codec()
        shard = tuple(c // k for c, k in zip(chunk, self.chunks_per_shard, strict=True))
        index = self._shard_index(shard)
        if index is None:
            return None
        where = index.locate(tuple(c % k for c, k in zip(chunk, self.chunks_per_shard, strict=True)))
        if where is None:
            return None
        offset, length = where
        key = self._key("c/" + "/".join(map(str, shard)))
        raw = self.store.get_range(key, offset, offset + length)
        assert raw is not None
        return codec.decode(raw)

    def read_region(self, box: Sequence[slice]) -> np.ndarray[Any, Any]:
        """The array inside ``box`` (slices with step 1, within bounds)."""
        shape = tuple(b.stop - b.start for b in box)
        if shape == self.chunks and all(b.start % c == 0 for b, c in zip(box, self.chunks, strict=True)):
            # One whole chunk (what every dask task of `open_dataarray` asks for): no assembly copy.
            whole = self.read_chunk(tuple(b.start // c for b, c in zip(box, self.chunks, strict=True)))
            return whole if whole is not None else np.zeros(shape, dtype=self.dtype)
        out = np.zeros(shape, dtype=self.dtype)
        if out.size == 0:
            return out
        ranges = [range(b.start // c, math.ceil(b.stop / c)) for b, c in zip(box, self.chunks, strict=True)]
        for chunk in np.ndindex(*(len(r) for r in ranges)):
            pos = tuple(r[i] for r, i in zip(ranges, chunk, strict=True))
            data = self.read_chunk(pos)
            if data is None:
                continue
            src, dst = [], []
            for p, c, b in zip(pos, self.chunks, box, strict=True):
                lo, hi = max(p * c, b.start), min((p + 1) * c, b.stop)
                src.append(slice(lo - p * c, hi - p * c))
                dst.append(slice(lo - b.start, hi - b.start))
            out[tuple(dst)] = data[tuple(src)]
        return out

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        box, post = _normalize(key, self.shape)
        out: np.ndarray[Any, Any] = self.read_region(box)[post]
        return out

    def __repr__(self) -> str:
        return f"ShardedArrayReader(shape={self.shape}, chunks={self.chunks}, dtype={self.dtype})"


def _normalize(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[Any, ...]]:
    """Split a basic index into the bounding box to read and the indexing to apply to that box."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(key) + 1)
        key = key[:at] + fill + key[at + 1 :]
    key = key + (slice(None),) * (len(shape) - len(key))
    if len(key) != len(shape):
        raise IndexError(f"too many indices for an array of shape {shape}")
    box: list[slice] = []
    post: list[Any] = []
    for k, n in zip(key, shape, strict=True):
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
        else:
            raise TypeError(f"mikro's lazy arrays take integers and slices, not {type(k).__name__}")
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
    mean equal data). One dask chunk is one inner zarr chunk, so a slice fetches only what it touches.
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
        fancy=False,
        inline_array=True,
    )
    coords: dict[str, Any] = {}
    for i, d in enumerate(dims):
        size = (pixel_size or {}).get(d)
        if d in ("t", "z", "y", "x") and size:
            unit = TIME_UNIT if d == "t" else SPACE_UNIT
            coords[d] = xr.Variable(d, np.arange(reader.shape[i]) * float(size), attrs={"units": unit})
        elif d == "c" and channel_names and len(channel_names) == reader.shape[i] and all(channel_names):
            coords[d] = [str(c) for c in channel_names]
    return xr.DataArray(array, dims=tuple(dims), coords=coords, name=name, attrs=dict(attrs or {}))


async def compute(obj: Any, *, limiter: anyio.CapacityLimiter | None = None) -> Any:
    """Compute a dask-backed object (DataArray, Dataset, dask array, ...) in a worker thread.

    The event loop keeps running (asyncio or trio) while dask fetches and computes. Cancelling waits for
    the computation already under way to finish (dask cannot be interrupted), then raises.
    Non-lazy objects are returned unchanged.
    """
    if not hasattr(obj, "compute"):
        return obj
    with full_collections_deferred():
        return await anyio.to_thread.run_sync(obj.compute, limiter=limiter)
