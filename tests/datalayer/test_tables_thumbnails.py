"""Tables round-trip through parquet on the store; thumbnails are small PNGs of the max projection."""

from __future__ import annotations

import io

import anyio
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

import mikro
from mikro.datalayer import GrantedStore, prepare_image, read_table, write_image, write_table
from mikro.datalayer._thumbnail import thumbnail_of_image


@pytest.mark.anyio
async def test_dataframe_round_trip(store: GrantedStore) -> None:
    df = pd.DataFrame({"label": [1, 2, 3], "area": [10.5, 20.0, 7.25], "kind": ["nucleus", "cell", "cell"]})
    written = await write_table(store, df)
    assert written.num_rows == 3
    assert [name for name, _ in written.columns] == ["label", "area", "kind"]
    back = await anyio.to_thread.run_sync(read_table, store)
    assert isinstance(back, pa.Table)
    pd.testing.assert_frame_equal(back.to_pandas(), df)


@pytest.mark.anyio
async def test_arrow_table_round_trip(store: GrantedStore) -> None:
    table = pa.table({"x": pa.array([1.0, 2.0]), "ok": pa.array([True, False])})
    await write_table(store, table)
    assert (await anyio.to_thread.run_sync(read_table, store)).equals(table)


@pytest.mark.anyio
async def test_table_input_is_validated(store: GrantedStore) -> None:
    with pytest.raises(mikro.ValidationError):
        await write_table(store, [{"a": 1}])
    with pytest.raises(mikro.ValidationError):
        await write_table(store, pd.DataFrame({"mixed": [1, "two", 3.0]}))
    assert store.stats.snapshot()["puts"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("store_kind", ["file"])
async def test_thumbnail_shows_the_bright_region(store: GrantedStore) -> None:
    values = np.zeros((2, 5, 600, 900), dtype=np.uint16)
    values[1, 3, 100:200, 600:800] = 4000  # one bright rectangle, in one channel and one plane only
    # Several shards: the client makes the thumbnail from the projection it accumulates shard by shard.
    result = await write_image(
        store, prepare_image(values, dims="czyx"), thumbnail=True, target_shard_bytes=2**20
    )
    thumb = result.thumbnail
    assert thumb is not None and thumb.png is not None and len(list(result.levels[0].shard_positions())) > 1
    assert max(thumb.width, thumb.height) <= 256
    img = np.asarray(Image.open(io.BytesIO(thumb.png)))
    assert img.shape == (thumb.height, thumb.width)
    sy, sx = thumb.height / 600, thumb.width / 900
    inside = img[int(120 * sy) : int(180 * sy), int(620 * sx) : int(780 * sx)]
    outside = img[: int(80 * sy), : int(500 * sx)]
    assert inside.min() > 200 and outside.max() < 20
    # The thumbnail of the whole image at once (the server's, for an image of one shard) is the same PNG.
    assert thumbnail_of_image(values).png == thumb.png


@pytest.mark.anyio
async def test_a_small_images_thumbnail_is_left_to_the_server_with_its_size(store: GrantedStore) -> None:
    values = np.zeros((3, 64, 96), dtype=np.uint16)
    values[2, 10:20, 50:90] = 1000
    result = await write_image(store, prepare_image(values, dims="zyx"), thumbnail=True)
    made = thumbnail_of_image(values)
    # No PNG made or written on either store: the size the server's will have, and where it will be.
    assert result.thumbnail is not None and result.thumbnail.png is None
    assert (result.thumbnail.width, result.thumbnail.height) == (made.width, made.height) == (96, 64)
    assert result.thumbnail.key == "0/thumbnail.png"
    keys = await anyio.to_thread.run_sync(store.list_keys)
    assert sorted(keys) == sorted(result.keys) == ["0/c.0.0.0", "0/zarr.json", "zarr.json"]
    assert (await write_image(store, prepare_image(values, dims="zyx"))).thumbnail is None
