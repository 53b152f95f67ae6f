"""A small PNG of an image from its max projection (Pillow)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["THUMBNAIL_SIDE", "Thumbnail", "make_thumbnail"]

THUMBNAIL_SIDE = 256


class Thumbnail:
    """PNG bytes and their pixel size."""

    def __init__(self, png: bytes, width: int, height: int) -> None:
        self.png = png
        self.width = width
        self.height = height

    def __repr__(self) -> str:
        return f"Thumbnail({self.width}x{self.height}, {len(self.png)} bytes)"


def _downsample(plane: np.ndarray[Any, Any], side: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Box-average ``plane`` by the largest integer factor that keeps its longest side at least ``side``.

    Averaging before scaling to 8 bits makes the percentiles and the PNG encoding work on about the
    thumbnail's pixels only (a quarter of a 512-pixel projection), which is most of the thumbnail's cost.
    """
    values = plane.astype(np.float32)
    factor = max(1, max(plane.shape) // side)
    if factor == 1:
        return values
    h, w = (n // factor for n in plane.shape)
    if h == 0 or w == 0:
        return values[::factor, ::factor]
    out = np.zeros((h, w), dtype=np.float32)
    for dy in range(factor):
        for dx in range(factor):
            out += values[dy : h * factor : factor, dx : w * factor : factor]
    out *= 1.0 / (factor * factor)
    return out


def _to_uint8(values: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite and not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    # Percentiles, not min/max: one hot pixel must not turn the thumbnail black.
    lo, hi = (float(v) for v in np.percentile(values if all_finite else values[finite], [0.5, 99.5]))
    if hi <= lo:
        hi = lo + 1.0
    if not all_finite:
        values = np.where(finite, values, lo)
    scaled = (values - lo) * (255.0 / (hi - lo)) + 0.5
    out: np.ndarray[Any, np.dtype[np.uint8]] = np.clip(scaled, 0.0, 255.0).astype(np.uint8)
    return out


def make_thumbnail(projection: np.ndarray[Any, Any], *, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A grey PNG, longest side at most ``side`` pixels, from a 2-D (y, x) projection."""
    if projection.ndim != 2:
        raise ValueError(f"a thumbnail is made from a 2-D projection, not {projection.ndim}-D")
    img = Image.fromarray(_to_uint8(_downsample(projection, side)), mode="L")
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.BOX)
    buf = io.BytesIO()
    # The fastest zlib level: a thumbnail is small either way, and it is made once per uploaded image.
    img.save(buf, format="PNG", compress_level=1)
    return Thumbnail(buf.getvalue(), img.width, img.height)
