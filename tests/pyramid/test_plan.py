"""Which levels an image gets, and z reduced only where it is much finer than x."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mikro.datalayer import GrantedStore, StorageGrant, open_dataarray, prepare_image, write_image
from mikro.datalayer._layout import choose_layout
from mikro.datalayer._pyramid import plan_levels


def _factors(shape: tuple[int, ...], dims: str, sizes: dict[str, float], pyramid: Any = "auto") -> list[Any]:
    base = choose_layout(shape, np.dtype(np.uint16), tuple(dims))
    return plan_levels(base, sizes, pyramid)[1]


def test_levels_until_the_coarsest_fits() -> None:
    assert _factors((1024, 1024), "yx", {}) == [(1, 1)]
    assert _factors((1025, 300), "yx", {}) == [(1, 1), (2, 2)]
    assert _factors((2, 8192, 8192), "cyx", {}) == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8)]
    assert _factors((8192, 8192), "yx", {}, None) == [(1, 1)]
    assert _factors((64, 64), "yx", {}, 2) == [(1, 1), (2, 2), (4, 4)]


def test_z_is_reduced_only_while_much_finer_than_x() -> None:
    # z 0.1 um, x 0.5 um: z stays reduced while twice finer than x (0.1 -> 0.2 -> 0.4 vs 0.5 -> 1 -> 2).
    fine = _factors((64, 4096, 4096), "zyx", {"z": 0.1, "x": 0.5, "y": 0.5})
    assert fine == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    assert _factors((64, 4096, 4096), "zyx", {"z": 2.0, "x": 0.5, "y": 0.5}) == [
        (1, 1, 1),
        (1, 2, 2),
        (1, 4, 4),
    ]
    assert _factors((64, 4096, 4096), "zyx", {}) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]  # unknown: kept


def _mean_reference(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """2x2x2 means (an odd edge keeps its last plane/row/column), rounded half up."""
    padded = np.pad(values, [(0, n % 2) for n in values.shape], mode="edge").astype(np.float64)
    z, y, x = (n // 2 for n in padded.shape)
    windows = padded.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))
    return np.floor(windows + 0.5).astype(values.dtype)


@pytest.mark.anyio
async def test_an_anisotropic_stack_is_reduced_in_z_too(tmp_path: Path) -> None:
    values = np.random.default_rng(3).integers(0, 4000, (9, 1100, 1030), dtype=np.uint16)
    grant = StorageGrant(
        store_id="z",
        kind="file",
        bucket="",
        prefix="z.zarr",
        path=str(tmp_path / "z.zarr"),
        write=True,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    store = GrantedStore(lambda: grant, grant=grant)
    image = prepare_image(values, dims="zyx", pixel_size={"z": 0.1, "y": 0.3, "x": 0.3})
    result = await write_image(store, image, pyramid="auto")
    assert result.factors == ((1, 1, 1), (2, 2, 2))
    level = result.levels[1]
    stored = open_dataarray(
        store,
        shape=level.shape,
        chunks=level.chunks,
        shards=level.shards,
        dtype=level.dtype,
        dims=level.dims,
        array_path=level.path,
    )
    np.testing.assert_array_equal(stored.values, _mean_reference(values))
