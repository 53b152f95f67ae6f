"""Fetch the inner chunks of one shard with as few requests as possible, and decode them into place.

A read that needs every chunk of a shard (a whole-image read, a block of one) fetches the shard with
ONE GET. A read that needs only some chunks (one plane) fetches the shard index (cached per reader),
then just the byte ranges of those chunks, neighbours merged into one request; if that would be most of
the shard anyway, it streams the whole shard instead. Dask tasks of one chunk each, computing something
that needs every chunk (``rep.data.max()``), share whole shards through a `ShardCache`. (moto serves
any range of a large object, even its 260-byte index, for nearly the CPU of the whole object, and real
S3 charges per request.)

A whole shard of raw chunks is streamed in pieces of a few hundred KiB (reused heap memory, never a
buffer of the whole shard that must be page-faulted in) and each piece's bytes are copied straight to
their place in the output, a few block copies per piece. Where they belong comes from the shard index
when the reader has it; otherwise from the layout mikro's writer produces (chunks back to back in C
order), checked against the index at the end of the same stream, and any chunk that is elsewhere is
fetched again from where the index says (after one such miss the reader stops guessing). A compressed
shard whose index is not known yet, and a shard the chunk tasks share, is streamed into one buffer, index
included: memory an earlier shard released (`fetch_object`), not new memory to fault in. Compressed
chunks are decoded into the output, through a scratch chunk of the reader's (one per thread) when their
place there is not contiguous.

Every numpy copy is at most a chunk or a piece, so a worker thread never holds the GIL for long (numpy
copies hold it, and the event loop waits for it).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._file_reads import LocalFile
from mikro.datalayer._result_memory import fault_in, result_array
from mikro.datalayer._shard import EMPTY, ChunkCodec, ShardIndex
from mikro.datalayer._store import GrantedStore

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "PIECE_BYTES",
    "WHOLE_SHARD_FRACTION",
    "ScratchBuffers",
    "ShardCache",
    "ShardIndexes",
    "ShardRead",
    "coalesce",
    "copy_flat",
    "fetch_object",
]

#: A partial read that needs more than this share of a shard's stored bytes streams the whole shard.
WHOLE_SHARD_FRACTION = 0.5
#: Ranges this close are fetched as one request (the bytes between them are read and dropped).
MERGE_GAP_BYTES = 64 * 2**10
#: Size of the pieces a streamed shard arrives in (measured: 512 KiB costs the least CPU per GiB).
PIECE_BYTES = 512 * 2**10
#: Shard indexes kept per reader (each is 16 bytes per chunk of the shard).
INDEX_CACHE_ENTRIES = 4096
#: Locks that make concurrent first reads of one shard fetch its index once (shards hash onto them).
FETCH_LOCKS = 64

Position = tuple[int, ...]
#: `ShardCache` prefetching has nothing to fetch until a task asked for a shard.
_NOT_YET = object()
#: (offset, length, chunk position inside the shard)
Placement = tuple[int, int, Position]


def coalesce(spans: Sequence[tuple[int, int]], max_gap: int = MERGE_GAP_BYTES) -> list[tuple[int, int]]:
    """Merge ``(start, end)`` byte ranges whose gaps are at most ``max_gap`` (sorted, non-overlapping out)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= max_gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def copy_flat(dst: np.ndarray[Any, Any], src: np.ndarray[Any, Any], start: int) -> None:
    """``dst.flat[start : start + src.size] = src`` for a strided ``dst``, in a few block copies."""
    if dst.ndim == 1:
        dst[start : start + src.size] = src
        return
    inner = math.prod(dst.shape[1:])
    stop = start + src.size
    first, last = start // inner, stop // inner
    if first == last:
        copy_flat(dst[first], src, start - first * inner)
        return
    done = 0
    if start % inner:
        done = inner - start % inner
        copy_flat(dst[first], src[:done], start % inner)
        first += 1
    if last > first:
        n = (last - first) * inner
        dst[first:last] = src[done : done + n].reshape((last - first, *dst.shape[1:]))
        done += n
    if stop % inner:
        copy_flat(dst[last], src[done:], 0)


