"""A small PNG of an image from its max projection, and that projection.

Made once per image, so its CPU cost counts against every image: box-average down to about the
thumbnail's size first (everything after works on ~64 k pixels), contrast from percentiles of an even
sample of ~8 k pixels (sorted: numpy's vectorised sort beats a partition there), and a PNG written here
(see `encode_png`) with ISA-L's deflate.

A big image's client makes it while it uploads (from the coarsest level's projection) and sends it with
the registration. An image of one shard and no coarser level (`made_on_read`) is registered with the
thumbnail's size alone (`thumbnail_size`): the server makes the PNG from the stored pixels the first
time it is read (`thumbnail_of_image`, the same projection and code) and keeps it as `THUMBNAIL_OBJECT`.
The ingest of small files is bound by the client's one core (the GIL), while the server's core idles;
and a screening UI shows few of the thumbnails of the images a plate produces.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from isal import isal_zlib
from PIL import Image

__all__ = [
    "MADE_ON_READ_MAX_BYTES",
    "PROJECTION_SIDE",
    "THUMBNAIL_OBJECT",
    "THUMBNAIL_SIDE",
    "MaxProjection",
    "Thumbnail",
    "encode_png",
    "made_on_read",
    "make_thumbnail",
    "small_image_thumbnail",
    "thumbnail_of_image",
    "thumbnail_size",
]

THUMBNAIL_SIDE = 256
#: Longest side of the max projection a thumbnail is made from (sampled on a grid, see `MaxProjection`).
PROJECTION_SIDE = 512
#: Largest image (uncompressed bytes) whose thumbnail the server makes when it is first read: one shard
#: (mikro aims at 32 MiB shards), a few tens of milliseconds of one worker thread.
MADE_ON_READ_MAX_BYTES = 64 * 2**20
#: Where a thumbnail written beside its image goes, relative to the image's store (the server reads it
#: from there). Inside the level-0 array's prefix, not at the group's root: zarr lists a group's
#: children and warns about every object there that is not a node, and it never lists an array's.
THUMBNAIL_OBJECT = "0/thumbnail.png"
#: Contrast stretch between these percentiles: one hot pixel must not turn the thumbnail black.
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
#: About how many pixels the percentiles are taken from (every n-th of the downsampled projection).
PERCENTILE_SAMPLE = 8192

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2


class Thumbnail:
    """PNG bytes and their pixel size; ``key``: the object it was written to beside its image (None:
    not in the store). ``png`` None: not made here; the server makes it at ``key`` when first read."""

    def __init__(self, png: bytes | None, width: int, height: int, key: str | None = None) -> None:
        self.png = png
        self.width = width
        self.height = height
        self.key = key

    def __repr__(self) -> str:
        made = "made on read" if self.png is None else f"{len(self.png)} bytes"
        return f"Thumbnail({self.width}x{self.height}, {made})"


def made_on_read(shape: Sequence[int], shards: Sequence[int], itemsize: int) -> bool:
    """Whether the server makes the thumbnail of an image whose level 0 has this ``shape`` and
    ``shards`` when it is first read: one shard of at most `MADE_ON_READ_MAX_BYTES`. (The client leaves
    it to the server only for images without coarser levels, see `small_image_thumbnail`; levels added
    later change nothing: the PNG is made from level 0, as the client would have made it.)"""
    one_shard = all(n <= s for n, s in zip(shape, shards, strict=True))
    return one_shard and math.prod(shape) * itemsize <= MADE_ON_READ_MAX_BYTES


class MaxProjection:
    """Max projection over every axis but y/x of an image of ``shape``, sampled on a grid of step
    ``step`` (thread-safe: blocks may be added from several threads)."""

    def __init__(self, shape: Sequence[int], dtype: np.dtype[Any]) -> None:
        ny, nx = shape[-2:]
        self.step = _projection_step(ny, nx)
        if dtype.kind == "b":
            low: Any = False
        elif dtype.kind == "f":
            low = -np.inf
        else:
            low = np.iinfo(dtype).min
        self._shape = (math.ceil(ny / self.step), math.ceil(nx / self.step))
        self._low = low
        self._dtype = dtype
        # Made on first use, in a worker thread: filling it cost the event loop ~0.25 ms per small image.
        self._image: np.ndarray[Any, Any] | None = None
        self._fmax = dtype.kind == "f"
        self._lock = threading.Lock()

    @property
    def image(self) -> np.ndarray[Any, Any]:
        with self._lock:
            if self._image is None:
                self._image = np.full(self._shape, self._low, dtype=self._dtype)
            return self._image

    def add(self, block: np.ndarray[Any, Any], region: Sequence[slice]) -> None:
        y0, x0 = region[-2].start, region[-1].start
        oy, ox = (-y0) % self.step, (-x0) % self.step
        sampled = block[..., oy :: self.step, ox :: self.step]
        if sampled.size == 0:
            return
        lead = tuple(range(sampled.ndim - 2))
        part = (np.fmax.reduce if self._fmax else np.maximum.reduce)(sampled, axis=lead) if lead else sampled
        gy, gx = (y0 + oy) // self.step, (x0 + ox) // self.step
        with self._lock:
            if self._image is None:
                if part.shape == self._shape and not self._fmax:
                    # One block covers the whole projection (a one-shard image): it is the projection
                    # (copied when it is a view of the caller's pixels).
                    self._image = part.astype(self._dtype, copy=not lead)
                    return
                self._image = np.full(self._shape, self._low, dtype=self._dtype)
            view = self._image[gy : gy + part.shape[0], gx : gx + part.shape[1]]
            (np.fmax if self._fmax else np.maximum)(view, part, out=view)


def _projection_step(ny: int, nx: int) -> int:
    return max(1, math.ceil(max(ny, nx) / PROJECTION_SIDE))


def thumbnail_of_image(pixels: np.ndarray[Any, Any]) -> Thumbnail:
    """The thumbnail of a whole image in memory (dims ending in y, x): `make_thumbnail` of its
    `MaxProjection`, as the client makes it while writing the image."""
    projection = MaxProjection(pixels.shape, pixels.dtype)
    projection.add(pixels, tuple(slice(0, n) for n in pixels.shape))
    return make_thumbnail(projection.image)


def small_image_thumbnail(pixels: np.ndarray[Any, Any]) -> Thumbnail:
    """The thumbnail `write_small_image` records for an image of one shard (``pixels``, whole): its
    size alone, the PNG left to the server (`made_on_read`); for one too large for that, made here."""
    if made_on_read(pixels.shape, pixels.shape, pixels.dtype.itemsize):
        return Thumbnail(None, *thumbnail_size(pixels.shape), key=THUMBNAIL_OBJECT)
    return thumbnail_of_image(pixels)


def thumbnail_size(shape: Sequence[int], side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """``(width, height)`` of the thumbnail `thumbnail_of_image` makes of an image of ``shape``,
    without its pixels: the size a registration announces for a thumbnail made on read."""
    ny, nx = shape[-2:]
    step = _projection_step(ny, nx)
    h, w = _downsampled_shape((math.ceil(ny / step), math.ceil(nx / step)), side)
    if max(h, w) <= side:
        return w, h
    # Pillow's `Image.thumbnail` (see `make_thumbnail`): the side that is not longest rounded to the
    # integer whose aspect ratio is nearest.
    aspect = w / h
    if aspect <= 1:
        return _round_aspect(side * aspect, lambda n: abs(aspect - n / side)), side
    return side, _round_aspect(side / aspect, lambda n: 0 if n == 0 else abs(aspect - side / n))


def _round_aspect(number: float, key: Any) -> int:
    return max(min(math.floor(number), math.ceil(number), key=key), 1)


def _factor(shape: Sequence[int], side: int) -> int:
    return max(1, max(shape) // side)


def _downsampled_shape(shape: tuple[int, int], side: int) -> tuple[int, int]:
    factor = _factor(shape, side)
    h, w = (n // factor for n in shape)
    if h == 0 or w == 0:
        return (math.ceil(shape[0] / factor), math.ceil(shape[1] / factor))
    return h, w


def _downsample(plane: np.ndarray[Any, Any], side: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Box-average ``plane`` by the largest integer factor that keeps its longest side at least ``side``."""
    factor = _factor(plane.shape, side)
    if factor == 1:
        return plane.astype(np.float32)
    h, w = (n // factor for n in plane.shape)
    if h == 0 or w == 0:
        return plane[::factor, ::factor].astype(np.float32)
    # The sum accumulates straight from the strided views of the native dtype: no float copy of the
    # whole projection is made first.
    out = plane[0 : h * factor : factor, 0 : w * factor : factor].astype(np.float32)
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                np.add(out, plane[dy : h * factor : factor, dx : w * factor : factor], out=out)
    out *= 1.0 / (factor * factor)
    return out


def _percentiles(values: np.ndarray[Any, np.dtype[np.float32]]) -> tuple[float, float]:
    """Nearest-rank low/high percentiles of a non-empty flat array."""
    last = values.size - 1
    k_lo = round(last * LOW_PERCENTILE / 100)
    k_hi = round(last * HIGH_PERCENTILE / 100)
    # A full sort, not np.partition: numpy's vectorised sort of the ~8 k sample takes 25 µs, a partition
    # at the two ranks 120.
    ordered = np.sort(values)
    return float(ordered[k_lo]), float(ordered[k_hi])


def _to_uint8(
    values: np.ndarray[Any, np.dtype[np.float32]], *, all_finite: bool = False
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Scale ``values`` (a fresh array: it is modified in place) to 0..255 between its percentiles.

    ``all_finite``: the caller knows there is no NaN or infinity (values from integer pixels), so the
    two passes that look for them are skipped.
    """
    if not all_finite:
        finite = np.isfinite(values)
        all_finite = bool(finite.all())
        if not all_finite and not finite.any():
            return np.zeros(values.shape, dtype=np.uint8)
    found = values.ravel() if all_finite else values[finite]
    # The percentiles of an even sample: a full partition of 64 k pixels cost as much as the PNG.
    lo, hi = _percentiles(found[:: max(1, found.size // PERCENTILE_SAMPLE)])
    if hi <= lo:
        hi = lo + 1.0
    if not all_finite:
        values[~finite] = lo
    # (v - lo) * scale + 0.5 in two passes over the pixels rather than three.
    scale = 255.0 / (hi - lo)
    values *= scale
    values += 0.5 - lo * scale
    np.clip(values, 0.0, 255.0, out=values)
    return values.astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", isal_zlib.crc32(kind + data))


def encode_png(image: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    """An 8-bit greyscale PNG of a 2-D uint8 array.

    Every row uses the "up" filter, deflated by ISA-L: measured on 256x256
    thumbnails this is ~4x cheaper than Pillow's encoder at ``compress_level=1`` (which searches all five
    filters on every row) and the files are as small or smaller (noisy camera image: 39 kB against 42 kB;
    smooth blobs: 6.7 kB against 7.5 kB).
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"a PNG is encoded from a 2-D uint8 array, not {image.ndim}-D {image.dtype}")
    h, w = image.shape
    rows = np.empty((h, w + 1), dtype=np.uint8)
    rows[:, 0] = _FILTER_UP
    if h:
        rows[0, 1:] = image[0]  # the row above the first one counts as zeros
        np.subtract(image[1:], image[:-1], out=rows[1:, 1:])  # modulo 256, as PNG wants
    # ISA-L's deflate at level 1: 0.16 ms for a noisy 256x256 thumbnail, where zlib-ng's best strategy
    # (Huffman codes alone) took 0.25 and the stdlib's zlib 0.50, for 38.0 kB against 37.0; a smooth blob
    # is 4.2 kB (zlib-ng's run-length matches: 4.4).
    idat = isal_zlib.compress(rows.data, 1)
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grey, deflate, filtered, no interlace
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def make_thumbnail(projection: np.ndarray[Any, Any], *, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A grey PNG, longest side at most ``side`` pixels, from a 2-D (y, x) projection."""
    if projection.ndim != 2:
        raise ValueError(f"a thumbnail is made from a 2-D projection, not {projection.ndim}-D")
    pixels = _to_uint8(_downsample(projection, side), all_finite=projection.dtype.kind in "biu")
    if max(pixels.shape) > side:
        # Only when no integer factor lands within the size: Pillow's box filter keeps the aspect ratio.
        img = Image.fromarray(pixels)
        img.thumbnail((side, side), Image.Resampling.BOX)
        pixels = np.asarray(img)
    height, width = pixels.shape
    return Thumbnail(encode_png(pixels), width, height)
