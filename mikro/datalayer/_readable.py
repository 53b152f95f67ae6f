"""Which zarr v3 arrays mikro reads: one check shared by the client's reader and the server.

The server refuses to record an array the client could not open later (`check_readable` raises a
`StorageError` with the reason; the server maps it to a GraphQL ``BAD_USER_INPUT``), and the reader
refuses the same arrays with the same words. What mikro reads is what it writes: sharded arrays
(``sharding_indexed``, index at the end, ``bytes`` + ``crc32c`` index codecs), inner chunks ``bytes``
then at most one of ``zstd`` / ``blosc``, a regular grid with default keys (``.`` or ``/`` separators),
the dtypes an upload accepts (bool, integers, floats, at most 8 bytes), and shapes whose sizes stay
exact as JavaScript numbers (under 2**53 elements).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mikro._exceptions import StorageError

__all__ = ["MAX_ELEMENTS", "check_readable", "chunk_key_separator"]

#: Largest element count (and axis length) an array may have: GraphQL clients keep sizes as doubles.
MAX_ELEMENTS = 2**53
#: Inner-chunk compressors mikro decodes.
COMPRESSORS = ("zstd", "blosc")
#: The ``default`` chunk key encoding's separators (mikro writes ``.``; it wrote ``/`` before).
SEPARATORS = (".", "/")


def _ints(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise StorageError(f"{what} must be a list of integers, not {value!r}")
    return list(value)


def check_readable(meta: Mapping[str, Any]) -> None:
    """Raise `StorageError` saying why mikro cannot read the array ``zarr.json`` ``meta``."""
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise StorageError("mikro reads zarr v3 arrays only (zarr_format 3, node_type array)")
    shape = _ints(meta.get("shape"), "shape")
    if any(n < 1 for n in shape) or math.prod(shape) >= MAX_ELEMENTS:
        raise StorageError(f"shape {shape} must have axes of at least 1 and fewer than 2**53 elements")
    data_type = meta.get("data_type")
    try:
        dtype = np.dtype(data_type) if isinstance(data_type, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise StorageError(f"data_type {data_type!r} is not one mikro reads (bool, integer or float)")
    grid = meta.get("chunk_grid") or {}
    if grid.get("name") != "regular":
        raise StorageError("mikro reads regular chunk grids only")
    shards = _ints((grid.get("configuration") or {}).get("chunk_shape"), "chunk_grid.chunk_shape")
    chunk_key_separator(meta)
    codecs = meta.get("codecs") or []
    if len(codecs) != 1 or not isinstance(codecs[0], Mapping) or codecs[0].get("name") != "sharding_indexed":
        raise StorageError("mikro reads sharded zarr arrays only (one sharding_indexed codec)")
    config = codecs[0].get("configuration") or {}
    if config.get("index_location", "end") != "end":
        raise StorageError("mikro reads shard indexes at the end of a shard only")
    index = [c.get("name") for c in config.get("index_codecs") or [] if isinstance(c, Mapping)]
    if index != ["bytes", "crc32c"]:
        raise StorageError(f"mikro reads shard indexes encoded as bytes + crc32c only, not {index}")
    chunks = _ints(config.get("chunk_shape"), "the sharding codec's chunk_shape")
    if not (len(shape) == len(shards) == len(chunks)):
        raise StorageError(f"shape {shape}, shard shape {shards} and chunk shape {chunks} differ in length")
    if any(c < 1 or s % c for s, c in zip(shards, chunks, strict=True)):
        raise StorageError(f"shard shape {shards} is not a multiple of chunk shape {chunks}")
    inner = [c.get("name") for c in config.get("codecs") or [] if isinstance(c, Mapping)]
    if (
        not inner
        or inner[0] != "bytes"
        or len(inner) > 2
        or (len(inner) == 2 and inner[1] not in COMPRESSORS)
    ):
        raise StorageError(f"mikro cannot decode inner chunk codecs {inner} (bytes, then zstd or blosc)")


def chunk_key_separator(meta: Mapping[str, Any]) -> str:
    """The separator of the array ``meta``'s chunk keys (``c.0.0`` or ``c/0/0``); a `StorageError` for an
    encoding mikro does not read."""
    keys = meta.get("chunk_key_encoding") or {}
    # zarr v3's default encoding separates with "/" when its configuration names none.
    separator = (keys.get("configuration") or {}).get("separator", "/") if isinstance(keys, Mapping) else None
    if not isinstance(keys, Mapping) or keys.get("name") != "default" or separator not in SEPARATORS:
        raise StorageError("mikro reads the default chunk key encoding with '.' or '/' separators only")
    return str(separator)
