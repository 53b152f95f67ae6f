"""Write one image (a lazy ``xarray.DataArray`` from ``rep.data``) to a file chosen by its suffix.

Blocking: call it from a script, the CLI or a worker thread, never on an event loop. The pixels are
read slab by slab along the first axis (so a progress callback sees them arrive), then written by
the format's own library: tifffile for OME-TIFF (channel names and pixel sizes in its OME-XML),
zarr for a standalone OME-Zarr 0.5 image, numpy for ``.npy``, Pillow for PNG.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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
) -> str:
    """Write ``data`` (an ``xarray.DataArray``) to ``path`` in the format its suffix names; returns it."""
    fmt = check_export(data, path)
    dims = [str(d) for d in data.dims]
    values = _read(data, progress)
    sizes = {k: float(v) for k, v in (pixel_size or {}).items() if v is not None and k in dims}
    channel_names = [str(c) for c in data.coords["c"].values] if "c" in data.coords and "c" in dims else None
    _WRITERS[fmt](path, values, dims, sizes, channel_names, str(data.name or path.stem))
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


def _read(data: Any, progress: Progress | None) -> np.ndarray[Any, Any]:
    out = np.empty(data.shape, dtype=data.dtype)
    total = int(out.nbytes)
    if progress is not None:
        progress(0, total)
    if out.ndim <= 2 or out.shape[0] <= 1:
        out[...] = data.values
    else:
        for i in range(out.shape[0]):
            out[i] = data[i].values
            if progress is not None:
                progress(int(out[: i + 1].nbytes), total)
    if progress is not None:
        progress(total, total)
    return out


def _write_tiff(
    path: Path,
    values: np.ndarray[Any, Any],
    dims: list[str],
    sizes: dict[str, float],
    channels: list[str] | None,
    name: str,
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
    tifffile.imwrite(path, values, ome=True, photometric="minisblack", metadata=metadata)


def _write_zarr(
    path: Path,
    values: np.ndarray[Any, Any],
    dims: list[str],
    sizes: dict[str, float],
    channels: list[str] | None,
    name: str,
) -> None:
    import zarr

    from mikro.datalayer._layout import ARRAY_PATH, ome_attributes

    ome = ome_attributes(dims, sizes, name=name)
    if channels:
        ome["omero"] = {"channels": [{"label": label} for label in channels]}
    group = zarr.open_group(
        str(path), mode="w", zarr_format=3, attributes={"ome": json.loads(json.dumps(ome))}
    )
    chunks = tuple(min(n, 1 if i < len(dims) - 2 else 1024) for i, n in enumerate(values.shape))
    array = group.create_array(
        ARRAY_PATH, shape=values.shape, dtype=values.dtype, chunks=chunks, dimension_names=dims
    )
    array[...] = values


def _write_npy(path: Path, values: np.ndarray[Any, Any], *_: Any) -> None:
    np.save(path, values)


def _write_png(path: Path, values: np.ndarray[Any, Any], *_: Any) -> None:
    from PIL import Image

    Image.fromarray(values).save(path, format="PNG")


_WRITERS: dict[str, Callable[..., None]] = {
    "ome-tiff": _write_tiff,
    "ome-zarr": _write_zarr,
    "npy": _write_npy,
    "png": _write_png,
}
