"""Check an image before anything is written, and bring it into storage (OME) axis order.

Accepted: a numpy array, a dask array, an ``xarray.DataArray`` (numpy- or dask-backed; dims and pixel
size taken from it). Everything wrong with the input is a `mikro.ValidationError` raised here, before a
grant is requested or a byte is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mikro._exceptions import ValidationError
from mikro.datalayer._layout import AXIS_ORDER

if TYPE_CHECKING:
    import dask.array as da
    import xarray as xr

__all__ = ["DEFAULT_MAX_BYTES", "PreparedImage", "prepare_image"]

#: Images larger than this (uncompressed) are refused unless the caller raises the limit.
DEFAULT_MAX_BYTES = 2**40

_PHYSICAL = ("t", "z", "y", "x")


@dataclass(frozen=True)
class PreparedImage:
    """A validated image in storage axis order (``t, c, z, y, x`` subset), not yet read."""

    array: np.ndarray[Any, Any] | da.Array
    dims: tuple[str, ...]
    pixel_size: dict[str, float] = field(default_factory=dict)
    channel_names: tuple[str, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self.array.dtype)
        return dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def is_lazy(self) -> bool:
        import dask.array as da

        return isinstance(self.array, da.Array)


def _parse_dims(dims: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(dims, str):
        return tuple(dims) if "," not in dims else tuple(d.strip() for d in dims.split(","))
    return tuple(str(d) for d in dims)


def _check_dims(dims: tuple[str, ...], ndim: int) -> None:
    unknown = [d for d in dims if d not in AXIS_ORDER]
    if unknown:
        raise ValidationError(f"unknown dims {unknown}: an image's dims are a subset of c, t, z, y, x")
    if len(set(dims)) != len(dims):
        raise ValidationError(f"repeated dims in {list(dims)}")
    if len(dims) != ndim:
        raise ValidationError(f"dims {list(dims)} name {len(dims)} axes but the array has {ndim}")
    if "y" not in dims or "x" not in dims:
        raise ValidationError(f"an image needs y and x axes; got dims {list(dims)}")


def _pixel_size_mapping(pixel_size: Any) -> dict[str, float]:
    if pixel_size is None:
        return {}
    if isinstance(pixel_size, Mapping):
        items = dict(pixel_size)
    else:  # a PhysicalSize-like object with x/y/z/t attributes (the API model)
        items = {d: getattr(pixel_size, d, None) for d in _PHYSICAL}
    out: dict[str, float] = {}
    for key, value in items.items():
        if value is None:
            continue
        if key not in _PHYSICAL:
            raise ValidationError(f"pixel_size has unknown axis {key!r} (known: t, z, y, x)")
        try:
            size = float(value)
        except (TypeError, ValueError):
            raise ValidationError(f"pixel_size[{key!r}] = {value!r} is not a number") from None
        if not math.isfinite(size) or size <= 0:
            raise ValidationError(f"pixel_size[{key!r}] must be a positive finite number, not {value!r}")
        out[key] = size
    return out


def _spacing_from_coords(arr: xr.DataArray, dim: str) -> float | None:
    if dim not in arr.coords:
        return None
    coord = np.asarray(arr.coords[dim].values)
    if coord.dtype.kind not in "iuf":
        raise ValidationError(f"coordinates along {dim!r} must be numeric, not {coord.dtype}")
    if not np.all(np.isfinite(coord)):
        raise ValidationError(f"coordinates along {dim!r} contain NaN or infinite values")
    if coord.size < 2:
        return None
    steps = np.diff(coord.astype(np.float64))
    step = float(steps[0])
    if step <= 0 or not np.allclose(steps, step, rtol=1e-6, atol=0):
        raise ValidationError(
            f"coordinates along {dim!r} must be increasing and evenly spaced (mikro stores a pixel size)"
        )
    return step


def prepare_image(
    data: Any,
    *,
    dims: str | Sequence[str] | None = None,
    pixel_size: Any = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PreparedImage:
    """Validate ``data`` and return it (still lazy if it was) in storage axis order."""
    channel_names: tuple[str, ...] | None = None
    sizes = _pixel_size_mapping(pixel_size)
    # Imported here, not at module level, so that importing mikro stays cheap; a session has already
    # loaded both off its event loop (mikro.datalayer._warmup).
    import dask.array as da
    import xarray as xr

    if isinstance(data, xr.DataArray):
        own_dims = tuple(str(d) for d in data.dims)
        if dims is not None and _parse_dims(dims) != own_dims:
            raise ValidationError(
                f"dims {list(_parse_dims(dims))} disagree with the DataArray's {list(own_dims)}"
            )
        _check_dims(own_dims, data.ndim)
        for d in _PHYSICAL:
            if d in own_dims and d not in sizes:
                step = _spacing_from_coords(data, d)
                if step is not None:
                    sizes[d] = step
        if "c" in data.coords:
            labels = np.asarray(data.coords["c"].values)
            if labels.dtype.kind in "US":
                channel_names = tuple(str(v) for v in labels)
        array: Any = data.data
        dims_t = own_dims
    else:
        if isinstance(data, np.ndarray | da.Array):
            array = data
        elif hasattr(data, "__array__") or isinstance(data, list | tuple):
            array = np.asarray(data)
        else:
            raise ValidationError(f"cannot store a {type(data).__name__}: pass a numpy, dask or xarray array")
        if dims is None:
            if array.ndim != 2:
                raise ValidationError(
                    f"dims are ambiguous for a {array.ndim}-D array: pass dims= (a subset of c, t, z, y, x)"
                )
            dims_t = ("y", "x")
        else:
            dims_t = _parse_dims(dims)
        _check_dims(dims_t, array.ndim)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValidationError(f"dtype {dtype} is not supported: use a bool, integer or float dtype")
    if any(isinstance(n, float) and math.isnan(n) for n in array.shape):
        raise ValidationError(
            "a dask array with unknown chunk sizes cannot be stored; call compute_chunk_sizes()"
        )
    shape = tuple(int(n) for n in array.shape)
    if any(n == 0 for n in shape):
        raise ValidationError(f"the array is empty (shape {shape})")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValidationError(f"the image is {nbytes} bytes, over the limit of {max_bytes} (max_bytes=)")
    extra = set(sizes) - set(dims_t)
    for d in extra:
        del sizes[d]
    order = tuple(d for d in AXIS_ORDER if d in dims_t)
    if order != dims_t:
        axes = [dims_t.index(d) for d in order]
        array = array.transpose(axes)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("<"))
    return PreparedImage(array=array, dims=order, pixel_size=sizes, channel_names=channel_names)
