"""A thumbnail kept as an object beside its image (`THUMBNAIL_OBJECT`): read, or made on first read.

An image of one shard and no coarser level (`made_on_read`) is registered with its thumbnail's size
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
from typing import Any

import numpy as np

from mikro._exceptions import StorageError
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


async def thumbnail_object_png(ctx: Context, key: str, representation_id: int, what: str) -> bytes:
    """The PNG of a thumbnail kept as the object ``key`` of the image ``representation_id``; made
    from the image's pixels when it is not there yet and the image qualifies (else NOT_FOUND)."""
    services = ctx.services
    png = await services.run_io(_stored, services.storage, key, what)
    if png is not None:
        return png
    image = await ctx.loaders.representation.load(representation_id)
    store = None if image is None else await ctx.loaders.store.load(image._store_id)
    if store is None or key != f"{store.key}/{THUMBNAIL_OBJECT}" or not _small(store):
        raise NotFound(f"the PNG of {what} is not in its image's store")
    return await services.run_io(_make, services.storage, store, key, what)


def _stored(storage: ObjectStorage, key: str, what: str) -> bytes | None:
    try:
        return read_png_object(storage.read, key, what)
    except NotFound:
        return None


def _small(store: Any) -> bool:
    if store.array_path != "0" or not store.shape or not store.shards or not store.dtype:
        return False
    return made_on_read(store.shape, store.shards, np.dtype(store.dtype).itemsize)


def _make(storage: ObjectStorage, store: Any, key: str, what: str) -> bytes:
    """Make, keep and return the thumbnail of ``store``'s image (blocking: for a worker thread)."""
    try:
        pixels = _pixels(storage, store, what)
    except (StorageError, ValueError, RecursionError) as exc:
        # Not the reader's input: what the image's client wrote.
        raise ApiError(f"the thumbnail of {what} could not be made from its image: {exc}") from exc
    png = thumbnail_of_image(pixels).png
    assert png is not None
    storage.replace(key, png)
    return png


def _pixels(storage: ObjectStorage, store: Any, what: str) -> np.ndarray[Any, Any]:
    array = f"{store.key}/0"
    meta = json.loads(_bounded_read(storage, f"{array}/zarr.json", MAX_DOCUMENT_BYTES, what))
    shard_key = only_shard_key(meta if isinstance(meta, dict) else {}, array)
    if meta["shape"] != store.shape or meta["chunk_grid"]["configuration"]["chunk_shape"] != store.shards:
        raise StorageError("its zarr.json no longer describes the image recorded")
    limit = int(np.prod(store.shape) * np.dtype(store.dtype).itemsize * _SHARD_SLACK) + _SHARD_EXTRA
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
