"""A TIFF scene read whole lands in mikro's result memory: reused for the next scene once the last is
dropped (no new memory to fault in), never while anything still views it; its values are the file's."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mikro.datalayer import _result_memory
from mikro.ingest._readers import open_source

SHAPE = (3, 1024, 1024)  # 6 MiB of uint16: read whole (one shard), large enough for kept memory


@pytest.fixture(autouse=True)
def _empty_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIKRO_KEEP_RESULT_MB", raising=False)
    monkeypatch.setattr(_result_memory, "_kept", _result_memory._Kept())


def _ome_tiff(path: Path, seed: int) -> np.ndarray[Any, Any]:
    values = np.random.default_rng(seed).integers(0, 2**16, SHAPE, dtype=np.uint16)
    tifffile.imwrite(path, values, ome=True, metadata={"axes": "CYX"})
    return values


def _scene_pixels(path: Path) -> np.ndarray[Any, Any]:
    source = open_source(path)
    try:
        scene = source.scene(0)
    finally:
        source.close()
    assert scene.dims == ("c", "y", "x")
    return np.asarray(scene.data)


def test_a_dropped_scenes_memory_is_reused_and_a_viewed_one_is_not(tmp_path: Path) -> None:
    first, second = _ome_tiff(tmp_path / "a.ome.tif", 1), _ome_tiff(tmp_path / "b.ome.tif", 2)
    pixels = _scene_pixels(tmp_path / "a.ome.tif")
    np.testing.assert_array_equal(pixels, first)
    address = pixels.ctypes.data
    del pixels
    gc.collect()

    # Memory given back to the system would go to this array; kept memory goes to the next scene.
    placeholder = np.ones(SHAPE, dtype=np.uint16)
    again = _scene_pixels(tmp_path / "b.ome.tif")
    assert again.ctypes.data == address
    assert not np.shares_memory(placeholder, again)
    np.testing.assert_array_equal(again, second)

    channel = again[1]  # only a view of the scene is kept: its memory is not the next scene's
    del again
    gc.collect()
    third = _scene_pixels(tmp_path / "a.ome.tif")
    assert not np.shares_memory(third, channel)
    np.testing.assert_array_equal(third, first)
    np.testing.assert_array_equal(channel, second[1])
