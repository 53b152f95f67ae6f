"""How an image is laid out as zarr v3: chunk and shard shapes, the array's and group's ``zarr.json``.

The store written for one image is an OME-Zarr 0.5 image (the server's keys end in ``.zarr``)::

    <prefix>.zarr/zarr.json      group, attributes.ome = {version, multiscales, omero}
    <prefix>.zarr/0/zarr.json    level 0: the image array (sharded, compressed, dimension_names set)
    <prefix>.zarr/0/c.i.j...     one object per shard (zarr's default chunk keys with "." separators)
    <prefix>.zarr/1/...          level 1 (2x smaller in y/x), 2, ...: the pyramid, when there is one

Images mikro wrote earlier name their shards ``0/c/i/j/...`` (``/`` separators); readers take the
separator from each array's ``zarr.json``, so both read alike.

Axes are stored in OME order (``t, c, z, y, x``, the ones present): OME-Zarr 0.5 requires time first,
then channel, then space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "ARRAY_PATH",
    "AXIS_ORDER",
    "CHUNK_KEY_SEPARATOR",
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "ImageLayout",
    "choose_layout",
    "ome_attributes",
    "shard_key",
]

#: Where the image array lives inside the store (OME-Zarr: the group's dataset path of level 0).
ARRAY_PATH = "0"
#: Storage order of the axes (OME-Zarr 0.5: time, channel, then space).
AXIS_ORDER = ("t", "c", "z", "y", "x")
#: The separator of new arrays' chunk keys (zarr v3 ``default`` encoding): ``c.0.0`` is one file beside
#: ``zarr.json``, where ``/`` made ``c/0/0`` a folder per axis. On a folder store those folders cost a
#: small image more client CPU than its bytes (measured: its objects 0.52-0.56 ms with ``/``,
#: 0.20-0.25 ms with ``.``). zarr-python, ome-zarr-py and bioio read either.
CHUNK_KEY_SEPARATOR = "."
SPACE_UNIT = "micrometer"
TIME_UNIT = "second"

#: Inner chunks aim at this many bytes at most (one y/x tile of one plane).
MAX_CHUNK_BYTES = 4 * 2**20
#: Planes smaller than this are grouped along z into one chunk, so tiny planes do not become tiny objects.
MIN_CHUNK_BYTES = 256 * 2**10
#: A shard (one object on the store) groups chunks up to about this size.
TARGET_SHARD_BYTES = 32 * 2**20
#: More chunks per shard make the shard index a noticeable part of a one-chunk read.
MAX_CHUNKS_PER_SHARD = 512

#: ``zstd``: plain zstd (level ``level``); ``blosc-lz4`` / ``blosc-zstd``: blosc with byte shuffle (bit
#: shuffle for 1-byte types) around lz4 or zstd level 1 - several times cheaper per GiB than plain zstd
#: at a similar or better ratio on microscopy data; None: raw chunks.
Compression = Literal["zstd", "blosc-lz4", "blosc-zstd"] | None
COMPRESSIONS = ("zstd", "blosc-lz4", "blosc-zstd", None)
#: Measured here on 512 MiB of uint16 (file store): zstd level 1 costs 2.5 client CPU-s per GiB written,
#: blosc-lz4 1.4 at the same ratio (1.7x on noisy data, 1.9x on blobs); reads cost the same for both.
DEFAULT_COMPRESSION: Compression = "blosc-lz4"


@dataclass(frozen=True)
class ImageLayout:
    """Shape, dtype, axes, chunking and compression of one stored image."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    dims: tuple[str, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...]
    compression: Compression = DEFAULT_COMPRESSION
    level: int = 1
    #: The array's path inside the image group (its pyramid level: ``"0"`` is full resolution).
    path: str = ARRAY_PATH
    #: The chunk keys' separator (``"/"``: the layout of images mikro wrote earlier).
    separator: str = CHUNK_KEY_SEPARATOR

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))

    @property
    def shard_grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(n / s) for n, s in zip(self.shape, self.shards, strict=True))

    @property
    def index_nbytes(self) -> int:
        # (offset, nbytes) as two uint64 per chunk, then a crc32c of the index.
        return math.prod(self.chunks_per_shard) * 16 + 4

    def shard_positions(self) -> Iterator[tuple[int, ...]]:
        """Shard grid coordinates in C order (the order shards are written)."""
        yield from np.ndindex(*self.shard_grid)

    def shard_region(self, position: Sequence[int]) -> tuple[slice, ...]:
        """The part of the array one shard holds (clipped to the array's shape)."""
        return tuple(
            slice(p * s, min((p + 1) * s, n))
            for p, s, n in zip(position, self.shards, self.shape, strict=True)
        )

    def shard_key(self, position: Sequence[int]) -> str:
        return shard_key(self.path, position, self.separator)

    def codecs(self) -> list[dict[str, Any]]:
        """The ``codecs`` of the array metadata: one sharding codec holding bytes (+ zstd)."""
        inner: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
        if self.dtype.itemsize == 1:
            inner = [{"name": "bytes"}]
        if self.compression == "zstd":
            inner.append({"name": "zstd", "configuration": {"level": self.level, "checksum": False}})
        elif self.compression in ("blosc-lz4", "blosc-zstd"):
            inner.append(
                {"name": "blosc", "configuration": blosc_configuration(self.compression, self.dtype)}
            )
        return [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(self.chunks),
                    "codecs": inner,
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ]

    def array_metadata(self) -> dict[str, Any]:
        """The array's ``zarr.json`` document."""
        return {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(self.shape),
            "data_type": data_type_name(self.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(self.shards)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": self.separator}},
            "fill_value": False if self.dtype.kind == "b" else 0,
            "codecs": self.codecs(),
            "attributes": {},
            "dimension_names": list(self.dims),
            "storage_transformers": [],
        }


def shard_key(path: str, position: Sequence[int], separator: str) -> str:
    """The key of the shard at grid ``position`` of the array at ``path`` (zarr's ``default`` chunk key
    encoding: ``0/c.1.0`` with ``"."``, ``0/c/1/0`` with ``"/"``)."""
    key = "c" + separator + separator.join(map(str, position))
    return f"{path}/{key}" if path else key


def blosc_configuration(compression: str, dtype: np.dtype[Any]) -> dict[str, Any]:
    """zarr v3 ``blosc`` codec configuration for ``blosc-lz4`` / ``blosc-zstd``."""
    cname, clevel = ("lz4", 5) if compression == "blosc-lz4" else ("zstd", 1)
    return {
        "cname": cname,
        "clevel": clevel,
        # Byte shuffle groups the high and low bytes of each sample; 1-byte samples need bit shuffle.
        "shuffle": "bitshuffle" if dtype.itemsize == 1 else "shuffle",
        "typesize": dtype.itemsize,
        "blocksize": 0,
    }


def data_type_name(dtype: np.dtype[Any]) -> str:
    """The zarr v3 ``data_type`` of a numpy dtype (``bool``, ``uint16``, ``float32`` ...)."""
    return "bool" if dtype.kind == "b" else dtype.name


def choose_layout(
    shape: Sequence[int],
    dtype: np.dtype[Any],
    dims: Sequence[str],
    *,
    compression: Compression = DEFAULT_COMPRESSION,
    level: int = 1,
    target_shard_bytes: int = TARGET_SHARD_BYTES,
    path: str = ARRAY_PATH,
    separator: str = CHUNK_KEY_SEPARATOR,
) -> ImageLayout:
    """Chunks: one plane (of t/c/z) and up to 1024-2048 pixels in y/x; shards: several planes, ~32 MiB.

    ``dims`` must already be in `AXIS_ORDER`. The choice keeps a chunk small enough that reading one plane
    fetches little more than that plane, and a shard big enough that object-store requests stay few.
    """
    itemsize = dtype.itemsize
    side = 2048 if itemsize == 1 else 1024
    chunks = [1] * len(shape)
    for i, d in enumerate(dims):
        if d in ("y", "x"):
            chunks[i] = min(shape[i], side)
    # Planes far smaller than a useful object read are grouped along z.
    if "z" in dims:
        zi = dims.index("z")
        plane = math.prod(chunks) * itemsize
        if plane < MIN_CHUNK_BYTES:
            chunks[zi] = min(shape[zi], max(1, MAX_CHUNK_BYTES // 4 // plane))

    shards = list(chunks)

    def nbytes() -> int:
        return math.prod(shards) * itemsize

    def nchunks() -> int:
        return math.prod(s // c for s, c in zip(shards, chunks, strict=True))

    # Grow the shard over whole chunks: first across y/x, then z, c, t (the planes of a stack).
    for d in ("x", "y", "z", "c", "t"):
        if d not in dims:
            continue
        i = dims.index(d)
        room = max(1, target_shard_bytes // nbytes())
        room = min(room, max(1, MAX_CHUNKS_PER_SHARD // nchunks()))
        needed = math.ceil(shape[i] / chunks[i])
        shards[i] = chunks[i] * min(needed, room)
    return ImageLayout(
        shape=tuple(int(s) for s in shape),
        dtype=dtype,
        dims=tuple(dims),
        chunks=tuple(chunks),
        shards=tuple(shards),
        compression=compression,
        level=level,
        path=path,
        separator=separator,
    )


#: Colours given to channels without one (OME-Zarr ``omero`` block; napari shows each channel so).
CHANNEL_COLOURS = ("FF00FF", "00FF00", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")
#: One channel alone is shown grey.
SINGLE_CHANNEL_COLOUR = "FFFFFF"


def omero_colour(value: Any) -> str | None:
    """A user's channel colour (``RRGGBB``/``RRGGBBAA``, ``#`` allowed) as ``omero`` writes it, or None."""
    colour = str(value or "").lstrip("#")
    return colour[:6].upper() if len(colour) in (6, 8) else None


@dataclass(frozen=True)
class ChannelInfo:
    """What the ``omero`` block says of one channel: its label, colour (``RRGGBB``) and data range."""

    label: str
    colour: str
    low: float
    high: float


def omero_block(channels: Sequence[ChannelInfo], *, rgb: bool = False) -> dict[str, Any]:
    """The ``omero`` attribute: channel labels, colours and intensity windows (the data's range)."""
    return {
        "rdefs": {"model": "color" if len(channels) > 1 or rgb else "greyscale"},
        "rgb": rgb,
        "channels": [
            {
                "label": c.label,
                "color": c.colour,
                "active": True,
                "window": {"min": c.low, "max": c.high, "start": c.low, "end": c.high},
            }
            for c in channels
        ],
    }


def ome_attributes(
    dims: Sequence[str],
    pixel_size: Mapping[str, float],
    *,
    name: str | None = None,
    levels: Sequence[Sequence[float]] = ((),),
    method: str | None = None,
    omero: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The group's ``ome`` attribute (OME-Zarr 0.5): every level (path ``"0"``, ``"1"``, ...) with its scale.

    ``levels`` holds each level's downsampling factors per dim (empty: 1 everywhere, level 0). An axis
    whose pixel size is unknown gets scale 1.0 and no unit: readers must not show an invented micrometre.
    ``method`` is the downsampling method (the multiscale's ``type``), given when there is a pyramid.
    """
    axes: list[dict[str, Any]] = []
    for d in dims:
        if d == "c":
            axes.append({"name": "c", "type": "channel"})
            continue
        axis: dict[str, Any] = {"name": d, "type": "time" if d == "t" else "space"}
        if d in pixel_size:
            axis["unit"] = TIME_UNIT if d == "t" else SPACE_UNIT
        axes.append(axis)
    base = [float(pixel_size.get(d, 1.0)) if d != "c" else 1.0 for d in dims]
    datasets = []
    for i, factors in enumerate(levels):
        scale = [b * (float(factors[j]) if factors else 1.0) for j, b in enumerate(base)]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    multiscale: dict[str, Any] = {"axes": axes, "datasets": datasets}
    if name:
        multiscale["name"] = name
    if method is not None:
        multiscale["type"] = method
        multiscale["metadata"] = {
            "description": f"each level is the previous one reduced 2x by {method} (mikro)",
            "method": f"mikro.datalayer.downsample ({method})",
        }
    ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale]}
    if omero is not None:
        ome["omero"] = dict(omero)
    return ome


def group_metadata(ome: Mapping[str, Any]) -> dict[str, Any]:
    """The image group's ``zarr.json`` document."""
    return {"zarr_format": 3, "node_type": "group", "attributes": {"ome": dict(ome)}}
