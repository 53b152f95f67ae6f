"""Chunk keys: new images name their shards with ``.`` (``0/c.0.0``: no folder per axis on a folder
store); images stored with ``/`` keys (as mikro wrote them before, or as zarr-python writes by default)
still read, and delete, exactly as before, side by side with new ones on the same server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

import mikro
from mikro.datalayer._layout import ome_attributes
from tests.fixtures_servers import MikroServer, unique

pytestmark = pytest.mark.usefixtures("no_ambient_config")


@pytest.fixture
async def m(mikro_server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = mikro_server.add_user("keys")
    async with mikro.connect(mikro_server.url, token=token, timeout=30) as session:
        yield session


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _write_image(folder: str | Path, values: np.ndarray[Any, Any], separator: str = "/") -> None:
    """An OME-Zarr image whose level 0 zarr-python writes with ``separator`` in its chunk keys, in shards
    of two planes of four chunks each (so a read crosses shards, and a plane is a part of one)."""
    group = zarr.open_group(folder, mode="w", zarr_format=3)
    group.attrs["ome"] = ome_attributes(("z", "y", "x"), {})
    array = group.create_array(
        "0",
        shape=values.shape,
        dtype=values.dtype,
        chunks=(1, 24, 20),
        shards=(2, 48, 40),
        compressors=ZstdCodec(level=1),
        chunk_key_encoding={"name": "default", "separator": separator},
        dimension_names=("z", "y", "x"),
    )
    array[...] = values


@pytest.mark.anyio
async def test_new_and_slash_keyed_images_read_and_delete_alike(m: mikro.Mikro) -> None:
    rng = np.random.default_rng(17)
    new_values = rng.integers(0, 4000, (3, 96, 80), dtype=np.uint16)
    old_values = rng.integers(0, 4000, (4, 96, 80), dtype=np.uint16)

    new = await m.create_representation(new_values, name=unique("dot"), dims="zyx", pyramid=None)
    new_root = Path(new.store.path)
    shards = [key for key in _files(new_root) if key.startswith("0/c")]
    assert shards == ["0/c.0.0.0"]  # one file beside 0/zarr.json, no c/0/0 folders
    assert json.loads((new_root / "0" / "zarr.json").read_text())["chunk_key_encoding"] == {
        "name": "default",
        "configuration": {"separator": "."},
    }

    grant = await m.request_upload()
    _write_image(grant.path, old_values)
    await m.finish_upload(grant.store_id)
    created = await m.execute(
        "mutation($input: RepresentationInput!) { createRepresentation(input: $input) { id } }",
        {"input": {"store": grant.store_id, "name": unique("slash")}},
    )
    old = await m.get_representation(created["createRepresentation"]["id"])
    old_root = Path(old.store.path)
    assert "0/c/1/1/1" in _files(old_root)

    for rep, values in ((new, new_values), (old, old_values)):
        np.testing.assert_array_equal((await m.compute(rep.data)).values, values)  # whole, by shards
        np.testing.assert_array_equal(
            (await m.compute(rep.data[1, 30:70, 15:45])).values, values[1, 30:70, 15:45]
        )
        np.testing.assert_array_equal(
            await m.compute(rep.data.max(dim="z")), values.max(axis=0)
        )  # every chunk, shards shared by the tasks
    # Other readers open the new image as they open zarr-python's own.
    np.testing.assert_array_equal(zarr.open_array(str(new_root / "0"), mode="r")[...], new_values)

    for rep, root in ((new, new_root), (old, old_root)):
        await m.delete_representation(rep)
        assert not root.exists()


@pytest.mark.anyio
async def test_ingest_reads_an_ome_zarr_with_dot_keys(m: mikro.Mikro, tmp_path: Path) -> None:
    values = np.random.default_rng(5).integers(0, 4000, (4, 96, 80), dtype=np.uint16)
    _write_image(tmp_path / "dots.ome.zarr", values, separator=".")
    assert (tmp_path / "dots.ome.zarr" / "0" / "c.1.1.1").is_file()
    report = await m.ingest(tmp_path / "dots.ome.zarr")
    assert report.ok and report.created == 1, report.to_dict()
    (rep_id,) = report.files[0].images
    rep = await m.get_representation(rep_id)
    np.testing.assert_array_equal((await m.compute(rep.data)).values, values)
