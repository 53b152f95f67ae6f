"""Reading what ``finishUpload`` records from zarr v3 metadata (``zarr.json``).

An array the client could not read back is refused here, by the datalayer's own check
(`mikro.datalayer._readable`: the server may import the datalayer, never the client).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mikro._exceptions import StorageError
from mikro.datalayer._readable import check_readable
from mikro.server._bounds import check_array_bounds
from mikro.server._errors import BadUserInput

__all__ = ["ArrayInfo", "array_info_from_document", "read_array_info", "with_levels"]

#: A level's path in its group: ``1``, ``2`` ..., or under the prefix a later pyramid is written to.
_LEVEL_PATH = re.compile(r"(levels-[0-9a-f]{8,32}/)?[1-9][0-9]{0,2}")


@dataclass(frozen=True)
class ArrayInfo:
    key: str  # the key prefix of the array (``<prefix>`` or ``<prefix>/0`` for an OME-Zarr group)
    shape: list[int]
    chunks: list[int]
    shards: list[int] | None
    dtype: str
    dimension_names: list[str] | None
    #: The array's path inside the store (``"0"`` in an OME-Zarr group, ``""`` for a bare array).
    path: str = "0"
    #: Every resolution level, level 0 first: ``{path, shape, chunks, shards, scale}``.
    levels: list[dict[str, Any]] = field(default_factory=list)

    def level(self) -> dict[str, Any]:
        """This array as a level of its image (downsampling factor 1)."""
        return {
            "path": self.path,
            "shape": self.shape,
            "chunks": self.chunks,
            "shards": self.shards,
            "scale": [1.0] * len(self.shape),
        }


def read_array_info(read: Callable[[str], bytes | None], prefix: str) -> ArrayInfo:
    """Find the array of a store: ``<prefix>/zarr.json`` if it is an array, else ``<prefix>/0/zarr.json``.

    ``read`` returns an object's bytes or None (blocking; call this in a worker thread).
    """
    # mikro writes an OME-Zarr group with its image at 0/: look there first. An array cannot have
    # children, so finding one at 0/ means the root is a group (read next, for the levels it lists).
    raw = read(f"{prefix}/0/zarr.json")
    if raw is not None:
        node = _parse(raw, f"{prefix}/0")
        if node.get("node_type") == "array":
            return _with_group_levels(read, prefix, _parse_array(node, f"{prefix}/0", "0"))
    node = _load(read, prefix)
    if node.get("node_type") == "group":
        key = f"{prefix}/0"
        node = _load(read, key)
        if node.get("node_type") != "array":
            raise BadUserInput(f"{key}/zarr.json is not a zarr array (the OME-Zarr image must be at 0/)")
        return _with_group_levels(read, prefix, _parse_array(node, key, "0"))
    if node.get("node_type") == "array":
        return _parse_array(node, prefix, "")
    raise BadUserInput(f"{prefix}/zarr.json has node_type {node.get('node_type')!r}, not array or group")


def _with_group_levels(read: Callable[[str], bytes | None], prefix: str, array: ArrayInfo) -> ArrayInfo:
    """``array`` (level 0) with the coarser levels its OME-Zarr group lists (a pyramid written by another
    tool); each must be readable like level 0. A group without ``multiscales`` has level 0 only."""
    raw = read(f"{prefix}/zarr.json")
    try:
        datasets = json.loads(raw or b"")["attributes"]["ome"]["multiscales"][0]["datasets"]
        paths = [str(d["path"]) for d in datasets]
        scales = [list(d["coordinateTransformations"][0]["scale"]) for d in datasets]
    except (ValueError, KeyError, IndexError, TypeError):
        return array
    if not paths or paths[0] != array.path:
        return array
    levels = []
    for path, scale in zip(paths[1:], scales[1:], strict=True):
        document = read(f"{prefix}/{path}/zarr.json")
        if document is None:
            raise BadUserInput(f"the group lists level {path!r} but {prefix}/{path}/zarr.json is missing")
        factors = [float(s) / float(b) if b else 1.0 for s, b in zip(scale, scales[0], strict=False)]
        levels.append((path, document.decode(), factors))
    with_levels(array, prefix, levels)
    return array


def _load(read: Callable[[str], bytes | None], prefix: str) -> dict[str, Any]:
    raw = read(f"{prefix}/zarr.json")
    if raw is None:
        raise BadUserInput(f"no zarr metadata at {prefix}/zarr.json: upload the array before finishUpload")
    return _parse(raw, prefix)


def _parse(raw: bytes, prefix: str) -> dict[str, Any]:
    try:
        node = json.loads(raw)
    except ValueError as e:
        raise BadUserInput(f"{prefix}/zarr.json is not valid JSON: {e}") from None
    except RecursionError:
        raise BadUserInput(f"{prefix}/zarr.json is nested too deeply") from None
    if not isinstance(node, dict) or node.get("zarr_format") != 3:
        raise BadUserInput(f"{prefix}/zarr.json is not zarr v3 metadata (zarr_format must be 3)")
    return node


def _ints(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise BadUserInput(f"invalid zarr metadata: {what} must be a list of non-negative integers")
    return list(value)


def _parse_array(node: dict[str, Any], key: str, path: str) -> ArrayInfo:
    try:
        check_readable(node)
    except StorageError as e:
        raise BadUserInput(f"{key}/zarr.json: {e}") from None
    shape = _ints(node.get("shape"), "shape")
    grid = node.get("chunk_grid") or {}
    outer = _ints((grid.get("configuration") or {}).get("chunk_shape"), "chunk_grid.chunk_shape")
    if len(outer) != len(shape):
        raise BadUserInput("invalid zarr metadata: chunk shape and shape differ in length")
    chunks, shards = outer, None
    codecs = node.get("codecs") or []
    if codecs and isinstance(codecs[0], dict) and codecs[0].get("name") == "sharding_indexed":
        inner = _ints((codecs[0].get("configuration") or {}).get("chunk_shape"), "sharding chunk_shape")
        chunks, shards = inner, outer
    data_type = node.get("data_type")
    if not isinstance(data_type, str):
        raise BadUserInput(f"unsupported zarr data_type {data_type!r}")
    try:
        numpy_dtype = np.dtype(data_type)
    except TypeError:
        raise BadUserInput(f"unsupported zarr data_type {data_type!r}") from None
    check_array_bounds(shape, chunks, shards, numpy_dtype.kind)
    dtype = numpy_dtype.name
    names = node.get("dimension_names")
    if names is not None and (
        not isinstance(names, list) or len(names) != len(shape) or not all(isinstance(n, str) for n in names)
    ):
        raise BadUserInput("invalid zarr metadata: dimension_names must name every dimension")
    info = ArrayInfo(
        key=key, shape=shape, chunks=chunks, shards=shards, dtype=dtype, dimension_names=names, path=path
    )
    info.levels.append(info.level())
    return info


def array_info_from_document(document: str, prefix: str, path: str = "0") -> ArrayInfo:
    """What an array's ``zarr.json`` (sent by the client rather than read from storage) records."""
    key = f"{prefix}/{path}"
    try:
        shape, chunks, shards, dtype, names = _document_fields(document, path)
    except BadUserInput:
        _array_from_document(document, key, path)  # the same checks again, naming this array
        raise
    info = ArrayInfo(
        key=key,
        shape=list(shape),
        chunks=list(chunks),
        shards=None if shards is None else list(shards),
        dtype=dtype,
        dimension_names=None if names is None else list(names),
        path=path,
    )
    info.levels.append(info.level())
    return info