class ScratchBuffers:
    """A reader's reusable buffers, one set per worker thread: a decoded chunk, and the bytes of a chunk
    gathered from pieces. Decoding into fresh memory would page-fault every time."""

    def __init__(self, codec: ChunkCodec) -> None:
        self._codec = codec
        self._chunk_bytes = math.prod(codec.chunk_shape) * codec.dtype.itemsize
        self._local = threading.local()

    def chunk(self) -> np.ndarray[Any, Any]:
        buf: np.ndarray[Any, Any] | None = getattr(self._local, "chunk", None)
        if buf is None:
            buf = self._local.chunk = np.empty(self._codec.chunk_shape, dtype=self._codec.dtype)
        return buf

    def gather(self, nbytes: int) -> memoryview:
        buf: bytearray | None = getattr(self._local, "gather", None)
        if buf is None or len(buf) < nbytes:
            # A compressed chunk is rarely larger than the raw one: sized for that, it is made once.
            buf = self._local.gather = bytearray(max(nbytes, self._chunk_bytes + _GATHER_SLACK))
        return memoryview(buf)[:nbytes]


#: Room beyond a raw chunk's size in the gather buffer (codec headers of a chunk that did not shrink).
_GATHER_SLACK = 4096


class ShardIndexes:
    """The shard indexes of one array seen so far (LRU), fetched on demand; thread-safe.

    Also remembers whether this array's shards follow mikro's layout (raw chunks back to back in C
    order): once one did not, whole-shard reads stop guessing and fetch a shard into one buffer.
    """

    def __init__(
        self, store: GrantedStore, key: Callable[[Position], str], chunks_per_shard: Position
    ) -> None:
        self._store = store
        self._key = key
        self.chunks_per_shard = chunks_per_shard
        self.nbytes = ShardIndex.nbytes(chunks_per_shard)
        self._lock = threading.Lock()
        self._known: OrderedDict[Position, ShardIndex | None] = OrderedDict()
        self._fetching = [threading.Lock() for _ in range(FETCH_LOCKS)]
        self.layout_guess_works = True

    def cached(self, shard: Position) -> tuple[bool, ShardIndex | None]:
        """``(True, index)`` if this shard's index is known (``None``: the shard does not exist)."""
        with self._lock:
            if shard in self._known:
                self._known.move_to_end(shard)
                return True, self._known[shard]
        return False, None

    def get(self, shard: Position) -> ShardIndex | None:
        """The shard's index (one suffix request unless cached), None if the shard does not exist."""
        known, index = self.cached(shard)
        if known:
            return index
        # The dask tasks of one shard's chunks run together: one of them fetches, the others wait.
        with self._fetching[hash(shard) % len(self._fetching)]:
            known, index = self.cached(shard)
            if known:
                return index
            raw = self._store.get_suffix(self._key(shard), self.nbytes, missing_ok=True)
            index = self.decode(raw) if raw is not None else None
            self.remember(shard, index)
            return index

    def decode(self, raw: bytes) -> ShardIndex:
        return ShardIndex.decode(raw, self.chunks_per_shard)

    def from_shard(self, key: str, shard: Buffer) -> ShardIndex:
        """The index at the end of a whole shard's bytes."""
        view = memoryview(shard)
        if view.nbytes < self.nbytes:
            raise StorageError(f"shard {key!r} is shorter than its index")
        return self.decode(bytes(view[view.nbytes - self.nbytes :]))

    def remember(self, shard: Position, index: ShardIndex | None) -> None:
        with self._lock:
            self._known[shard] = index
            self._known.move_to_end(shard)
            while len(self._known) > INDEX_CACHE_ENTRIES:
                self._known.popitem(last=False)


