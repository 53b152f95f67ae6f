"""The written store is OME-Zarr 0.5 that tools without mikro open: ome-zarr-models, zarr, xarray."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from ome_zarr_models.v05 import Image

from mikro.datalayer import GrantedStore, StorageGrant, prepare_image, write_image
from mikro.datalayer._layout import CHANNEL_COLOURS, ChannelInfo, group_metadata, ome_attributes, omero_block
from mikro.datalayer._write import _encode_json, _one_level_group_document
from tests.datalayer.conftest import download


@pytest.mark.anyio
async def test_store_validates_and_opens_without_mikro(store: GrantedStore, tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 255, (2, 3, 6, 50, 40), dtype=np.uint8)
    image = prepare_image(values, dims="tczyx", pixel_size={"x": 0.1, "y": 0.1, "z": 0.5, "t": 2.0})
    await write_image(store, image, name="validated")
    root = download(store, tmp_path / "copy")

    group = zarr.open_group(str(root), mode="r")
    ome = Image.from_zarr(group)  # the independent validator: raises if the metadata is not OME-Zarr 0.5
    multiscale = ome.attributes.ome.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("t", "time", "second"),
        ("c", "channel", None),
        ("z", "space", "micrometer"),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scale = multiscale.datasets[0].coordinateTransformations[0].scale
    assert list(scale) == [2.0, 1.0, 0.5, 0.1, 0.1]

    np.testing.assert_array_equal(group["0"][...], values)
    ds = xr.open_zarr(str(root), consolidated=False)
    assert ds["0"].dims == ("t", "c", "z", "y", "x")
    np.testing.assert_array_equal(ds["0"].values, values)

    meta = json.loads((root / "0" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["t", "c", "z", "y", "x"]
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    assert [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]] == ["bytes", "blosc"]


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "zstd"])
async def test_a_small_image_in_a_folder_store_opens_with_zarr_and_leaves_no_staging_files(
    tmp_path: Path, compression: str | None
) -> None:
    # A small image's objects are written straight to files (in place: nothing reads the store before it
    # is recorded): the folder itself, not a copy, opens with zarr and validates as OME-Zarr; writing
    # again replaces the objects.
    root = tmp_path / "store"
    grant = StorageGrant(
        store_id="s",
        kind="file",
        bucket="",
        prefix="s",
        path=str(root),
        write=True,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    store = GrantedStore(lambda: grant)
    rng = np.random.default_rng(7)
    for values in (rng.integers(0, 4000, (64, 48), dtype=np.uint16), np.arange(64 * 48, dtype=np.uint16)):
        image = prepare_image(values.reshape(64, 48), dims="yx")
        await write_image(store, image, name="field", compression=compression, thumbnail=True)
        group = zarr.open_group(str(root), mode="r")
        Image.from_zarr(group)
        # The group's members are its one array (a thumbnail the server makes goes inside it, 0/).
        assert [name for name, _ in group.members()] == ["0"]
        np.testing.assert_array_equal(group["0"][...], values.reshape(64, 48))
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["0/c.0.0", "0/zarr.json", "zarr.json"]


@pytest.mark.parametrize(
    ("name", "labels", "windows", "rgb", "pixel_size"),
    [
        ("f00001.tif", ["Channel 0"], [(601.0, 1462.0)], False, {"x": 0.5, "y": 0.5}),
        (None, ["DAPI", 'say "GFP" \\ é ☃'], [(0.0, 65535.0), (1e-07, 2.5e20)], False, {"x": 0.1}),
        ('well "A1" ☃\n', ["r", "g", "b"], [(0.0, 255.0)] * 3, True, {}),
        ("", ["c"], [(-3.25, 0.1)], False, {"y": 2.0, "x": 3.0}),
    ],
)
def test_a_small_images_group_document_from_its_template_is_the_one_built_from_dicts(
    name: str | None,
    labels: list[str],
    windows: list[tuple[float, float]],
    rgb: bool,
    pixel_size: dict[str, float],
) -> None:
    channels = [
        ChannelInfo(label=label, colour=CHANNEL_COLOURS[i], low=low, high=high)
        for i, (label, (low, high)) in enumerate(zip(labels, windows, strict=True))
    ]
    dims = ("c", "y", "x")
    built = group_metadata(
        ome_attributes(dims, pixel_size, name=name, levels=[(1, 1, 1)], omero=omero_block(channels, rgb=rgb))
    )
    # Twice: the second comes from the cached template.
    for _ in range(2):
        document = _one_level_group_document(dims, pixel_size, name, channels, rgb)
        assert document == _encode_json(built)
        assert json.loads(document) == built
