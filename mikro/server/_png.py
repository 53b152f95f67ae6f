"""Checking a thumbnail's PNG before it is stored: its size limits and its width and height.

Only the signature and the IHDR chunk (the first, fixed-size chunk: width, height, bit depth, colour
type) are read; the image data is not decoded. A client may still send a PNG whose image data is
broken, which costs only its own thumbnail, never the server: nothing on the server decodes it.
"""

from __future__ import annotations

import struct
import zlib

from mikro.server._errors import BadUserInput

__all__ = ["MAX_PNG_BYTES", "MAX_PNG_SIDE", "png_size"]

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
    if not (1 <= width <= MAX_PNG_SIDE and 1 <= height <= MAX_PNG_SIDE):
        raise BadUserInput(
            f"{what} is {width}x{height} pixels; a thumbnail may be at most {MAX_PNG_SIDE} a side"
        )
    return width, height
