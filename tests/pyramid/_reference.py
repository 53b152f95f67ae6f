"""Reference pyramids computed with plain numpy, written independently of mikro's `downsample`."""

from __future__ import annotations

from typing import Any

import numpy as np


def mean_2x(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The last two axes reduced 2x by the mean (rounded half up); an odd edge keeps its last pixel."""
    ny, nx = values.shape[-2:]
    if ny % 2:
        values = np.concatenate([values, values[..., -1:, :]], axis=-2)
    if nx % 2:
        values = np.concatenate([values, values[..., :, -1:]], axis=-1)
    wide = values.astype(np.float64)
    total = wide[..., 0::2, 0::2] + wide[..., 1::2, 0::2] + wide[..., 0::2, 1::2] + wide[..., 1::2, 1::2]
    return np.floor(total / 4 + 0.5).astype(values.dtype)


def nearest_2x(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return values[..., ::2, ::2]


def reference_levels(values: np.ndarray[Any, Any], count: int, *, labels: bool = False) -> list[Any]:
    """Level 0 and ``count - 1`` levels below it, each from the one before."""
    levels = [values]
    for _ in range(count - 1):
        levels.append((nearest_2x if labels else mean_2x)(levels[-1]))
    return levels
