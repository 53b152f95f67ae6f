"""The pixels of an array stored as one shard, decoded from the shard's bytes alone.

The server makes a small image's thumbnail from them (see `_thumbnail.made_on_read`): it holds the
array's ``zarr.json`` and the shard's bytes, read through its own storage (which never follows a link
in a folder store), and needs neither a grant nor zarr's machinery to decode them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._layout import shard_key
from mikro.datalayer._readable import check_readable, chunk_key_separator
from mikro.datalayer._shard import ChunkCodec, ShardIndex

__all__ = ["MAX_CHUNKS", "only_shard_key", "shard_pixels"]

#: Most inner chunks a shard may be decoded from here. Its bytes are bounded by the caller, not the number
#: of chunks its metadata declares: 1x1 chunks of a 64 MiB image would be 32 M turns of the loop below
#: (minutes of a server thread for one request). mikro writes a small image's shard as a few chunks.
MAX_CHUNKS = 4096


def _shard_shape(meta: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])


def only_shard_key(meta: Mapping[str, Any], path: str) -> str:
    """The key of the one shard of the array ``meta`` at ``path``; a `StorageError` if it has more
    (or if mikro cannot read it)."""
    check_readable(meta)
    if any(n > s for n, s in zip(meta["shape"], _shard_shape(meta), strict=True)):
        raise StorageError(f"the array at {path} has more than one shard")
    return shard_key(path, (0,) * len(meta["shape"]), chunk_key_separator(meta))


def shard_pixels(meta: Mapping[str, Any], shard: bytes) -> np.ndarray[Any, Any]:
    """The whole array ``meta`` (checked by `only_shard_key`) from its one shard's bytes; chunks the
    shard does not hold are the array's fill value, as zarr reads them."""
    codec = ChunkCodec.from_array_metadata(meta)
    shape = tuple(meta["shape"])
    chunks = codec.chunk_shape
    per_shard = tuple(s // c for s, c in zip(_shard_shape(meta), chunks, strict=True))
    if math.prod(per_shard) > MAX_CHUNKS:
        raise StorageError(
            f"a shard of {math.prod(per_shard)} chunks (at most {MAX_CHUNKS} are decoded here)"
        )
    index_bytes = ShardIndex.nbytes(per_shard)
    if len(shard) < index_bytes:
        raise StorageError("a shard is shorter than its index (corrupt or partially written)")
    index = ShardIndex.decode(shard[-index_bytes:], per_shard)
    out = np.full(shape, _fill_value(meta), dtype=codec.dtype.newbyteorder("="))
    data = memoryview(shard)
    for position in np.ndindex(*(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))):
        found = index.locate(position)
        if found is None:
            continue
        offset, length = found
        if offset + length > len(shard) - index_bytes:
            raise StorageError("a shard's index points past its chunks (corrupt shard)")
        target = tuple(
            slice(p * c, min((p + 1) * c, n)) for p, c, n in zip(position, chunks, shape, strict=True)
        )
        try:
            chunk = codec.decode(data[offset : offset + length])
        except (RuntimeError, ValueError) as exc:
            raise StorageError(f"a chunk of a shard could not be decoded: {exc}") from exc
        out[target] = chunk[tuple(slice(0, t.stop - t.start) for t in target)]
    return out


def _fill_value(meta: Mapping[str, Any]) -> Any:
    # zarr v3 spells the special floats as strings ("NaN", "Infinity", "-Infinity"); numpy reads those.
    value = meta.get("fill_value", 0)
    if not isinstance(value, str):
        return value if isinstance(value, (bool, int, float)) else 0
    try:
        return float(value)
    except ValueError:
        raise StorageError(f"fill_value {value!r} is not a number") from None