class _Collect:
    """Takes a streamed object piece by piece into reusable memory of its expected size (or grows)."""

    def __init__(self, capacity: int) -> None:
        self.buffer: np.ndarray[Any, Any] | None
        self.buffer, self.new = result_array((capacity,), np.uint8)
        self.spill: bytearray | None = None
        self.size = 0

    def __call__(self, piece: bytes) -> None:
        n = len(piece)
        if self.buffer is not None and self.size + n <= self.buffer.size:
            self.buffer[self.size : self.size + n] = np.frombuffer(piece, dtype=np.uint8)
        else:
            if self.spill is None:
                assert self.buffer is not None
                self.spill = bytearray(self.buffer[: self.size])
                self.buffer = None
            self.spill += piece
        self.size += n

    def data(self) -> memoryview:
        if self.buffer is not None:
            return self.buffer[: self.size].data
        assert self.spill is not None
        return memoryview(self.spill)


def fetch_object(store: GrantedStore, key: str, capacity: int) -> memoryview | None:
    """A whole object in one GET, None if it does not exist.

    Streamed into memory sized ``capacity`` that earlier shards released (`result_array`) instead of
    obstore's buffer of the whole object: that is new memory every time, and page-faulting tens of MiB
    in cost more CPU than the download (measured: ``rep.data.max()`` 1.6 CPU-s per GiB that way).
    """
    if store.reads_files():
        # A file is read into memory of its size at once: no stream of pieces, no guessing the size.
        return store.read_file(key, _whole_file, missing_ok=True)
    sink = _Collect(capacity)
    assert sink.buffer is not None
    # New memory is not faulted in page by page inside the GIL-holding copies of the pieces.
    if sink.new:
        fault_in(sink.buffer)
    found = store.get_pieces(key, sink, piece_bytes=PIECE_BYTES, missing_ok=True)
    return sink.data() if found else None


def _check_read(key: str, got: int, wanted: int) -> None:
    if got != wanted:
        raise StorageError(f"shard {key!r} is shorter than its index says (changed while reading?)")


def _whole_file(file: LocalFile) -> memoryview:
    buffer = result_array((file.size,), np.uint8)[0]
    _check_read(file.path, file.read_into(buffer, 0), file.size)
    return buffer.data


class _CachedShard:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.buffer: memoryview | None = None
        self.index: ShardIndex | None = None
        self.nbytes = 0
        self.served = 0
        self.error: BaseException | None = None


