"""A thumbnail registered by its size alone is made by the server from the image's pixels when first read:
only for an image of one shard, from arrays any zarr writer wrote, never from a broken shard."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import zarr
from PIL import Image

from mikro.datalayer import make_thumbnail
from tests.server._helpers import UPLOAD, Api, array_node, write_zarr_json

pytestmark = pytest.mark.anyio

CREATE = """
mutation($input: RepresentationInput!) {
  createRepresentation(input: $input) { id thumbnails { width height } }
}"""
PNG = "query($id: ID!) { representation(id: $id) { thumbnails { png } } }"


async def _registered(api: Api, write: Any, size: tuple[int, int]) -> tuple[str, Path]:
    """An image whose store ``write(root)`` filled, registered with a thumbnail of ``size`` alone."""
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    root = Path(grant["path"])
    await anyio.to_thread.run_sync(write, root)
    thumbnail = {"width": size[0], "height": size[1]}
    made = await api.data(CREATE, {"input": {"store": grant["storeId"], "name": "t", "thumbnail": thumbnail}})
    return made["createRepresentation"]["id"], root


async def test_an_image_zarr_wrote_gets_the_thumbnail_of_its_max_projection(api: Api) -> None:
    values = np.random.default_rng(2).integers(0, 1000, (2, 3, 30, 40), dtype=np.uint16)

    def write(root: Path) -> None:
        group = zarr.open_group(str(root), mode="w", zarr_format=3)
        array = group.create_array(
            "0",
            shape=values.shape,
            dtype=values.dtype,
            chunks=(1, 1, 30, 40),
            shards=(2, 3, 30, 40),
            dimension_names=("c", "z", "y", "x"),
        )
        array[...] = values

    rep, root = await _registered(api, write, (40, 30))
    png = base64.b64decode((await api.data(PNG, {"id": rep}))["representation"]["thumbnails"][0]["png"])
    assert png == make_thumbnail(values.max(axis=(0, 1))).png
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (40, 30)
    # Written whole beside the image: no temporary file left.
    assert sorted(p.name for p in (root / "0").iterdir()) == ["c", "thumbnail.png", "zarr.json"]
    assert (root / "0" / "thumbnail.png").read_bytes() == png


async def test_an_image_of_several_shards_gets_none_made(api: Api) -> None:
    def write(root: Path) -> None:
        write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
        write_zarr_json(root / "0", array_node([2, 32, 48], [1, 32, 48], "uint16", ["z", "y", "x"]))

    rep, root = await _registered(api, write, (48, 32))
    error = await api.error(PNG, {"id": rep})
    assert error["extensions"]["code"] == "NOT_FOUND" and "not in its image's store" in error["message"]
    assert not (root / "0" / "thumbnail.png").exists()


async def test_a_broken_shard_is_an_error_and_nothing_is_kept(api: Api) -> None:
    def write(root: Path) -> None:
        write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
        write_zarr_json(root / "0", array_node([32, 48], [32, 48], "uint16", ["y", "x"]))
        (root / "0" / "c").mkdir()
        (root / "0" / "c" / "0").mkdir()
        (root / "0" / "c" / "0" / "0").write_bytes(b"\0" * 100)

    rep, root = await _registered(api, write, (48, 32))
    error = await api.error(PNG, {"id": rep})
    assert "could not be made from its image" in error["message"] and "crc32c" in error["message"]
    assert not (root / "0" / "thumbnail.png").exists()
