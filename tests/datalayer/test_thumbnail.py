"""Thumbnails: valid PNGs (decoded by Pillow), the size rules, and a contrast that shows the image."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mikro.datalayer import make_thumbnail
from mikro.datalayer._thumbnail import (
    MADE_ON_READ_MAX_BYTES,
    encode_png,
    small_image_thumbnail,
    thumbnail_of_image,
    thumbnail_size,
)


def decode(png: bytes) -> np.ndarray[Any, Any]:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "L"
    return np.asarray(img)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (33, 257), (256, 256)])
def test_png_decodes_to_the_same_pixels(shape: tuple[int, int]) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(decode(encode_png(pixels)), pixels)


def test_png_of_a_smooth_image_is_compressed() -> None:
    yy, xx = np.mgrid[:256, :256]
    blob = (200 * np.exp(-((yy - 90) ** 2 + (xx - 120) ** 2) / 800.0)).astype(np.uint8)
    png = encode_png(blob)
    np.testing.assert_array_equal(decode(png), blob)
    assert len(png) < blob.nbytes / 4


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint16), np.zeros((2, 4, 4), np.uint8)])
def test_png_needs_2d_uint8(bad: np.ndarray[Any, Any]) -> None:
    with pytest.raises(ValueError):
        encode_png(bad)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((512, 512), (256, 256)),  # the projection of a 2048x2048 plane: halved exactly
        ((300, 400), (256, 192)),
        ((600, 900), (256, 171)),
        ((100, 80), (80, 100)),  # small images are not enlarged
        ((257, 2000), (256, 32)),
        ((1, 5000), (256, 1)),
        ((5000, 3), (1, 256)),
    ],
)
def test_thumbnail_size_keeps_the_aspect_within_256(shape: tuple[int, int], size: tuple[int, int]) -> None:
    projection = np.random.default_rng(0).integers(0, 4000, shape, dtype=np.uint16)
    thumb = make_thumbnail(projection)
    assert (thumb.width, thumb.height) == size
    assert decode(thumb.png).shape == (size[1], size[0])


def test_one_hot_pixel_does_not_darken_the_thumbnail() -> None:
    ramp = np.tile(np.linspace(100, 1100, 512, dtype=np.float32), (512, 1))
    ramp[200, 300] = 1e9
    img = decode(make_thumbnail(ramp).png).astype(int)
    row = img[50]
    assert row[:5].max() <= 5 and row[-5:].min() >= 250  # the ramp spans the full range
    assert abs(int(np.median(img)) - 128) <= 8
    assert np.all(np.diff(row) >= 0)


def test_non_finite_values_are_shown_as_the_low_end() -> None:
    values = np.tile(np.arange(300, dtype=np.float64), (200, 1))
    values[:20] = np.nan
    values[20:30] = -np.inf
    img = decode(make_thumbnail(values).png)
    top = math.floor(30 * img.shape[0] / 200)
    assert img[: top - 1].max() == 0
    assert img[top + 1 :, -1].min() >= 250


@pytest.mark.parametrize(
    "values", [np.full((64, 64), np.nan), np.full((64, 64), 7.0), np.zeros((9, 9), bool)]
)
def test_flat_or_empty_images_give_a_black_thumbnail(values: np.ndarray[Any, Any]) -> None:
    img = decode(make_thumbnail(values).png)
    assert img.shape == values.shape and img.max() == 0


def test_thumbnail_needs_a_2d_projection() -> None:
    with pytest.raises(ValueError):
        make_thumbnail(np.zeros((2, 8, 8)))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_a_camera_image_is_stretched_linearly_between_its_percentiles(dtype: type) -> None:
    # A noisy uint16-like field (its PNG is Huffman-coded) of any dtype: every grey level is the pixel's
    # place between the 0.5th and 99.5th percentiles, rounded, as an 8-bit image.
    yy, xx = np.mgrid[:256, :256]
    noise = np.random.default_rng(5).integers(0, 64, (256, 256))
    field = (1000 + 800 * np.sin(yy / 20) * np.cos(xx / 30) + noise).astype(dtype)
    img = decode(make_thumbnail(field).png).astype(int)
    values = field.astype(np.float64).ravel()
    lo, hi = np.percentile(values, [0.5, 99.5])
    expected = np.clip(np.round((field - lo) * 255 / (hi - lo)), 0, 255)
    # The percentiles come from a sample of ~8 k pixels: at most a grey level either way, and rounded
    # (not truncated: that would darken every pixel by half a level on average).
    assert np.abs(img - expected).max() <= 2
    assert abs(float((img - expected).mean())) < 0.25


_SIDES = (1, 2, 7, 255, 256, 257, 300, 511, 512, 513, 767, 1000, 1025, 2048, 2049, 3001, 5000)


def test_the_size_a_registration_announces_is_the_size_of_the_thumbnail_made_later() -> None:
    # The client registers `thumbnail_size` of the shape; the server makes the PNG from the pixels.
    for ny in _SIDES:
        for nx in _SIDES:
            made = thumbnail_of_image(np.zeros((2, ny, nx), dtype=np.uint8))
            assert thumbnail_size((2, ny, nx)) == (made.width, made.height), (ny, nx)
            assert decode(made.png or b"").shape == (made.height, made.width)


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.float32, np.bool_])
def test_the_thumbnail_of_a_whole_image_is_that_of_its_max_projection(dtype: type) -> None:
    values = np.random.default_rng(5).integers(0, 100, (3, 4, 700, 90)).astype(dtype)
    # A side over 512: the projection takes every second pixel.
    expected = make_thumbnail(values.max(axis=(0, 1))[::2, ::2])
    assert thumbnail_of_image(values).png == expected.png


def test_a_small_image_leaves_its_png_to_the_server_unless_too_large_for_it() -> None:
    plane = np.random.default_rng(9).integers(0, 500, (64, 64), dtype=np.uint16)
    small = small_image_thumbnail(plane)
    assert small.png is None and (small.width, small.height) == (64, 64) and small.key == "0/thumbnail.png"
    # Over MADE_ON_READ_MAX_BYTES (a view: no memory of its own): the client makes it as for a large image.
    stack = np.broadcast_to(plane, (MADE_ON_READ_MAX_BYTES // plane.nbytes + 1, 64, 64))
    large = small_image_thumbnail(stack)
    assert large.png == make_thumbnail(plane).png and large.key is None