class ShardCache:
    """Whole shards, kept while a computation that reads every chunk of the array runs.

    Such a computation's dask tasks each want one chunk; alone, each would make its own range request
    (moto serves a small range for nearly the CPU of the whole object). Here the first task that wants
    a shard fetches all of it with one GET, the other tasks of that shard wait for it and decode their
    chunk from it. A shard is dropped once each of its chunks was served, or when more than
    ``max_bytes`` are kept (least recently used first; a dropped shard is fetched again if needed).
    `prefetch` fetches the shards ahead of the tasks, a few at once, in the order the tasks go.
    """

    def __init__(self, indexes: ShardIndexes, *, max_bytes: int) -> None:
        self._indexes = indexes
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an entry was dropped, or the cache closed
        self._entries: OrderedDict[Position, _CachedShard] = OrderedDict()
        self._fetched: set[Position] = set()  # every shard fetched (or being fetched) so far
        self._closed = False
        # What `prefetch` fetches: the shards in grid order, where in it the next one to fetch ahead is
        # (None until a task asked for a shard), which way the tasks go, and the last shard they asked for.
        self._plan: list[tuple[str, Position]] = []
        self._place: dict[Position, int] = {}
        self._cursor: int | None = None
        self._step = 1
        self._asked: int | None = None

    def prefetch(
        self,
        store: GrantedStore,
        shards: Sequence[tuple[str, Position]],
        *,
        capacity: int,
        ahead: int,
        idle_seconds: float,
    ) -> None:
        """Fetch ``shards`` (key, position, in grid order) on ``ahead`` background threads, while fewer
        than ``ahead`` shards are kept or being fetched, in the order the computation's tasks ask for them.

        The computation's own tasks (dask's threaded scheduler has one per core) would otherwise fetch
        one shard at a time: each waits for the shard its chunk is in, and they want the same shards.
        Which shard the tasks want next is not known in advance (dask orders a reduction's chunks last
        to first, for one), so fetching starts beside the first shard a task asks for and follows the
        direction the tasks go (`get` steers it). The threads end when every shard was fetched, when
        the cache is closed, or when no kept shard was served for ``idle_seconds`` (the computation
        failed or was never run). A shard that failed to arrive raises its error in the tasks waiting
        for it; a task that comes later fetches it again.
        """
        with self._lock:
            self._plan = list(shards)
            self._place = {shard: i for i, (_, shard) in enumerate(self._plan)}

        def worker() -> None:
            while True:
                with self._changed:
                    job = self._next_locked()
                    while not self._closed and (len(self._entries) >= ahead or job is _NOT_YET):
                        if not self._changed.wait(timeout=idle_seconds):
                            return
                        job = self._next_locked()
                    if self._closed or not isinstance(job, tuple):
                        return
                    key, shard = job
                    entry = self._claim(shard)
                try:
                    self._fill(entry, store, key, shard, capacity)
                except Exception:
                    return

        for _ in range(ahead):
            threading.Thread(target=worker, name="mikro-prefetch", daemon=True).start()

    def _next_locked(self) -> tuple[str, Position] | object | None:
        """The next shard to fetch ahead (holding the lock): from the cursor on in the tasks' direction,
        then any other left; None when every shard was fetched, `_NOT_YET` before any task asked."""
        if self._cursor is None:
            return _NOT_YET if self._plan else None
        i = self._cursor
        while 0 <= i < len(self._plan):
            if self._plan[i][1] not in self._fetched:
                self._cursor = i + self._step
                return self._plan[i]
            i += self._step
        # Nothing left that way: the rest, nearest to where the tasks are first.
        left = [j for j, (_, shard) in enumerate(self._plan) if shard not in self._fetched]
        if not left:
            return None
        here = self._asked if self._asked is not None else 0
        return self._plan[min(left, key=lambda j: abs(j - here))]

    def _asked_for(self, shard: Position) -> None:
        """A task asked for ``shard`` (holding the lock): fetch ahead of it, the way the tasks go."""
        i = self._place.get(shard)
        if i is None or i == self._asked:
            return
        if self._asked is not None:
            self._step = 1 if i > self._asked else -1
        elif i == len(self._plan) - 1 and i > 0:
            self._step = -1  # the last shard first: the tasks go backwards
        self._asked = i
        self._cursor = i + self._step
        self._changed.notify_all()

    def close(self) -> None:
        """Stop prefetching and drop every shard kept."""
        with self._changed:
            self._closed = True
            self._entries.clear()
            self._changed.notify_all()

    def get(self, store: GrantedStore, key: str, shard: Position, *, capacity: int) -> _CachedShard:
        """The cached shard, fetched now (``capacity``: the most its stored bytes can be) if it is not."""
        with self._lock:
            self._asked_for(shard)
            entry = self._entries.get(shard)
            owner = entry is None
            if entry is None:
                entry = self._claim(shard)
            else:
                self._entries.move_to_end(shard)
        if owner:
            return self._fill(entry, store, key, shard, capacity)
        entry.ready.wait()
        if entry.error is not None:
            raise entry.error
        return entry

    def _claim(self, shard: Position) -> _CachedShard:
        """A new entry for ``shard``, to be filled by the calling thread (holding the lock)."""
        entry = self._entries[shard] = _CachedShard()
        self._fetched.add(shard)
        return entry

    def _fill(
        self, entry: _CachedShard, store: GrantedStore, key: str, shard: Position, capacity: int
    ) -> _CachedShard:
        try:
            buffer = fetch_object(store, key, capacity)
            if buffer is not None:
                entry.index = self._indexes.from_shard(key, buffer)
                entry.buffer, entry.nbytes = buffer, buffer.nbytes
            self._indexes.remember(shard, entry.index)
        except BaseException as exc:
            entry.error = exc
            with self._lock:
                if self._entries.get(shard) is entry:
                    del self._entries[shard]
                    self._changed.notify_all()
            raise
        finally:
            entry.ready.set()
        self._trim()
        return entry

    def served(self, shard: Position, chunks: int, of: int) -> None:
        """``chunks`` more of the shard's ``of`` chunks were decoded from it."""
        with self._lock:
            entry = self._entries.get(shard)
            if entry is not None and entry.ready.is_set():
                entry.served += chunks
                if entry.served >= of:
                    del self._entries[shard]
                    self._changed.notify_all()

    def _trim(self) -> None:
        with self._lock:
            kept = sum(e.nbytes for e in self._entries.values())
            for shard, entry in list(self._entries.items()):
                if kept <= self._max_bytes or len(self._entries) <= 1:
                    break
                if entry.ready.is_set():
                    del self._entries[shard]
                    kept -= entry.nbytes
                    self._changed.notify_all()


