"""The server decodes a one-shard array from its bytes alone (to make its thumbnail): arrays zarr-python
wrote, with each compressor and key separator mikro reads, and chunks left out as the fill value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

import mikro
from mikro.datalayer._shard_pixels import MAX_CHUNKS, only_shard_key, shard_pixels


def _written(tmp_path: Path, values: np.ndarray[Any, Any], **options: Any) -> tuple[dict[str, Any], Path]:
    array = zarr.create_array(
        str(tmp_path / "image.zarr"), shape=values.shape, dtype=values.dtype, zarr_format=3, **options
    )
    array[...] = values
    return json.loads((tmp_path / "image.zarr" / "zarr.json").read_text()), tmp_path / "image.zarr"


@pytest.mark.parametrize(
    ("compressors", "separator"), [(ZstdCodec(level=3), "/"), (BloscCodec(cname="lz4"), "."), (None, ".")]
)
def test_a_one_shard_array_zarr_wrote_is_decoded_whole(
    tmp_path: Path, compressors: Any, separator: str
) -> None:
    values = np.random.default_rng(1).integers(0, 60000, (3, 50, 70), dtype=np.uint16)
    meta, _ = _written(
        tmp_path,
        values,
        chunks=(1, 32, 32),
        shards=(3, 64, 96),  # larger than the array: edge chunks are cut
        compressors=compressors,
        chunk_key_encoding={"name": "default", "separator": separator},
    )
    key = only_shard_key(meta, "image.zarr")
    assert key == f"image.zarr/c{separator}0{separator}0{separator}0"
    np.testing.assert_array_equal(shard_pixels(meta, (tmp_path / key).read_bytes()), values)


def test_chunks_the_shard_leaves_out_are_the_fill_value(tmp_path: Path) -> None:
    values = np.full((64, 64), np.nan, dtype=np.float32)
    values[:32, :32] = 1.5  # zarr writes only this chunk: the others equal the fill value
    meta, root = _written(tmp_path, values, chunks=(32, 32), shards=(64, 64), fill_value=np.nan)
    shard = (root / "c" / "0" / "0").read_bytes()
    assert len(shard) < 32 * 32 * 4 * 2  # one chunk of four is stored
    np.testing.assert_array_equal(shard_pixels(meta, shard), values)


def test_more_than_one_shard_or_a_broken_shard_is_refused(tmp_path: Path) -> None:
    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    meta, root = _written(tmp_path, values, chunks=(32, 32), shards=(32, 64))
    with pytest.raises(mikro.StorageError, match="more than one shard"):
        only_shard_key(meta, "image.zarr")
    meta, root = _written(tmp_path / "one", values, chunks=(32, 32), shards=(64, 64))
    shard = (root / "c" / "0" / "0").read_bytes()
    with pytest.raises(mikro.StorageError, match="crc32c"):
        shard_pixels(meta, shard[:-1] + bytes([shard[-1] ^ 1]))
    with pytest.raises(mikro.StorageError, match="shorter than its index"):
        shard_pixels(meta, shard[:10])


def test_a_shard_declaring_more_chunks_than_the_bound_is_refused_before_its_loop(tmp_path: Path) -> None:
    # 4,224 chunks of 1x1 pixels: a client that wrote such an image must not buy minutes of a server
    # thread with one thumbnail read (a 64 MiB image of them would be 32 M chunks).
    values = np.arange(64 * 66, dtype=np.uint16).reshape(64, 66)
    meta, root = _written(tmp_path, values, chunks=(1, 1), shards=(64, 66))
    shard = (root / "c" / "0" / "0").read_bytes()
    with pytest.raises(mikro.StorageError, match=f"4224 chunks \\(at most {MAX_CHUNKS}"):
        shard_pixels(meta, shard)
    small = values[:32, :32].copy()
    meta, root = _written(tmp_path / "small", small, chunks=(1, 1), shards=(32, 32))  # 1,024: decoded
    np.testing.assert_array_equal(shard_pixels(meta, (root / "c" / "0" / "0").read_bytes()), small)
