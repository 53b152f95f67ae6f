"""``rep.data`` computed on a dask.distributed cluster: readers rebuilt in worker processes.

A `ShardedArrayReader` pickles as its store and array geometry (`rebuild_reader`); its store pickles
as its grant provider and the grant in hand (`mikro.datalayer._store`). In a worker, every task of one
image arrives with its own copy; they become one reader per process again, so the array's
``zarr.json`` is read once and each shard index is fetched once per worker, not once per task.

`distributed_scheduler_active` tells `mikro.datalayer.compute` that dask's default scheduler is a
distributed client, so it leaves the reading to the cluster too.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mikro.datalayer._store import GrantedStore

if TYPE_CHECKING:
    from mikro.datalayer._read import ShardedArrayReader

__all__ = ["distributed_scheduler_active", "rebuild_reader"]

#: Readers rebuilt from pickles kept per process (each holds its shard indexes, 16 bytes per chunk).
REBUILT_READERS = 64

_lock = threading.Lock()
_readers: OrderedDict[tuple[Any, ...], ShardedArrayReader] = OrderedDict()


def rebuild_reader(
    store: GrantedStore,
    shape: Sequence[int],
    chunks: Sequence[int],
    shards: Sequence[int],
    dtype: np.dtype[Any],
    array_path: str,
) -> ShardedArrayReader:
    """The reader a pickled `ShardedArrayReader` becomes in this process: one per store and array.

    Sharing is safe because a finished store never changes, and readers are thread-safe.
    """
    from mikro.datalayer._read import ShardedArrayReader

    # The store is already the one shared copy for its provider (`_rebuilt_store`): identity suffices.
    key = (id(store), tuple(shape), tuple(chunks), tuple(shards), np.dtype(dtype).str, array_path)
    with _lock:
        found = _readers.get(key)
        if found is not None and found.store is store:
            _readers.move_to_end(key)
            return found
    reader = ShardedArrayReader(
        store, shape=shape, chunks=chunks, shards=shards, dtype=dtype, array_path=array_path
    )
    with _lock:
        found = _readers.get(key)
        if found is not None and found.store is store:
            return found
        _readers[key] = reader
        while len(_readers) > REBUILT_READERS:
            _readers.popitem(last=False)
    return reader


def distributed_scheduler_active() -> bool:
    """True if a plain ``.compute()`` here would run on a dask.distributed cluster (a default Client)."""
    # A client cannot exist before distributed is imported, and importing it costs a second.
    if "distributed" not in sys.modules:
        return False
    from dask.base import get_scheduler

    try:
        scheduler = get_scheduler()  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError):  # an asynchronous default Client: dask refuses it for .compute()
        return False
    owner = getattr(scheduler, "__self__", None)
    return type(owner).__module__.split(".", 1)[0] == "distributed"