@functools.lru_cache(maxsize=64)
def _document_fields(document: str, path: str) -> tuple[Any, ...]:
    """The checked fields of an array document: the same for every image of a batch (a plate's fields
    share one), parsed and checked once, not once per image."""
    info = _array_from_document(document, "", path)
    shards = None if info.shards is None else tuple(info.shards)
    names = None if info.dimension_names is None else tuple(info.dimension_names)
    return tuple(info.shape), tuple(info.chunks), shards, info.dtype, names


def _array_from_document(document: str, key: str, path: str) -> ArrayInfo:
    node = _parse(document.encode(), key)
    if node.get("node_type") != "array":
        kind = node.get("node_type")
        raise BadUserInput(f"the arrayMetadata for {key}/zarr.json has node_type {kind!r}, not array")
    return _parse_array(node, key, path)


def with_levels(array: ArrayInfo, prefix: str, levels: Sequence[tuple[str, str, Sequence[float]]]) -> None:
    """Record the coarser levels ``(path, zarr.json, scale)`` a client wrote beside ``array`` (level 0).

    Each must be readable like level 0, of its dtype and dims, no larger, and at a path of its own.
    """
    seen = {array.path}
    for path, document, scale in levels:
        if not _LEVEL_PATH.fullmatch(path) or path in seen:
            raise BadUserInput(f"level path {path!r} must be a new level path of the image group (1, 2, ...)")
        seen.add(path)
        level = array_info_from_document(document, prefix, path)
        if level.dtype != array.dtype or level.dimension_names != array.dimension_names:
            raise BadUserInput(f"level {path} must have level 0's dtype and dimension names")
        if len(scale) != len(array.shape) or any(not f >= 1 for f in scale):
            raise BadUserInput(
                f"level {path}'s scale must give a factor >= 1 for each of the {len(array.shape)} dims"
            )
        if any(n > n0 for n, n0 in zip(level.shape, array.shape, strict=True)):
            raise BadUserInput(f"level {path} (shape {level.shape}) is larger than level 0 ({array.shape})")
        array.levels.append({**level.level(), "scale": [float(f) for f in scale]})
