"""Encode and decode zarr v3 shards (``sharding_indexed`` codec) without zarr's async machinery.

A shard is the encoded inner chunks back to back, then the index: for every inner chunk (C order) its
``(offset, nbytes)`` as little-endian uint64 (``2**64 - 1`` twice for a chunk that was not written),
then the crc32c of the index as a little-endian uint32. This is exactly what zarr-python's sharding codec
writes and reads (``index_location = "end"``); tests read mikro's stores back with plain zarr.

Encoding shards here instead of going through zarr's codec pipeline halves the client CPU per GiB and
keeps all I/O on obstore's sync API. An uncompressed shard is a `RawShard`: to a folder store its
chunks are written straight from the pixels into the file (`RawShard.write_to`), to an object store
copied once into a recycled buffer (see `ShardBuffers`). Either way no fresh memory is filled: on the
ingest path the kernel zeroing (and, on this VM, the hypervisor backing) fresh pages cost more client
CPU than the copy itself.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import google_crc32c
import numpy as np
from numcodecs import Blosc, Zstd  # type: ignore[import-untyped]

from mikro._exceptions import StorageError
from mikro.datalayer._layout import ImageLayout, blosc_configuration
from mikro.datalayer._readable import check_readable
from mikro.datalayer._result_memory import result_array

__all__ = [
    "SHARD_BUFFERS",
    "ChunkCodec",
    "EncodedShard",
    "RawShard",
    "ShardBuffers",
    "ShardIndex",
    "ShardPayload",
    "encode_shard",
    "shard_payload",
]

EMPTY = 2**64 - 1


_SHUFFLES = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


@dataclass(frozen=True)
class ChunkCodec:
    """The inner-chunk codecs of a sharded array: ``bytes`` (endianness), then zstd, blosc or nothing."""

    dtype: np.dtype[Any]
    chunk_shape: tuple[int, ...]
    compressor: Any = None  # a numcodecs Zstd or Blosc, or None for raw chunks

    @classmethod
    def for_layout(cls, layout: ImageLayout) -> ChunkCodec:
        compressor: Any = None
        if layout.compression == "zstd":
            compressor = Zstd(level=layout.level)
        elif layout.compression in ("blosc-lz4", "blosc-zstd"):
            config = blosc_configuration(layout.compression, layout.dtype)
            compressor = Blosc(config["cname"], config["clevel"], _SHUFFLES[config["shuffle"]])
        return cls(
            dtype=layout.dtype.newbyteorder("<") if layout.dtype.itemsize > 1 else layout.dtype,
            chunk_shape=layout.chunks,
            compressor=compressor,
        )

    @classmethod
    def from_array_metadata(cls, meta: Mapping[str, Any]) -> ChunkCodec:
        """Understand an array ``zarr.json``; anything mikro cannot decode is a `StorageError`."""
        check_readable(meta)
        config = meta["codecs"][0]["configuration"]
        dtype = np.dtype(meta["data_type"])
        compressor: Any = None
        order = "<"
        for codec in config["codecs"]:
            name = codec["name"]
            options = codec.get("configuration") or {}
            if name == "bytes":
                if options.get("endian") == "big":
                    order = ">"
            elif name == "zstd":
                compressor = Zstd(level=int(options.get("level", 0)))
            elif name == "blosc":
                compressor = Blosc()  # decoding reads every parameter from the blosc header
        return cls(
            dtype=dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype,
            chunk_shape=tuple(config["chunk_shape"]),
            compressor=compressor,
        )

    def encode(self, chunk: np.ndarray[Any, Any]) -> bytes | memoryview:
        data = np.ascontiguousarray(chunk, dtype=self.dtype)
        if self.compressor is None:
            return memoryview(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        return bytes(self.compressor.encode(data))

    def decode(self, data: Any) -> np.ndarray[Any, Any]:
        """One chunk as a fresh, writable array (decoded straight into it: no intermediate copy)."""
        out = np.empty(self.chunk_shape, dtype=self.dtype)
        if self.compressor is not None:
            self.compressor.decode(data, out=out)
        else:
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
        return out


@dataclass(frozen=True)
class ShardIndex:
    """Where each inner chunk of one shard is: ``offsets_and_lengths[*chunk_position] == (offset, n)``."""

    offsets_and_lengths: np.ndarray[Any, np.dtype[np.uint64]]

    @staticmethod
    def nbytes(chunks_per_shard: Sequence[int]) -> int:
        return math.prod(chunks_per_shard) * 16 + 4

    @classmethod
    def decode(cls, data: bytes, chunks_per_shard: Sequence[int]) -> ShardIndex:
        body, crc = data[:-4], data[-4:]
        if np.frombuffer(crc, dtype="<u4")[0] != google_crc32c.value(body):
            raise StorageError("a shard index failed its crc32c check (corrupt or partially written shard)")
        table = np.frombuffer(body, dtype="<u8").reshape((*chunks_per_shard, 2))
        return cls(table)

    def locate(self, chunk_position: Sequence[int]) -> tuple[int, int] | None:
        offset, length = (int(v) for v in self.offsets_and_lengths[tuple(chunk_position)])
        if offset == EMPTY and length == EMPTY:
            return None
        return offset, length


class ShardBuffers:
    """Recycles the buffers uncompressed shards are built in, once nothing refers to them any more.

    Fresh memory is what made building a shard expensive: the kernel zeroes every page on its first
    touch, and on the ingest path that cost more client CPU than the copy of the pixels itself (a
    quarter of the client's CPU for 2048x2048 uint16 planes, measured with perf). `take` hands out a
    view of a pooled base array; a weakref finalizer puts the base back only when that view is gone.
    What leaves `encode_shard` is a memoryview *of that view*, and every memoryview slice or numpy array
    made from it keeps the view alive, so a buffer is never reused while anything can still read it.
    Arrays derived from the view with numpy (``view[...]``) point at the base instead: they must not
    outlive the call that took the buffer.

    Idle buffers are kept while any buffer is in use (an upload is going on) up to ``max_idle_bytes`` or
    the most bytes in use at once since the pool was last at rest, whichever is more: an upload with
    more shards in flight than ``max_idle_bytes`` holds (eight files of 32 MiB shards plus their
    indexes already are) recycles all of them, and the pool never holds more than it lent at once.
    When the last one comes back they are trimmed to ``rest_idle_bytes``, the least recently returned
    dropped first. `clear` lets them all go.
    """

    def __init__(self, max_idle_bytes: int, rest_idle_bytes: int) -> None:
        self.max_idle_bytes = max_idle_bytes
        self.rest_idle_bytes = rest_idle_bytes
        # Reentrant: a finalizer may run in a thread that holds the lock, if the GC collects a view there.
        self._lock = threading.RLock()
        self._idle: list[np.ndarray[Any, np.dtype[np.uint8]]] = []
        self._idle_bytes = 0
        self._in_use = 0
        self._in_use_bytes = 0
        self._peak_bytes = 0

    def take(self, nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """An uninitialised byte array of ``nbytes``: a recycled one if one of that size is idle."""
        base = None
        with self._lock:
            self._in_use += 1
            self._in_use_bytes += nbytes
            self._peak_bytes = max(self._peak_bytes, self._in_use_bytes)
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i].nbytes == nbytes:
                    base = self._idle.pop(i)
                    self._idle_bytes -= nbytes
                    break
        if base is None:
            # Not np.empty: numpy advises 4 MiB and more into transparent huge pages, which a VM that
            # hands free memory back to its host must back again on first touch (see `_result_memory`).
            base, _ = result_array((nbytes,), np.uint8)
        view = base[:]
        # No atexit call: at interpreter exit there is nothing left to recycle into.
        weakref.finalize(view, self._give_back, base).atexit = False
        return view

    def _give_back(self, base: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        with self._lock:
            self._in_use -= 1
            self._in_use_bytes -= base.nbytes
            if self._in_use:
                limit = max(self.max_idle_bytes, self._peak_bytes)
            else:
                limit, self._peak_bytes = self.rest_idle_bytes, 0
            if base.nbytes <= limit:  # one too big to keep must not push the others out
                self._idle.append(base)
                self._idle_bytes += base.nbytes
            self._trim(limit)

    def _trim(self, limit: int) -> None:
        while self._idle_bytes > limit:
            self._idle_bytes -= self._idle.pop(0).nbytes

    @property
    def idle_bytes(self) -> int:
        """Memory held by idle buffers now."""
        return self._idle_bytes

    def clear(self) -> None:
        """Free every idle buffer (buffers in use still come back when they are dropped)."""
        with self._lock:
            self._trim(0)


#: The process's shard buffers (uncompressed shards to object stores). While an upload runs, at least
#: 256 MiB stay allocated between shards (eight of the 32 MiB shards of a z-stack: the default eight
#: worker threads), more if more were in flight at once (see `ShardBuffers`). At rest, 64 MiB: eight 8 MiB
#: shards (a 2048x2048 uint16 plane each), so that images uploaded one after another reuse them too.
#: Measured against moto (client CPU s/GiB, no pool -> pool): 2048x2048 uint16 planes, 8 in flight,
#: 1.83 -> 1.34; 64-plane stacks (16 shards of 32 MiB) one after another, 1.0 -> 0.85. Stacks reuse more
#: between images with a larger ``rest_idle_bytes`` (4 x 32 MiB kept: fresh shards 13 of 16 -> 4).
SHARD_BUFFERS = ShardBuffers(max_idle_bytes=256 * 2**20, rest_idle_bytes=64 * 2**20)


def encode_shard(
    region: np.ndarray[Any, Any],
    layout: ImageLayout,
    codec: ChunkCodec,
) -> memoryview:
    """One shard's bytes from its region of the array (``region`` may be smaller than the shard at edges).

    The result is a flat byte memoryview (``len()`` is its size), ready for ``obstore.put``; an
    uncompressed shard's memory goes back to `SHARD_BUFFERS` once the view (and all made from it) is gone.
    """
    return shard_payload(region, layout, codec).materialize()


def shard_payload(
    region: np.ndarray[Any, Any],
    layout: ImageLayout,
    codec: ChunkCodec,
) -> ShardPayload:
    """What `Store.put` writes for one shard, `encode_shard`'s bytes in parts: for an uncompressed shard a
    `RawShard` over ``region`` (which must not change until it is written), else an `EncodedShard`."""
    present, raw_index = _shard_plan(layout, region.shape, codec.dtype.itemsize)
    if codec.compressor is None:
        return RawShard(region, layout, codec, present, raw_index)
    index = np.full((*layout.chunks_per_shard, 2), EMPTY, dtype="<u8")
    parts: list[bytes | memoryview] = []
    offset = 0
    for pos in present:
        encoded = codec.encode(_padded(region[_chunk_selection(pos, layout.chunks)], layout))
        length = len(encoded) if isinstance(encoded, bytes) else encoded.nbytes
        index[pos] = (offset, length)
        parts.append(encoded)
        offset += length
    parts.append(_index_bytes(index))
    return EncodedShard(tuple(parts), offset + len(parts[-1]))


def _present(layout: ImageLayout, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The chunks of a shard of ``shape`` that hold pixels (those wholly outside the array stay "not
    written": readers return the fill value)."""
    return [
        pos
        for pos in np.ndindex(*layout.chunks_per_shard)
        if all(p * c < n for p, c, n in zip(pos, layout.chunks, shape, strict=True))
    ]


@functools.lru_cache(maxsize=256)
def _shard_plan(
    layout: ImageLayout, shape: tuple[int, ...], itemsize: int
) -> tuple[tuple[tuple[int, ...], ...], bytes]:
    """A shard's chunks holding pixels, and its index if they are uncompressed: the same for every
    shard of one shape (a plate's fields), so made once."""
    present = _present(layout, shape)
    index = np.full((*layout.chunks_per_shard, 2), EMPTY, dtype="<u8")
    chunk_nbytes = math.prod(layout.chunks) * itemsize
    for i, pos in enumerate(present):
        index[pos] = (i * chunk_nbytes, chunk_nbytes)
    return tuple(present), _index_bytes(index)


_SCRATCH = threading.local()


@dataclass(frozen=True, eq=False)
class RawShard:
    """An uncompressed shard, laid out only as it is written: its chunks in C order, then the index.

    Holding the region instead of the laid-out bytes lets a folder store write the file chunk by chunk
    (`write_to`) with no shard-sized buffer at all; an object store's single PUT needs the bytes in one
    buffer (`materialize`). Both give the same bytes.
    """

    region: np.ndarray[Any, Any]
    layout: ImageLayout
    codec: ChunkCodec
    present: tuple[tuple[int, ...], ...]
    index: bytes

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.layout.chunks) * self.codec.dtype.itemsize

    def __len__(self) -> int:
        return len(self.present) * self.chunk_nbytes + len(self.index)

    def write_to(self, write: Callable[[memoryview], object]) -> None:
        """Hand the shard's bytes to ``write`` in order, a chunk at a time.

        A chunk that already is its bytes (C-contiguous, little-endian, whole) goes out as a view of the
        pixels; the others through one small buffer per thread, reused (so warm) from chunk to chunk.
        """
        for pos in self.present:
            chunk = self.region[_chunk_selection(pos, self.layout.chunks)]
            view = self._as_bytes(chunk)
            if view is None:
                slot = _scratch(self.chunk_nbytes).view(self.codec.dtype).reshape(self.layout.chunks)
                _fill(slot, chunk)
                view = memoryview(slot.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
            write(view)
        write(memoryview(self.index))

    def parts(self) -> list[memoryview] | None:
        """The shard's bytes as views of the pixels, then the index, if every chunk already is its bytes
        (a small image's one chunk, usually: then written with one ``writev``); else None."""
        views = [
            self._as_bytes(self.region[_chunk_selection(pos, self.layout.chunks)]) for pos in self.present
        ]
        if any(view is None for view in views):
            return None
        return [*cast("list[memoryview]", views), memoryview(self.index)]

    def _as_bytes(self, chunk: np.ndarray[Any, Any]) -> memoryview | None:
        if chunk.shape == self.layout.chunks and chunk.dtype == self.codec.dtype and chunk.flags.c_contiguous:
            return memoryview(chunk.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        return None

    def materialize(self) -> memoryview:
        """The whole shard in one buffer from `SHARD_BUFFERS` (back in the pool once the view is gone)."""
        chunk_nbytes = self.chunk_nbytes
        body = len(self.present) * chunk_nbytes
        out = SHARD_BUFFERS.take(body + len(self.index))
        slots = out[:body].view(self.codec.dtype).reshape(len(self.present), *self.layout.chunks)
        for i, pos in enumerate(self.present):
            _fill(slots[i], self.region[_chunk_selection(pos, self.layout.chunks)])
        out[body:] = np.frombuffer(self.index, dtype=np.uint8)
        return out.data


@dataclass(frozen=True, eq=False)
class EncodedShard:
    """A compressed shard as its parts: the encoded chunks, then the index.

    A folder store writes the parts to the file as they are (one ``writev``); only an object store's
    single PUT needs them joined (`materialize`): a small image's shard is not copied into a fresh
    buffer on its way to a file.
    """

    parts: tuple[bytes | memoryview, ...]
    nbytes: int

    def __len__(self) -> int:
        return self.nbytes

    def materialize(self) -> memoryview:
        return memoryview(b"".join(self.parts))


#: What `shard_payload` makes of one shard: its bytes in parts, or whole (`materialize`).
ShardPayload = RawShard | EncodedShard


def _scratch(nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    buffer: np.ndarray[Any, np.dtype[np.uint8]] | None = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = _SCRATCH.buffer = np.empty(nbytes, dtype=np.uint8)
    return buffer[:nbytes]


def _fill(slot: np.ndarray[Any, Any], chunk: np.ndarray[Any, Any]) -> None:
    """Copy ``chunk`` into the chunk-shaped ``slot``, the fill value (0 / False) beyond the array's edge."""
    if chunk.shape != slot.shape:
        slot[...] = 0
        slot = slot[tuple(slice(0, n) for n in chunk.shape)]
    slot[...] = chunk  # converts to little-endian on the way if needed


def _chunk_selection(pos: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, chunks, strict=True))


def _padded(chunk: np.ndarray[Any, Any], layout: ImageLayout) -> np.ndarray[Any, Any]:
    if chunk.shape == layout.chunks:
        return chunk
    padded = np.zeros(layout.chunks, dtype=layout.dtype)
    padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
    return padded


def _index_bytes(index: np.ndarray[Any, np.dtype[np.uint64]]) -> bytes:
    body = index.tobytes()
    return body + np.array([google_crc32c.value(body)], dtype="<u4").tobytes()