class ShardRead:
    """One shard's part of a read: which chunks, fetched how, decoded where.

    ``box`` is the region of the array being read (``out`` holds exactly that region); ``position`` is the
    shard's grid position. Blocking: runs in a worker thread or a dask task.
    """

    def __init__(
        self,
        *,
        store: GrantedStore,
        key: str,
        codec: ChunkCodec,
        shape: Position,
        chunks: Position,
        shards: Position,
        position: Position,
        box: Sequence[slice],
        indexes: ShardIndexes,
        scratch: ScratchBuffers,
        cache: ShardCache | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.codec = codec
        self.chunks = chunks
        self.position = position
        self.box = tuple(box)
        self.indexes = indexes
        self.scratch = scratch
        self.cache = cache
        origin = [p * s for p, s in zip(position, shards, strict=True)]
        self.first_chunk = tuple(o // c for o, c in zip(origin, chunks, strict=True))
        # Chunk positions inside the shard that the box touches, per axis (half-open).
        lo: list[int] = []
        hi: list[int] = []
        for b, o, s, c in zip(self.box, origin, shards, chunks, strict=True):
            start, stop = max(b.start, o), min(b.stop, o + s)
            lo.append((start - o) // c)
            hi.append(math.ceil((stop - o) / c))
        self.lo, self.hi = tuple(lo), tuple(hi)
        # The chunks of this shard that lie inside the array (edge shards hold fewer).
        in_array = tuple(
            math.ceil((min(n, o + s) - o) / c)
            for n, o, s, c in zip(shape, origin, shards, chunks, strict=True)
        )
        self.needs_all = all(a == 0 for a in self.lo) and self.hi == in_array
        self.chunks_in_shard = math.prod(in_array)
        self.touched: list[Position] = [
            tuple(a + d for a, d in zip(self.lo, delta, strict=True))
            for delta in np.ndindex(*(h - a for a, h in zip(self.lo, self.hi, strict=True)))
        ]

    # -- fetching -----------------------------------------------------------------------------------

    def capacity(self) -> int:
        """The most bytes a whole shard can hold: every chunk raw, and the index (more if compressed
        chunks grew, which `fetch_object` copes with)."""
        chunk = math.prod(self.chunks) * self.codec.dtype.itemsize
        return math.prod(self.indexes.chunks_per_shard) * chunk + self.indexes.nbytes

    def run(self, out: np.ndarray[Any, Any]) -> None:
        """Fetch this shard's touched chunks and write them into ``out`` (the box's region)."""
        if self.cache is not None and not self.needs_all:
            self._from_cache(out, self.cache)
            return
        if self.needs_all and self.store.reads_files():
            self._read_file(out)
            return
        known, index = self.indexes.cached(self.position)
        if self.needs_all and not known:
            if self.codec.compressor is None and self.indexes.layout_guess_works:
                self._stream_guessing(out)
            else:
                self._fetch_whole(out)
            return
        if not known:
            index = self.indexes.get(self.position)
        located = self._locate(out, index)
        if not located or index is None:
            return
        ranges = coalesce([(o, o + n) for o, n, _ in located])
        table = index.offsets_and_lengths.reshape(-1, 2)
        stored = int(table[(table != EMPTY).any(axis=1), 1].sum())
        if self.needs_all or sum(e - s for s, e in ranges) > WHOLE_SHARD_FRACTION * stored:
            self._stream(out, located)
        else:
            self._fetch_ranges(out, located)

    def _locate(self, out: np.ndarray[Any, Any], index: ShardIndex | None) -> list[Placement]:
        """Where the touched chunks are; chunks that were never written get zarr's fill value now."""
        located: list[Placement] = []
        for local in self.touched:
            where = index.locate(local) if index is not None else None
            if where is None:
                out[self.slices(local)[0]] = 0
            else:
                located.append((*where, local))
        return located

    def _from_cache(self, out: np.ndarray[Any, Any], cache: ShardCache) -> None:
        entry = cache.get(self.store, self.key, self.position, capacity=self.capacity())
        for offset, length, local in self._locate(out, entry.index):
            assert entry.buffer is not None
            if offset + length > entry.nbytes - self.indexes.nbytes:
                raise StorageError(f"shard {self.key!r}: chunk {local} lies past its end")
            self.place(out, local, memoryview(entry.buffer)[offset : offset + length])
        cache.served(self.position, len(self.touched), self.chunks_in_shard)

    def shared(self, dtype: np.dtype[Any]) -> np.ndarray[Any, Any] | None:
        """The box, if it lies inside one raw chunk of a shard the chunk tasks share, as a view of that
        shard's bytes (no copy: the view keeps them alive, and their memory is reused only once every
        view is gone); None where it must be decoded into an array of its own.

        A computation over every chunk (``rep.data.max()``) otherwise copies each chunk out of its
        shard once more, a quarter of its client CPU."""
        if (
            self.cache is None
            or self.needs_all
            or len(self.touched) != 1
            or self.codec.compressor is not None
            or self.codec.dtype != dtype
        ):
            return None
        (local,) = self.touched
        entry = self.cache.get(self.store, self.key, self.position, capacity=self.capacity())
        where = entry.index.locate(local) if entry.index is not None else None
        _, src, _ = self.slices(local)
        try:
            if where is None or entry.buffer is None:
                return np.zeros(tuple(s.stop - s.start for s in src), dtype=dtype)  # never written
            offset, length = where
            count = math.prod(self.chunks)
            if length != count * dtype.itemsize:
                expected = count * dtype.itemsize
                raise StorageError(f"shard {self.key!r}: a raw chunk of {length} bytes, expected {expected}")
            if offset + length > entry.nbytes - self.indexes.nbytes:
                raise StorageError(f"shard {self.key!r}: chunk {local} lies past its end")
            chunk = np.frombuffer(entry.buffer, dtype=dtype, count=count, offset=offset)
            return chunk.reshape(self.chunks)[src]
        finally:
            self.cache.served(self.position, 1, self.chunks_in_shard)

    def _read_file(self, out: np.ndarray[Any, Any]) -> None:
        """The whole shard from a folder store's file: its index from the end (read again even if known,
        a few hundred bytes), then each chunk, raw ones by the kernel straight into their rows of ``out``."""

        def use(file: LocalFile) -> bool:
            tail = file.read_tail(self.indexes.nbytes)
            if len(tail) < self.indexes.nbytes:
                raise StorageError(f"shard {self.key!r} is shorter than its index")
            index = self.indexes.decode(tail)
            self.indexes.remember(self.position, index)
            end = file.size - self.indexes.nbytes
            for offset, length, local in self._locate(out, index):
                if offset + length > end:
                    raise StorageError(f"shard {self.key!r}: chunk {local} lies past its end")
                target = self.scatter_target(out, local)
                if target is not None and target.nbytes == length:
                    got = file.read_into_place(target, offset)
                    if got is not None:
                        _check_read(self.key, got, length)
                        continue
                buffer = self.scratch.gather(length)
                _check_read(self.key, file.read_into(buffer, offset), length)
                self.place(out, local, buffer)
            return True

        if self.store.read_file(self.key, use, missing_ok=True) is None:
            self.indexes.remember(self.position, None)
            self._locate(out, None)

    def _fetch_ranges(self, out: np.ndarray[Any, Any], located: Sequence[Placement]) -> None:
        ranges = coalesce([(o, o + n) for o, n, _ in located])
        starts = [s for s, _ in ranges]
        buffers = self.store.get_ranges(self.key, starts, [e for _, e in ranges])
        for offset, length, local in located:
            # The merged range that holds this chunk: the last one starting at or before it.
            i = int(np.searchsorted(starts, offset, side="right")) - 1
            at = offset - starts[i]
            self.place(out, local, memoryview(buffers[i])[at : at + length])

    def _fetch_whole(self, out: np.ndarray[Any, Any]) -> None:
        """One GET of the whole shard into one buffer; its index comes with it, at the end."""
        buffer = fetch_object(self.store, self.key, self.capacity())
        index = self.indexes.from_shard(self.key, buffer) if buffer is not None else None
        self.indexes.remember(self.position, index)
        for offset, length, local in self._locate(out, index):
            assert buffer is not None
            if offset + length > memoryview(buffer).nbytes - self.indexes.nbytes:
                raise StorageError(f"shard {self.key!r}: chunk {local} lies past its end")
            self.place(out, local, memoryview(buffer)[offset : offset + length])

    def _stream(self, out: np.ndarray[Any, Any], located: Sequence[Placement]) -> None:
        """Stream the whole shard, placing the chunks where the (known) index says they are."""
        items = sorted(located)
        if any(a[0] + a[1] > b[0] for a, b in itertools.pairwise(items)):
            # Chunks sharing bytes (the format allows it; zarr and mikro never write it): no streaming.
            self._fetch_ranges(out, items)
            return
        feed = _Feed(self, out, items, keep_tail=0)
        if (
            not self.store.get_pieces(self.key, feed, piece_bytes=PIECE_BYTES, missing_ok=True)
            or not feed.done
        ):
            raise StorageError(f"shard {self.key!r} is shorter than its index says (changed while reading?)")

    def _stream_guessing(self, out: np.ndarray[Any, Any]) -> None:
        """Stream a whole shard of raw chunks without its index, assuming mikro's layout; then check.

        The index arrives at the end of the same stream: chunks it puts elsewhere (or nowhere) are
        fetched again from where it says (or filled), so the result is right whatever the layout.
        """
        nbytes = math.prod(self.chunks) * self.codec.dtype.itemsize
        guess = [(i * nbytes, nbytes, local) for i, local in enumerate(self.touched)]
        feed = _Feed(self, out, guess, keep_tail=self.indexes.nbytes)
        if not self.store.get_pieces(self.key, feed, piece_bytes=PIECE_BYTES, missing_ok=True):
            self.indexes.remember(self.position, None)
            self._locate(out, None)
            return
        tail = feed.tail()
        if len(tail) < self.indexes.nbytes:
            raise StorageError(f"shard {self.key!r} is shorter than its index")
        index = self.indexes.decode(tail)
        self.indexes.remember(self.position, index)
        placed = {local: (offset, length) for offset, length, local in guess[: feed.next]}
        wrong = [p for p in self._locate(out, index) if placed.get(p[2]) != (p[0], p[1])]
        if wrong or len(placed) != len(guess):
            self.indexes.layout_guess_works = False
        if wrong:
            self._fetch_ranges(out, wrong)

    # -- placing ------------------------------------------------------------------------------------

    def slices(self, local: Position) -> tuple[tuple[slice, ...], tuple[slice, ...], bool]:
        """Where chunk ``local`` goes in ``out``, which part of it, and whether that is all of it."""
        dst: list[slice] = []
        src: list[slice] = []
        full = True
        for p, f, c, b in zip(local, self.first_chunk, self.chunks, self.box, strict=True):
            start = (f + p) * c
            lo, hi = max(start, b.start), min(start + c, b.stop)
            src.append(slice(lo - start, hi - start))
            dst.append(slice(lo - b.start, hi - b.start))
            full = full and hi - lo == c
        return tuple(dst), tuple(src), full

    def scatter_target(self, out: np.ndarray[Any, Any], local: Position) -> np.ndarray[Any, Any] | None:
        """Chunk ``local``'s place in ``out`` as bytes, if its raw bytes can be copied there as they come."""
        # Only raw chunks in the output's byte order, wholly inside the box, with contiguous rows.
        if self.codec.compressor is not None or out.dtype != self.codec.dtype:
            return None
        dst, _, full = self.slices(local)
        target = out[dst]
        if not full or target.strides[-1] != target.itemsize:
            return None
        return target.view(np.uint8)

    def place(self, out: np.ndarray[Any, Any], local: Position, encoded: Buffer) -> None:
        """Decode one chunk's complete encoded bytes into its place in ``out``."""
        codec = self.codec
        dst, src, full = self.slices(local)
        nbytes = memoryview(encoded).nbytes
        if codec.compressor is None:
            count = math.prod(self.chunks)
            if nbytes != count * codec.dtype.itemsize:
                expected = count * codec.dtype.itemsize
                raise StorageError(f"shard {self.key!r}: a raw chunk of {nbytes} bytes, expected {expected}")
            out[dst] = np.frombuffer(memoryview(encoded), dtype=codec.dtype).reshape(self.chunks)[src]
            return
        target = out[dst]
        if full and target.flags.c_contiguous and target.dtype == codec.dtype:
            codec.compressor.decode(encoded, out=target)
            return
        chunk = self.scratch.chunk()
        codec.compressor.decode(encoded, out=chunk)
        out[dst] = chunk[src]


class _Feed:
    """Takes a streamed shard piece by piece and puts each chunk's bytes where they belong."""

    def __init__(
        self, read: ShardRead, out: np.ndarray[Any, Any], items: Sequence[Placement], *, keep_tail: int
    ) -> None:
        self.read = read
        self.out = out
        self.items = items  # sorted by offset, not overlapping
        self.next = 0  # items before this one are in place
        self.pos = 0  # object offset of the next piece
        self.gathered: memoryview | None = None  # the chunk being gathered across pieces
        self.target: np.ndarray[Any, Any] | None = None  # or the output bytes it is being copied to
        self.keep_tail = keep_tail
        self.recent: deque[bytes] = deque()  # the last pieces, enough to hold `keep_tail` bytes

    @property
    def done(self) -> bool:
        return self.next == len(self.items)

    def tail(self) -> bytes:
        """The last ``keep_tail`` bytes of the stream (or all of it, if shorter)."""
        return b"".join(self.recent)[-self.keep_tail :] if self.keep_tail else b""

    def __call__(self, piece: bytes) -> None:
        if self.keep_tail:
            self.recent.append(piece)
            while len(self.recent) > 1 and sum(map(len, self.recent)) - len(self.recent[0]) >= self.keep_tail:
                self.recent.popleft()
        view = memoryview(piece)
        start, end = self.pos, self.pos + view.nbytes
        self.pos = end
        while self.next < len(self.items):
            offset, length, local = self.items[self.next]
            if offset >= end:
                return
            lo, hi = max(offset, start), min(offset + length, end)
            data = view[lo - start : hi - start]
            if lo == offset and hi == offset + length:
                self.read.place(self.out, local, data)  # the whole chunk is in this piece
            else:
                if lo == offset:  # the chunk's first bytes: decide how to collect the rest
                    self.target = self.read.scatter_target(self.out, local)
                    self.gathered = None if self.target is not None else self.read.scratch.gather(length)
                if self.target is not None:
                    copy_flat(self.target, np.frombuffer(data, dtype=np.uint8), lo - offset)
                else:
                    assert self.gathered is not None
                    self.gathered[lo - offset : hi - offset] = data
                    if hi == offset + length:
                        self.read.place(self.out, local, self.gathered)
            if hi < offset + length:
                return  # the chunk goes on in the next piece
            self.next += 1
