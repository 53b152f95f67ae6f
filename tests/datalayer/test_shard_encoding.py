"""Shards from `encode_shard` are read right by zarr-python and tensorstore; its recycled buffers are safe.

The arrays are written to a real folder exactly as mikro lays them out (array ``zarr.json`` from
`ImageLayout`, one object per shard) and opened by the two independent zarr v3 implementations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts
import zarr

from mikro.datalayer._layout import ImageLayout
from mikro.datalayer._shard import SHARD_BUFFERS, ChunkCodec, ShardBuffers, ShardIndex, encode_shard

# (shape, chunks, shards): edge chunks cut by the array on every axis, and edge shards holding chunk
# positions wholly outside the array (left out of the shard); then one chunk per shard, the whole plane.
LAYOUTS = [
    ((300, 500), (128, 128), (256, 256)),
    ((6, 150, 130), (1, 64, 64), (4, 128, 128)),
    ((2, 96, 64), (1, 96, 64), (1, 96, 64)),
]
DTYPES = ["uint8", "uint16", ">u2", "float32", "bool"]


def make_values(shape: tuple[int, ...], dtype: str) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(7)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype == "float32":
        return rng.normal(50.0, 10.0, shape).astype(np.float32)
    return rng.integers(1, 250, shape).astype(dtype)


def write_array(root: Path, values: np.ndarray[Any, Any], layout: ImageLayout) -> Path:
    """The array as mikro's writer stores it: ``zarr.json`` and one object per shard."""
    array = root / "0"
    array.mkdir(parents=True)
    (array / "zarr.json").write_text(json.dumps(layout.array_metadata()))
    codec = ChunkCodec.for_layout(layout)
    for pos in layout.shard_positions():
        target = root / layout.shard_key(pos)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_shard(values[layout.shard_region(pos)], layout, codec))
    return array


def read_with_tensorstore(array: Path) -> np.ndarray[Any, Any]:
    opened = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(array)}}).result()
    return np.asarray(opened.read().result())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "chunks", "shards"), LAYOUTS)
def test_uncompressed_shards_read_back_in_zarr_and_tensorstore(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], shards: tuple[int, ...], dtype: str
) -> None:
    values = make_values(shape, dtype)
    layout = ImageLayout(
        shape=shape,
        dtype=np.dtype(dtype).newbyteorder("="),  # big-endian input: the image's dtype is plain uint16
        dims=("z", "y", "x")[-len(shape) :],
        chunks=chunks,
        shards=shards,
        compression=None,
    )
    array = write_array(tmp_path, values, layout)
    np.testing.assert_array_equal(zarr.open_array(str(array), mode="r")[...], values)
    np.testing.assert_array_equal(read_with_tensorstore(array), values)


@pytest.mark.parametrize("compression", ["zstd", "blosc-lz4", "blosc-zstd"])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "bool"])
def test_compressed_shards_read_back_in_tensorstore(tmp_path: Path, compression: str, dtype: str) -> None:
    shape, chunks, shards = LAYOUTS[1]
    values = make_values(shape, dtype)
    layout = ImageLayout(
        shape=shape,
        dtype=np.dtype(dtype),
        dims=("z", "y", "x"),
        chunks=chunks,
        shards=shards,
        compression=compression,  # type: ignore[arg-type]
    )
    array = write_array(tmp_path, values, layout)
    np.testing.assert_array_equal(read_with_tensorstore(array), values)
    np.testing.assert_array_equal(zarr.open_array(str(array), mode="r")[...], values)


def plane_layout(side: int = 256) -> tuple[ImageLayout, ChunkCodec]:
    layout = ImageLayout(
        shape=(side, side),
        dtype=np.dtype("uint16"),
        dims=("y", "x"),
        chunks=(side // 2, side // 2),
        shards=(side, side),
        compression=None,
    )
    return layout, ChunkCodec.for_layout(layout)


def decode_plane(payload: memoryview, layout: ImageLayout, codec: ChunkCodec) -> np.ndarray[Any, Any]:
    """A shard's pixels through the index, as a reader sees them."""
    cps = layout.chunks_per_shard
    index = ShardIndex.decode(bytes(payload[-ShardIndex.nbytes(cps) :]), cps)
    out = np.empty(layout.shards, dtype=layout.dtype)
    for pos in np.ndindex(*cps):
        where = index.locate(pos)
        assert where is not None
        offset, length = where
        sel = tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, layout.chunks, strict=True))
        out[sel] = codec.decode(payload[offset : offset + length])
    return out


def test_a_shard_kept_alive_is_never_overwritten_by_later_shards() -> None:
    layout, codec = plane_layout()
    SHARD_BUFFERS.clear()
    first_values = make_values(layout.shape, "uint16")
    first = encode_shard(first_values, layout, codec)
    # Only a slice of the first shard is kept: it alone must keep the buffer out of the pool.
    first_index = first[-ShardIndex.nbytes(layout.chunks_per_shard) :]
    first_copy = bytes(first)
    del first
    later = [encode_shard(first_values[::-1] + np.uint16(i), layout, codec) for i in range(3)]
    assert bytes(first_index) == first_copy[-len(first_index) :]
    for i, payload in enumerate(later):
        np.testing.assert_array_equal(decode_plane(payload, layout, codec), first_values[::-1] + i)


def test_dropped_shards_are_recycled_within_the_bound() -> None:
    layout, codec = plane_layout()
    SHARD_BUFFERS.clear()
    values = make_values(layout.shape, "uint16")
    payloads = [encode_shard(values + np.uint16(i), layout, codec) for i in range(3)]
    size = len(payloads[0])
    assert SHARD_BUFFERS.idle_bytes == 0  # all three in use
    del payloads
    assert SHARD_BUFFERS.idle_bytes == 3 * size
    again = encode_shard(values, layout, codec)
    assert SHARD_BUFFERS.idle_bytes == 2 * size  # one was taken back out, not allocated anew
    np.testing.assert_array_equal(decode_plane(again, layout, codec), values)
    del again
    SHARD_BUFFERS.clear()
    assert SHARD_BUFFERS.idle_bytes == 0


def test_idle_buffers_are_bounded_and_trimmed_at_rest() -> None:
    pool = ShardBuffers(max_idle_bytes=150, rest_idle_bytes=120)
    a, b, c, d = (pool.take(100) for _ in range(4))
    del a, b, c
    # d is in use: more than 150 kept, as 400 were lent at once (the next wave of shards reuses them)
    assert pool.idle_bytes == 300
    e, f = pool.take(100), pool.take(100)
    assert pool.idle_bytes == 100  # recycled, not allocated
    del d, e
    assert pool.idle_bytes == 300  # never more than was lent at once
    del f
    assert pool.idle_bytes == 100  # nothing in use: trimmed to 120, the oldest returned dropped first
    big = pool.take(1000)
    del big
    assert pool.idle_bytes == 100  # too big to keep, and it did not push the others out
    taken = pool.take(100)
    assert pool.idle_bytes == 0  # recycled, not allocated
    del taken
    pool.clear()
    assert pool.idle_bytes == 0
