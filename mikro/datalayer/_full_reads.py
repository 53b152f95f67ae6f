"""Whole-shard reads for any computation that needs every chunk of a stored image, plain dask included.

One dask task reads one inner chunk. When a computation needs every chunk of an image
(``rep.data.max()``), one range request per chunk is the slowest way to fetch it: against moto a small
range costs nearly the CPU of the whole object, and a plain ``rep.data.max().compute()`` ran at a fifth
of the speed of ``await m.compute(rep.data.max())``, which has the chunk tasks share one GET per shard
(`ShardedArrayReader.reading_everything`, entered around the computation).

A plain ``.compute()`` / ``.values`` gets the same through dask's ``array_optimize`` hook, set once (only
if nobody else set one) to a function that runs dask's own optimization unchanged after telling each
mikro array the graph needs in full to expect that many chunk reads (`expect_full_read`). Culling keeps
exactly the tasks the result needs, so a slice anywhere downstream means "not in full". Nothing global
is kept per computation: concurrent computations in several threads each add their own reads.

``rep.data`` itself computed whole (``.values``, ``np.asarray``) gets more: the same hook gives dask a
graph that reads the image once, shard by shard into one array as ``await m.compute(rep.data)`` does,
and hands out each chunk as a view of it (dask then copies them into its result, once).

A dask.distributed cluster runs graphs elsewhere: there nothing is noted and tasks read their chunk.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "READER_ATTRIBUTE",
    "install_array_optimize_hook",
    "layer_reader",
    "readers_read_in_full",
    "whole_image_graph",
]

#: Attribute of the dask graph layer `open_dataarray` makes that holds its reader: graphs derived from
#: the array keep that layer object, so a computation finds the reader of the very data it computes on.
READER_ATTRIBUTE = "_mikro_reader"


def layer_reader(layer: Any) -> Any:
    """The reader `open_dataarray` attached to a graph layer, or None."""
    return getattr(layer, READER_ATTRIBUTE, None)


def readers_read_in_full(graph: Any, keys: Any) -> list[Any]:
    """The mikro readers whose every chunk computing ``keys`` of ``graph`` (a HighLevelGraph) needs."""
    layers = getattr(graph, "layers", None)
    if not isinstance(layers, Mapping):
        return []
    ours = {name: reader for name, layer in layers.items() if (reader := layer_reader(layer)) is not None}
    if not ours:
        return []
    needed: dict[str, int] = dict.fromkeys(ours, 0)
    for layer in graph.cull(set(_flat_keys(keys))).layers.values():
        for key in layer.get_output_keys():
            if isinstance(key, tuple) and key and key[0] in needed:
                needed[key[0]] += 1
    return [reader for name, reader in ours.items() if needed[name] == reader.nblocks]


def _flat_keys(keys: Any) -> Iterator[Any]:
    # dask hands optimizers nested lists of keys (one list per collection, nested by block).
    if isinstance(keys, list):
        for key in keys:
            yield from _flat_keys(key)
    else:
        yield keys


def whole_image_graph(graph: Any, keys: Any) -> dict[Any, Any] | None:
    """For ``rep.data`` itself computed whole (``.values``, ``.compute()``, ``np.asarray``): the graph with
    its chunk tasks replaced by one task that reads the image the way ``await m.compute(rep.data)`` does
    and by views of that one array. None for any other graph.

    dask (2025 and later) hands optimizers the collection's graph plus a layer that finalizes the result
    (``finalize-...``, the concatenation of the chunks) and that layer's key. Any other layer means an
    expression on the image, which keeps dask's own graph.
    """
    layers = getattr(graph, "layers", None)
    if not isinstance(layers, Mapping):
        return None
    ours = [(name, layer) for name, layer in layers.items() if layer_reader(layer) is not None]
    if len(ours) != 1 or any(n != ours[0][0] and not str(n).startswith("finalize-") for n in layers):
        return None
    name, layer = ours[0]
    reader = layer_reader(layer)
    tasks = dict(graph.cull(set(_flat_keys(keys))))
    chunk_keys = set(layer.get_output_keys())
    if not chunk_keys <= tasks.keys():
        return None  # some chunks are not needed: not the whole image
    whole = f"{name}-whole-image"
    tasks[whole] = (reader.read_all,)
    for key in chunk_keys:
        tasks[key] = (operator.getitem, whole, reader.chunk_box(key[1:]))
    return tasks


def _mikro_array_optimize(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    from dask.array.optimization import optimize

    from mikro.datalayer._remote import distributed_scheduler_active

    try:
        if not distributed_scheduler_active():
            whole = whole_image_graph(dsk, keys)
            if whole is not None:
                return whole
            for reader in readers_read_in_full(dsk, keys):
                reader.expect_full_read()
    except Exception:  # an optimisation: a graph it does not understand computes as before
        pass
    return optimize(dsk, keys, **kwargs)  # type: ignore[no-untyped-call]


_install_lock = threading.Lock()
_installed = False


def install_array_optimize_hook() -> None:
    """Set dask's ``array_optimize`` hook, once, unless someone else set one."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        import dask

        if dask.config.get("array_optimize", None) is None:
            dask.config.set({"array_optimize": _mikro_array_optimize})
        _installed = True
