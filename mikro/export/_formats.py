"""Write one image (a lazy ``xarray.DataArray`` from ``rep.data``) to a file chosen by its suffix.

Blocking: call it from a script, the CLI or a worker thread, never on an event loop. Memory stays
bounded whatever the image's size: the pixels are read slab by slab (whole y/x planes, as many along
the last non-plane axis as one dask chunk holds) and each slab is written before the next is read, by
the format's own library: tifffile for OME-TIFF (fed a generator of planes; channel names and pixel
sizes in its OME-XML), zarr for a standalone OME-Zarr 0.5 image (every pyramid level), a numpy
memmap for ``.npy``. Only PNG, one 2-D plane, is read whole.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mikro._exceptions import ValidationError

__all__ = ["FORMATS", "check_export", "export_image", "format_of", "parse_isel"]

#: Suffix -> format name (longest suffixes first, so ``.ome.tif`` is not read as ``.tif`` only).
FORMATS: dict[str, str] = {
    ".ome.tiff": "ome-tiff",
    ".ome.tif": "ome-tiff",
    ".tiff": "ome-tiff",
    ".tif": "ome-tiff",
    ".ome.zarr": "ome-zarr",
    ".zarr": "ome-zarr",
    ".npy": "npy",
    ".png": "png",
}

Progress = Callable[[int, int], None]
Box = tuple[slice, ...]


def format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ValidationError(
        f"cannot tell the format of {path.name!r}: its name must end with one of {', '.join(FORMATS)}"
    )


def parse_isel(items: Sequence[str], dims: Sequence[str]) -> dict[str, int | slice]:
    """``["z=10", "c=0", "t=2:5"]`` as an ``isel`` mapping, checked against ``dims``."""
    selection: dict[str, int | slice] = {}
    for item in items:
        dim, sep, value = item.partition("=")
        dim = dim.strip()
        if not sep or dim not in dims:
            raise ValidationError(
                f"--isel takes DIM=INDEX (or DIM=START:STOP) with DIM one of {', '.join(dims)}; got {item!r}"
            )
        try:
            if ":" in value:
                start, _, stop = value.partition(":")
                selection[dim] = slice(int(start) if start else None, int(stop) if stop else None)
            else:
                selection[dim] = int(value)
        except ValueError:
            raise ValidationError(f"--isel {item!r}: the index must be an integer or START:STOP") from None
    return selection


def export_image(
    data: Any,
    path: Path,
    *,
    pixel_size: Mapping[str, float | None] | None = None,
    progress: Progress | None = None,
    levels: Sequence[Any] = (),
    ome: Mapping[str, Any] | None = None,
) -> str:
    """Write ``data`` (an ``xarray.DataArray``) to ``path`` in the format its suffix names; returns it.

    For OME-Zarr, ``levels`` (every pyramid level, ``data`` first) and ``ome`` (the stored group's
    ``ome`` attribute, which names those levels' paths) make the export a copy of the stored image;
    without them it is one level with metadata made from ``data``.
    """
    fmt = check_export(data, path)
    dims = [str(d) for d in data.dims]
    sizes = {k: float(v) for k, v in (pixel_size or {}).items() if v is not None and k in dims}
    channel_names = [str(c) for c in data.coords["c"].values] if "c" in data.coords and "c" in dims else None
    name = str(data.name or path.stem)
    arrays = list(levels) or [data]
    total = sum(int(a.size) * np.dtype(a.dtype).itemsize for a in (arrays if fmt == "ome-zarr" else [data]))
    tick = _Ticker(progress, total)
    if fmt == "ome-tiff":
        _write_tiff(path, data, dims, sizes, channel_names, name, tick)
    elif fmt == "ome-zarr":
        _write_zarr(path, arrays, ome, dims, sizes, channel_names, name, tick)
    elif fmt == "npy":
        _write_npy(path, data, tick)
    else:
        _write_png(path, data, tick)
    tick.done()
    return fmt


def check_export(data: Any, path: Path) -> str:
    """The format ``path`` names, once it is known to hold ``data``; raises ValidationError if not."""
    fmt = format_of(path)
    if fmt == "png" and (data.ndim != 2 or np.dtype(data.dtype) not in (np.uint8, np.uint16)):
        raise ValidationError(
            f"PNG holds one 2-D uint8 or uint16 plane; this selection is {dict(data.sizes)} {data.dtype}: "
            "pick a plane with --isel (e.g. --isel z=0 --isel c=0) or export to .ome.tif / .zarr / .npy"
        )
    if fmt == "ome-zarr" and path.exists():
        raise ValidationError(f"{path} exists already: an OME-Zarr export does not overwrite a directory")
    return fmt


class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.seen = progress, total, 0
        if progress is not None:
            progress(0, total)

    def add(self, nbytes: int) -> None:
        self.seen += nbytes
        if self.progress is not None:
            self.progress(self.seen, self.total)

    def done(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total)


def _slab_step(data: Any) -> int:
    """How many indices of the last non-plane axis one slab spans: one dask chunk's worth."""
    lead = max(data.ndim - 2, 0)
    chunks = data.chunks  # None for an in-memory array
    return max(int(chunks[lead - 1][0]) if lead and chunks is not None else 1, 1)


def _slabs(data: Any) -> Iterator[tuple[Box, np.ndarray[Any, Any]]]:
    """``data`` in C order as contiguous slabs: one index of every leading axis but the last non-plane
    one, a dask chunk's worth of that one, whole y/x planes. Each is read (computed) only when asked."""
    lead = max(data.ndim - 2, 0)
    if lead == 0:
        box: Box = tuple(slice(None) for _ in range(data.ndim))
        yield box, np.asarray(data.values)
        return
    step = _slab_step(data)
    outer = [range(n) for n in data.shape[: lead - 1]]
    last = data.shape[lead - 1]
    for index in itertools.product(*outer):
        for start in range(0, last, step):
            box = (
                *(slice(i, i + 1) for i in index),
                slice(start, min(start + step, last)),
                *(slice(None) for _ in range(data.ndim - lead)),
            )
            yield box, np.asarray(data[box].values)


def _write_tiff(
    path: Path,
    data: Any,
    dims: list[str],
    sizes: dict[str, float],
    channels: list[str] | None,
    name: str,
    tick: _Ticker,
) -> None:
    import tifffile

    metadata: dict[str, Any] = {"axes": "".join(dims).upper(), "Name": name}
    for dim, unit in (("x", "µm"), ("y", "µm"), ("z", "µm")):
        if dim in sizes:
            metadata[f"PhysicalSize{dim.upper()}"] = sizes[dim]
            metadata[f"PhysicalSize{dim.upper()}Unit"] = unit
    if "t" in sizes:
        metadata["TimeIncrement"] = sizes["t"]
        metadata["TimeIncrementUnit"] = "s"
    if channels:
        metadata["Channel"] = {"Name": channels}

    def planes() -> Iterator[np.ndarray[Any, Any]]:
        for _, slab in _slabs(data):
            yield from slab.reshape(-1, *slab.shape[-2:])  # tifffile takes one page at a time
            tick.add(int(slab.nbytes))

    tifffile.imwrite(
        path,
        planes(),
        shape=tuple(data.shape),
        dtype=np.dtype(data.dtype),
        ome=True,
        photometric="minisblack",
        metadata=metadata,
    )


def _write_zarr(
    path: Path,
    levels: list[Any],
    ome: Mapping[str, Any] | None,
    dims: list[str],
    sizes: dict[str, float],
    channels: list[str] | None,
    name: str,
    tick: _Ticker,
) -> None:
    import zarr

    from mikro.datalayer._layout import ome_attributes

    if ome is None or len(ome["multiscales"][0]["datasets"]) != len(levels):
        made = ome_attributes(dims, sizes, name=name)
        if channels:
            made["omero"] = {"channels": [{"label": label} for label in channels]}
        ome, levels = made, levels[:1]
    paths = [str(d["path"]) for d in ome["multiscales"][0]["datasets"]]
    group = zarr.open_group(
        str(path), mode="w", zarr_format=3, attributes={"ome": json.loads(json.dumps(ome))}
    )
    for array_path, level in zip(paths, levels, strict=True):
        step = _slab_step(level)
        lead = max(level.ndim - 2, 0)
        chunks = tuple(
            (step if i == lead - 1 else 1) if i < lead else min(n, 1024) for i, n in enumerate(level.shape)
        )
        array = group.create_array(
            array_path,
            shape=tuple(level.shape),
            dtype=np.dtype(level.dtype),
            chunks=chunks,
            dimension_names=dims,
        )
        for box, slab in _slabs(level):
            array[box] = slab
            tick.add(int(slab.nbytes))


def _write_npy(path: Path, data: Any, tick: _Ticker) -> None:
    from numpy.lib.format import open_memmap

    shape, dtype = tuple(data.shape), np.dtype(data.dtype)
    open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # the header; the file at full size
    for box, slab in _slabs(data):
        # A memmap per slab: its written pages leave this process's memory when it is unmapped.
        out = open_memmap(path, mode="r+")
        out[box] = slab
        out.flush()
        del out
        tick.add(int(slab.nbytes))


def _write_png(path: Path, data: Any, tick: _Ticker) -> None:
    from PIL import Image

    values = np.asarray(data.values)
    Image.fromarray(values).save(path, format="PNG")
    tick.add(int(values.nbytes))
