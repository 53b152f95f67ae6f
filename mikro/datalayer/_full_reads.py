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
and hands that array out as the result (a graph that wants the chunks themselves, ``persist``, gets
views of it).

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


def _ours(graph: Any) -> dict[str, Any]:
    """The layers of ``graph`` (a HighLevelGraph) that `open_dataarray` made, by name."""
    layers = getattr(graph, "layers", None)
    if not isinstance(layers, Mapping):
        return {}
    return {name: layer for name, layer in layers.items() if layer_reader(layer) is not None}


def _culled(graph: Any, keys: Any) -> Any:
    return graph.cull(set(_flat_keys(keys)))


def readers_read_in_full(graph: Any, keys: Any) -> list[Any]:
    """The mikro readers whose every chunk computing ``keys`` of ``graph`` (a HighLevelGraph) needs."""
    ours = _ours(graph)
    return _read_in_full(ours, _culled(graph, keys)) if ours else []


def _read_in_full(ours: Mapping[str, Any], culled: Any) -> list[Any]:
    needed: dict[str, int] = dict.fromkeys(ours, 0)
    for layer in culled.layers.values():
        for key in layer.get_output_keys():
            if isinstance(key, tuple) and key and key[0] in needed:
                needed[key[0]] += 1
    readers = [layer_reader(layer) for layer in ours.values()]
    return [reader for name, reader in zip(ours, readers, strict=True) if needed[name] == reader.nblocks]


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
    ours = _ours(graph)
    return _whole_image_graph(graph, ours, _culled(graph, keys)) if ours else None


def _whole_image_graph(graph: Any, ours: Mapping[str, Any], culled: Any) -> dict[Any, Any] | None:
    if len(ours) != 1 or any(n not in ours and not str(n).startswith("finalize-") for n in graph.layers):
        return None
    ((name, layer),) = ours.items()
    reader = layer_reader(layer)
    tasks = dict(culled)
    chunk_keys = set(layer.get_output_keys())
    if not chunk_keys <= tasks.keys():
        return None  # some chunks are not needed: not the whole image
    finals = [n for n in graph.layers if n not in ours]
    if len(finals) == 1 and _concatenates(tasks.get(finals[0]), chunk_keys):
        # The result is the image itself: the one array read_all fills is handed out as it is, not
        # copied once more by dask's concatenation of its chunks (a second pass over every byte, into
        # memory that must be page-faulted in: it cost more CPU than the whole read).
        return {finals[0]: (reader.read_all,)}
    whole = f"{name}-whole-image"
    tasks[whole] = (reader.read_all,)
    for key in chunk_keys:
        tasks[key] = (operator.getitem, whole, reader.chunk_box(key[1:]))
    return tasks


def _concatenates(task: Any, chunk_keys: set[Any]) -> bool:
    """Whether ``task`` is dask's finalization of an array computed from exactly these chunks."""
    from dask.array.core import finalize

    return getattr(task, "func", None) is finalize and set(getattr(task, "dependencies", ())) == chunk_keys


def _mikro_array_optimize(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    from dask.array.optimization import optimize

    from mikro.datalayer._remote import distributed_scheduler_active

    try:
        # Graphs without a mikro image (every other dask array in the process) pay only this lookup.
        ours = _ours(dsk)
        if ours and not distributed_scheduler_active():
            culled = _culled(dsk, keys)  # once, for both questions
            whole = _whole_image_graph(dsk, ours, culled)
            if whole is not None:
                return whole
            for reader in _read_in_full(ours, culled):
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
