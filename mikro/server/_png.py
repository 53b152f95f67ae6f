"""Checking a thumbnail's PNG before it is stored: its size limits and its width and height; and
reading a PNG kept as an object in its image's store (see `_thumbnail_objects`).

Only the signature and the IHDR chunk (the first, fixed-size chunk: width, height, bit depth, colour
type) are read; the image data is not decoded. A client may still send a PNG whose image data is
broken, which costs only its own thumbnail, never the server: nothing on the server decodes it.

A thumbnail kept as an object (``THUMBNAIL_OBJECT`` in the image's store) is registered by its width
and height alone, and its header is checked when it is served, not when it is registered: the write
grant outlives the registration, so a check then would prove nothing about the object later (the same
reason the server trusts the array metadata the client sends), and reading it would cost the server a
file read (on S3, a GET) per image.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from mikro.datalayer._thumbnail import THUMBNAIL_OBJECT
from mikro.server._errors import ApiError, BadUserInput, NotFound

__all__ = [
    "MAX_PNG_BYTES",
    "MAX_PNG_SIDE",
    "THUMBNAIL_OBJECT",
    "png_size",
    "read_png_object",
    "thumbnail_size",
]

#: Thumbnails are ~256 px and tens of kB; these bounds keep a request and a database row small.
MAX_PNG_BYTES = 1024 * 1024
MAX_PNG_SIDE = 4096

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">I4sIIBBBBBI")  # length, type, width, height, depth, colour, ..., crc
_BIT_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


def png_size(png: bytes, what: str = "png") -> tuple[int, int]:
    """``(width, height)`` of a PNG's IHDR chunk; BAD_USER_INPUT naming ``what`` if it is refused."""
    if len(png) > MAX_PNG_BYTES:
        raise BadUserInput(f"{what} is {len(png)} bytes; a thumbnail PNG may have at most {MAX_PNG_BYTES}")
    if not png.startswith(_SIGNATURE) or len(png) < len(_SIGNATURE) + _IHDR.size:
        raise BadUserInput(f"{what} is not a PNG (no PNG signature and header)")
    length, kind, width, height, depth, colour, *_, crc = _IHDR.unpack_from(png, len(_SIGNATURE))
    start = len(_SIGNATURE) + 4
    if length != 13 or kind != b"IHDR" or zlib.crc32(png[start : start + 17]) != crc:
        raise BadUserInput(f"{what} is not a PNG (its first chunk is not a valid IHDR header)")
    if depth not in _BIT_DEPTHS.get(colour, set()):
        raise BadUserInput(f"{what} is not a PNG (bit depth {depth} with colour type {colour})")
    return _checked_sides(width, height, what)


def _checked_sides(width: int, height: int, what: str) -> tuple[int, int]:
    if not (1 <= width <= MAX_PNG_SIDE and 1 <= height <= MAX_PNG_SIDE):
        raise BadUserInput(
            f"{what} is {width}x{height} pixels; a thumbnail may be at most {MAX_PNG_SIDE} a side"
        )
    return width, height


def thumbnail_size(png: bytes | None, width: int | None, height: int | None, what: str) -> tuple[int, int]:
    """``(width, height)`` of a registration's thumbnail: read from its PNG, or, for one written as
    `THUMBNAIL_OBJECT`, as given (BAD_USER_INPUT naming ``what`` if refused)."""
    if png is not None:
        return png_size(png, f"{what} png")
    if width is None or height is None:
        raise BadUserInput(f"{what} needs its png, or the width and height of its {THUMBNAIL_OBJECT}")
    return _checked_sides(width, height, what)


def read_png_object(read: Callable[[str], bytes | None], key: str, what: str) -> bytes:
    """The PNG object at ``key`` (blocking: for a worker thread), its header checked as `png_size`
    checks a PNG sent in a request."""
    png = read(key)
    if png is None:
        raise NotFound(f"the PNG of {what} is not in its image's store")
    try:
        png_size(png, what)
    except BadUserInput as exc:
        # Not the reader's input: the object its image's client wrote.
        raise ApiError(str(exc)) from None
    return png
