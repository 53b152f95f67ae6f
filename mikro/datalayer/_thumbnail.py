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


def _to_uint8(plane: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    values = plane.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(plane.shape, dtype=np.uint8)
    # Percentiles, not min/max: one hot pixel must not turn the thumbnail black.
    lo, hi = np.percentile(values[finite], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((np.where(finite, values, lo) - lo) / (hi - lo), 0.0, 1.0)
    out: np.ndarray[Any, np.dtype[np.uint8]] = (scaled * 255.0 + 0.5).astype(np.uint8)
    return out


def make_thumbnail(projection: np.ndarray[Any, Any], *, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A grey PNG, longest side at most ``side`` pixels, from a 2-D (y, x) projection."""
    if projection.ndim != 2:
        raise ValueError(f"a thumbnail is made from a 2-D projection, not {projection.ndim}-D")
    img = Image.fromarray(_to_uint8(projection), mode="L")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return Thumbnail(buf.getvalue(), img.width, img.height)
