"""Multiscale pyramids: which levels an image gets, how a block is reduced 2x, and how the levels are
assembled from the blocks of level 0 while it uploads.

Each level is the previous one reduced 2x in y/x (and in z where z is still at least twice finer than
x): by the mean for intensity images, by nearest sampling (the top-left pixel of each window) for masks
and labels, so a label level holds only values level 0 holds. Level ``k + 1`` is built from the finished
shards of level ``k`` (`PyramidBuilder`): every level-0 block that is written feeds the next level's
open shards, and a shard that is complete is handed back to be encoded and written in turn. Nothing is
read back from the store, and for a dask input only the open shards of each level are held in memory
(a shard is at most ~32 MiB, and shards complete in the order level 0 is written).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from mikro._exceptions import ValidationError
from mikro.datalayer._layout import TARGET_SHARD_BYTES, ImageLayout, choose_layout

__all__ = [
    "PYRAMID_THRESHOLD",
    "Method",
    "PyramidBuilder",
    "PyramidOption",
    "downsample",
    "method_for_variety",
    "plan_levels",
]

#: With ``pyramid="auto"``, levels are added until the coarsest fits in this many pixels in y and x.
PYRAMID_THRESHOLD = 1024
#: `downsample` averages blocks larger than this in bands of about this size.
BAND_BYTES = 4 * 2**20
#: Most levels an image gets (2**16 times smaller than level 0 is smaller than any image).
MAX_LEVELS = 16

#: ``"auto"`` (levels while y/x exceed `PYRAMID_THRESHOLD`), None (level 0 only) or a number of levels
#: below level 0.
PyramidOption = Literal["auto"] | int | None
#: How a level is reduced: the mean of each 2x window, or its top-left pixel (masks and labels).
Method = Literal["mean", "nearest"]


def method_for_variety(variety: str) -> Method:
    """Masks and labels keep their values (nearest); every other image is averaged."""
    return "nearest" if str(variety) in ("MASK", "LABEL") else "mean"


def _z_finer(layout: ImageLayout, sizes: Mapping[str, float], factors: Sequence[int]) -> bool:
    """Whether z is still at least twice finer than x at this level (known pixel sizes only)."""
    if "z" not in layout.dims or "z" not in sizes or "x" not in sizes:
        return False
    zi, xi = layout.dims.index("z"), layout.dims.index("x")
    return sizes["z"] * factors[zi] * 2 <= sizes["x"] * factors[xi]


def _aligned(layout: ImageLayout, i: int) -> bool:
    # Shards starting on even indices (an even shard size, or one shard across the axis): no 2x window
    # straddles two shards, so each shard reduces alone.
    return layout.shards[i] % 2 == 0 or layout.shards[i] >= layout.shape[i]


def _reduced_axes(layout: ImageLayout, sizes: Mapping[str, float], factors: Sequence[int]) -> tuple[int, ...]:
    """The axes the next level halves: y/x, and z while it is at least twice finer than x."""
    axes = []
    for i, d in enumerate(layout.dims):
        if layout.shape[i] < 2 or not _aligned(layout, i):
            continue
        if d in ("y", "x") or (d == "z" and _z_finer(layout, sizes, factors)):
            axes.append(i)
    return tuple(axes)


def _even_z(layout: ImageLayout) -> ImageLayout:
    """``layout`` with an odd z shard doubled (large planes get one plane per shard), so z can be halved."""
    zi = layout.dims.index("z")
    if _aligned(layout, zi):
        return layout
    return replace(layout, shards=tuple(s * 2 if i == zi else s for i, s in enumerate(layout.shards)))


def plan_levels(
    base: ImageLayout,
    pixel_size: Mapping[str, float],
    pyramid: PyramidOption,
    *,
    threshold: int = PYRAMID_THRESHOLD,
    target_shard_bytes: int = TARGET_SHARD_BYTES,
) -> tuple[list[ImageLayout], list[tuple[int, ...]]]:
    """Every level's layout (level 0 first) and its downsampling factors per dim relative to level 0.

    Level 0's layout is ``base``, or ``base`` with two planes per shard where z is to be halved.
    """
    if pyramid is None or pyramid == 0:
        return [base], [(1,) * base.ndim]
    if pyramid != "auto" and (isinstance(pyramid, bool) or not isinstance(pyramid, int) or pyramid < 0):
        raise ValidationError(f"pyramid must be 'auto', None or a number of levels >= 0, not {pyramid!r}")
    wanted = MAX_LEVELS if pyramid == "auto" else min(int(pyramid), MAX_LEVELS)
    yx = [base.dims.index("y"), base.dims.index("x")]
    layouts, factors = [base], [(1,) * base.ndim]
    while len(layouts) <= wanted:
        last = layouts[-1]
        if pyramid == "auto" and max(last.shape[i] for i in yx) <= threshold:
            break
        if _z_finer(last, pixel_size, factors[-1]):
            last = layouts[-1] = _even_z(last)
        axes = _reduced_axes(last, pixel_size, factors[-1])
        if not any(i in axes for i in yx):
            break
        shape = [math.ceil(n / 2) if i in axes else n for i, n in enumerate(last.shape)]
        layout = choose_layout(
            shape,
            base.dtype,
            base.dims,
            compression=base.compression,
            level=base.level,
            target_shard_bytes=target_shard_bytes,
            path=str(len(layouts)),
            separator=base.separator,
        )
        layouts.append(layout)
        factors.append(tuple(f * 2 if i in axes else f for i, f in enumerate(factors[-1])))
    return layouts, factors


def downsample(block: np.ndarray[Any, Any], axes: Sequence[int], method: Method) -> np.ndarray[Any, Any]:
    """``block`` reduced 2x along ``axes``; an odd edge keeps its last pixel (its window holds only it).

    The mean is rounded half up for integer types and computed in a wider type, so it cannot overflow.
    """
    if not axes:
        return block
    if method == "nearest" or block.dtype.kind == "b":
        return np.ascontiguousarray(
            block[tuple(slice(None, None, 2) if i in axes else slice(None) for i in range(block.ndim))]
        )
    # In bands along the outermost axis: the wide temporaries of the mean then stay a few MiB, not
    # several times a 32 MiB shard (and the bands stay in cache).
    band_axis = next((i for i, n in enumerate(block.shape) if n > 2), None)
    if block.nbytes <= BAND_BYTES or band_axis is None:
        return _mean(block, axes)
    length = block.shape[band_axis]
    step = max(1, BAND_BYTES * length // block.nbytes)
    if band_axis in axes:
        step = max(2, step - step % 2)  # bands start on even indices: no 2x window is split
    out = np.empty(
        tuple(math.ceil(n / 2) if i in axes else n for i, n in enumerate(block.shape)), dtype=block.dtype
    )
    lead = (slice(None),) * band_axis
    for start in range(0, length, step):
        reduced = _mean(block[(*lead, slice(start, start + step))], axes)
        first = start // 2 if band_axis in axes else start
        out[(*lead, slice(first, first + reduced.shape[band_axis]))] = reduced
    return out


def _mean(block: np.ndarray[Any, Any], axes: Sequence[int]) -> np.ndarray[Any, Any]:
    pad = [(0, block.shape[i] % 2 if i in axes else 0) for i in range(block.ndim)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    kind, size = block.dtype.kind, block.dtype.itemsize
    exact = kind in "iu" and size <= 4
    wide = np.dtype(f"{kind}{4 if size <= 2 else 8}") if exact else np.dtype(np.float64)
    # Pairs of strided slices added axis by axis: several times faster than a reshape and a sum over
    # the window axes (numpy reduces short inner axes slowly).
    total: np.ndarray[Any, Any] | None = None
    for axis in axes:
        source = block if total is None else total
        even = source[(slice(None),) * axis + (slice(0, None, 2),)]
        odd = source[(slice(None),) * axis + (slice(1, None, 2),)]
        if total is None:
            total = even.astype(wide)
            total += odd
        else:
            total = even + odd
    assert total is not None
    shift = len(axes)
    if exact:
        total += 1 << (shift - 1)  # then a floor division by 2**shift: the mean rounded half up
        total >>= shift
        reduced: np.ndarray[Any, Any] = total.astype(block.dtype)
        return reduced
    total *= 1.0 / (1 << shift)
    if kind in "iu":
        total = np.floor(total + 0.5)
    reduced = total.astype(block.dtype)
    return reduced


@dataclass
class _Open:
    """A shard of a coarser level being filled: its pixels, and how many of them have arrived."""

    region: tuple[slice, ...]
    buffer: np.ndarray[Any, Any]
    missing: int


#: A finished block of one level: ``(level, shard position, region, pixels)``.
Block = tuple[int, tuple[int, ...], tuple[slice, ...], np.ndarray[Any, Any]]


class PyramidBuilder:
    """Assembles levels 1, 2, ... from the finished shards of the level above (thread-safe)."""

    def __init__(self, layouts: Sequence[ImageLayout], factors: Sequence[tuple[int, ...]], method: Method):
        self.layouts = list(layouts)
        self.method = method
        self._axes = [
            tuple(i for i, (a, b) in enumerate(zip(factors[k], factors[k + 1], strict=True)) if b != a)
            for k in range(len(layouts) - 1)
        ]
        self._open: list[dict[tuple[int, ...], _Open]] = [{} for _ in layouts]
        self._lock = threading.Lock()

    @property
    def open_bytes(self) -> int:
        """Memory held by the shards being filled."""
        with self._lock:
            return sum(o.buffer.nbytes for level in self._open for o in level.values())

    def add(self, level: int, region: Sequence[slice], block: np.ndarray[Any, Any]) -> list[Block]:
        """Feed the finished shard ``region`` of ``level``; returns the coarser shards it completed."""
        done: list[Block] = []
        pending = [(level, tuple(region), block)]
        while pending:
            k, reg, blk = pending.pop()
            if k + 1 >= len(self.layouts):
                continue
            axes = self._axes[k]
            reduced = downsample(blk, axes, self.method)
            start = [s.start // 2 if i in axes else s.start for i, s in enumerate(reg)]
            for finished in self._place(k + 1, start, reduced):
                done.append(finished)
                pending.append((finished[0], finished[2], finished[3]))
        return done

    def _place(self, level: int, start: Sequence[int], part: np.ndarray[Any, Any]) -> list[Block]:
        layout = self.layouts[level]
        first = [s // n for s, n in zip(start, layout.shards, strict=True)]
        last = [(s + m - 1) // n for s, m, n in zip(start, part.shape, layout.shards, strict=True)]
        finished: list[Block] = []
        for position in np.ndindex(*(b - a + 1 for a, b in zip(first, last, strict=True))):
            pos = tuple(a + p for a, p in zip(first, position, strict=True))
            region = layout.shard_region(pos)
            lo = [max(r.start, s) for r, s in zip(region, start, strict=True)]
            hi = [min(r.stop, s + m) for r, s, m in zip(region, start, part.shape, strict=True)]
            source = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
            target = tuple(slice(a - r.start, b - r.start) for a, b, r in zip(lo, hi, region, strict=True))
            with self._lock:
                entry = self._open[level].get(pos)
                if entry is None:
                    shape = tuple(r.stop - r.start for r in region)
                    buffer = np.empty(shape, dtype=layout.dtype)
                    entry = self._open[level][pos] = _Open(region, buffer, math.prod(shape))
            # Different blocks fill disjoint parts of a shard: copies need no lock, the count does.
            entry.buffer[target] = part[source]
            with self._lock:
                entry.missing -= math.prod(b - a for a, b in zip(lo, hi, strict=True))
                if entry.missing == 0:
                    del self._open[level][pos]
                    finished.append((level, pos, region, entry.buffer))
        return finished
