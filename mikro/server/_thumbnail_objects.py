"""A thumbnail kept as an object beside its image (`THUMBNAIL_OBJECT`): read, or made on first read.

An image of one shard (`made_on_read`) is registered with its thumbnail's size
alone: its client spends none of its CPU on it (an ingest of small files is bound by the client's one
core, the GIL, while the server's core idles), and an image nobody looks at never gets one. The first
read makes the PNG here, in a worker thread, from the stored pixels with the client's own code
(`thumbnail_of_image`: the same projection, the same PNG), and writes it as the object a client that
made it would have written, so every later read is one object read. Written whole (`replace`: a put on
S3, a temporary file renamed into place in a folder), a half-written PNG is never served; two first
reads at once both make it and both answer. An object a client wrote is served as before, its header
checked when served.

Deleting the image deletes its store's prefix after the commit, the made PNG with it; one made by a
read racing the delete is swept with the prefix once its credentials have expired (`DeletedPrefix`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._readable import check_readable
from mikro.datalayer._shard_pixels import only_shard_key, shard_pixels
from mikro.datalayer._thumbnail import THUMBNAIL_OBJECT, made_on_read, thumbnail_of_image
from mikro.server._context import Context
from mikro.server._errors import ApiError, NotFound
from mikro.server._objects import ObjectStorage
from mikro.server._png import read_png_object

__all__ = ["thumbnail_object_png"]

#: Largest array ``zarr.json`` read to make a thumbnail (mikro writes ~1 kB).
MAX_DOCUMENT_BYTES = 1024 * 1024
#: A shard holds at most the image's bytes, plus what compression adds to noise and the index.
_SHARD_SLACK = 1.1
_SHARD_EXTRA = 1024 * 1024


async def thumbnail_object_png(ctx: Context, key: str, what: str) -> bytes:
    """The PNG of a thumbnail kept as the object ``key`` (`THUMBNAIL_OBJECT` of its image's store);
    made from the image's pixels when it is not there yet and the image qualifies (else NOT_FOUND)."""
    return await ctx.services.run_io(_object_png, ctx.services.storage, key, what)


def _object_png(storage: ObjectStorage, key: str, what: str) -> bytes:
    # One worker-thread call for the read and, the first time, the making: the pixels' bounds come
    # from the array's own zarr.json (read either way), so no database lookup is needed.
    try:
        return read_png_object(storage.read, key, what)
    except NotFound:
        pass
    store_key, found, _ = key.rpartition("/" + THUMBNAIL_OBJECT)
    if not found:
        raise NotFound(f"the PNG of {what} is not in its image's store")
    try:
        pixels = _pixels(storage, f"{store_key}/0", what)
    except (StorageError, ValueError, RecursionError) as exc:
        # Not the reader's input: what the image's client wrote.
        raise ApiError(f"the thumbnail of {what} could not be made from its image: {exc}") from exc
    png = thumbnail_of_image(pixels).png
    assert png is not None
    storage.replace(key, png)
    return png


def _pixels(storage: ObjectStorage, array: str, what: str) -> np.ndarray[Any, Any]:
    meta = json.loads(_bounded_read(storage, f"{array}/zarr.json", MAX_DOCUMENT_BYTES, what))
    check_readable(meta if isinstance(meta, dict) else {})
    shape, shards = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    itemsize = np.dtype(meta["data_type"]).itemsize
    if not made_on_read(shape, shards, itemsize):
        # Its client made none (it sends a PNG for such an image), or wrote a PNG that is gone.
        raise NotFound(f"the PNG of {what} is not in its image's store")
    shard_key = only_shard_key(meta, array)
    limit = int(math.prod(shape) * itemsize * _SHARD_SLACK) + _SHARD_EXTRA
    return shard_pixels(meta, _bounded_read(storage, shard_key, limit, what))


def _bounded_read(storage: ObjectStorage, key: str, limit: int, what: str) -> bytes:
    size = storage.size_of(key)
    if size is None:
        raise NotFound(f"the PNG of {what} is not in its image's store, nor its pixels")
    if size > limit:
        raise StorageError(f"{key.rsplit('/', 1)[-1]} is {size} bytes, more than {limit}")
    data = storage.read(key)
    if data is None:
        raise NotFound(f"the PNG of {what} is not in its image's store, nor its pixels")
    return data
