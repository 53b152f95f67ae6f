"""An image of one shard and no coarser level above the small-image size (a 2048x2048 camera plane is
8 MiB) is written whole in one worker thread: the same OME-Zarr, and nothing left when it fails."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import zarr
from ome_zarr_models.v05 import Image
from PIL import Image as PILImage

import mikro
from mikro.datalayer import GrantedStore, prepare_image, write_image
from mikro.datalayer._thumbnail import thumbnail_of_image
from mikro.datalayer._write import WHOLE_IMAGE_BYTES
from tests.datalayer.conftest import download

#: Larger than a small image, one shard of four 1024x1024 chunks, three of them cut by the image's edge.
SHAPE = (1100, 1300)


@pytest.mark.anyio
async def test_a_one_shard_image_is_valid_ome_zarr_with_its_range_and_thumbnail(
    store: GrantedStore, tmp_path: Path
) -> None:
    values = np.random.default_rng(3).integers(7, 3000, SHAPE, dtype=np.uint16)
    assert values.nbytes > WHOLE_IMAGE_BYTES
    image = prepare_image(values, dims="yx", pixel_size={"x": 0.5, "y": 0.5})

    result = await write_image(store, image, name="plane", compression=None, thumbnail=True)

    # No thumbnail in the store: the server makes it when first read, at the size the result says.
    expected = ["0/c.0.0", "0/zarr.json", "zarr.json"]
    assert sorted(store.list_keys()) == expected
    assert sorted(result.keys) == expected
    root = download(store, tmp_path / "copy")
    group = zarr.open_group(str(root), mode="r")
    Image.from_zarr(group)  # raises unless the metadata is OME-Zarr 0.5
    stored = group["0"][...]
    np.testing.assert_array_equal(stored, values)
    ome = json.loads((root / "zarr.json").read_text())["attributes"]["ome"]
    window = ome["omero"]["channels"][0]["window"]
    assert (window["min"], window["max"]) == (float(values.min()), float(values.max()))
    assert result.thumbnail is not None and result.thumbnail.png is None
    assert result.thumbnail.key == "0/thumbnail.png"
    png = thumbnail_of_image(np.asarray(stored)).png
    assert png is not None
    with PILImage.open(io.BytesIO(png)) as thumb:
        assert thumb.size == (result.thumbnail.width, result.thumbnail.height)
        assert max(thumb.size) >= 256


@pytest.mark.anyio
async def test_a_failing_one_shard_image_leaves_no_objects(store: GrantedStore) -> None:
    def explode(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise mikro.StorageError("camera unplugged")

    source = da.zeros(SHAPE, dtype=np.uint16, chunks=SHAPE).map_blocks(explode, dtype=np.uint16)
    with pytest.raises(mikro.StorageError, match="camera unplugged"):
        await write_image(store, prepare_image(source, dims="yx"), compression=None, thumbnail=True)
    assert store.list_keys() == []


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
@pytest.mark.parametrize("compression", [None, "blosc-lz4"])
async def test_a_small_image_whose_last_object_cannot_be_written_leaves_none_of_its_files(
    store: GrantedStore, compression: str | None
) -> None:
    # A small image's files are written in place, not staged and renamed: when one fails after others
    # were written, the writer's cleanup must still leave nothing of the image behind.
    root = Path(store.current_grant().path)
    (root / "zarr.json" / "taken").mkdir(parents=True)  # the group document, written last, cannot be
    values = np.arange(64 * 96, dtype=np.uint16).reshape(64, 96)
    with pytest.raises(mikro.StorageError, match=r"zarr\.json"):
        await write_image(store, prepare_image(values, dims="yx"), compression=compression, thumbnail=True)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == []
    assert not (root / "0").exists() or not any((root / "0").iterdir())
