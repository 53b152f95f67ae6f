"""Bounds on what inputs may hold, so that nothing stored can break a later read (a shape beyond
GraphQL's ``Int`` would make every listing of images fail) and no input costs without limit."""

from __future__ import annotations

import math

from mikro.server._errors import BadUserInput

__all__ = ["MAX_DIM", "MAX_ELEMENTS", "MAX_TAGS", "check_array_bounds", "check_tags"]

#: GraphQL's ``Int`` is 32-bit signed: every shape and chunk entry is served as one.
MAX_DIM = 2**31 - 1
#: Elements of one array: beyond 2**53 a float64 (JavaScript's number) no longer counts them exactly.
MAX_ELEMENTS = 2**53
#: Tags of one object.
MAX_TAGS = 1000
# numpy dtype kinds of pixels: bool, signed/unsigned integers, floats, complex.
_PIXEL_KINDS = frozenset("biufc")


def _dims(values: list[int], what: str, minimum: int) -> None:
    for value in values:
        if isinstance(value, bool) or not minimum <= value <= MAX_DIM:
            raise BadUserInput(f"invalid zarr metadata: {what} entries must be integers {minimum}..{MAX_DIM}")


def check_array_bounds(shape: list[int], chunks: list[int], shards: list[int] | None, kind: str) -> None:
    """Refuse an array the API cannot serve: dims outside GraphQL ``Int``, more than 2**53 elements,
    empty chunks, or a dtype that is not numbers (``kind`` is numpy's dtype kind)."""
    _dims(shape, "shape", 1)
    _dims(chunks, "chunk shape", 1)
    if shards is not None:
        _dims(shards, "shard shape", 1)
    if math.prod(shape) > MAX_ELEMENTS:
        raise BadUserInput(f"invalid zarr metadata: more than 2**53 elements ({'x'.join(map(str, shape))})")
    if kind not in _PIXEL_KINDS:
        raise BadUserInput("invalid zarr metadata: data_type must be bool, integer, float or complex")


def check_tags(tags: list[str] | None, where: str = "tags") -> None:
    if tags is not None and len(tags) > MAX_TAGS:
        raise BadUserInput(f"{where} has {len(tags)} entries; at most {MAX_TAGS} are allowed")
