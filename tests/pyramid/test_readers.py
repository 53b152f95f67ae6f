"""A stored image with a pyramid, read by tools that are not mikro: ome-zarr-py's Reader,
bioio-ome-zarr, ome-zarr-models (validation); and by mikro's own ``rep.levels``.

Each level must equal a reference pyramid computed here with numpy; channel names, axes, units and
scales must be what the user gave (and no unit where no pixel size was given).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from bioio_ome_zarr import Reader as BioReader
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader as OmeReader
from ome_zarr_models.v05 import Image as OmeImage

import mikro
from tests.fixtures_servers import MikroServer, unique
from tests.pyramid._reference import reference_levels

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


@pytest.fixture
async def m(mikro_server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = mikro_server.add_user("pyramid")
    async with mikro.connect(mikro_server.url, token=token, timeout=60) as session:
        yield session


def _two_channels() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(12)
    values = rng.integers(0, 3000, (2, 1100, 2300), dtype=np.uint16)
    values[1] //= 3
    return values


async def test_ome_zarr_py_and_bioio_read_every_level(m: mikro.Mikro) -> None:
    values = _two_channels()
    rep = await m.create_representation(
        values,
        name=unique("pyr"),
        dims="cyx",
        pixel_size={"x": 0.25, "y": 0.5},
        channels=[{"name": "DAPI"}, {"name": "GFP"}],
    )
    # 2300 px wide: halved until the widest side fits in 1024 px (2300 -> 1150 -> 575): three levels.
    expected = reference_levels(values, 3)
    assert [level.shape for level in rep.store.levels] == [list(v.shape) for v in expected]
    assert [level.scale for level in rep.store.levels] == [[1, 1, 1], [1, 2, 2], [1, 4, 4]]
    root = Path(rep.store.path)
    assert root.suffix == ".zarr"

    OmeImage.from_zarr(zarr.open_group(str(root), mode="r"))  # strict OME-Zarr 0.5 validation

    [node] = list(OmeReader(parse_url(str(root)))())
    assert node.metadata["channel_names"] == ["DAPI", "GFP"]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, "micrometer", "micrometer"]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[1.0, 0.5, 0.25], [1.0, 1.0, 0.5], [1.0, 2.0, 1.0]]
    assert len(node.data) == 3
    for level, reference in zip(node.data, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(level), reference)

    bio = BioReader(str(root))
    assert bio.channel_names == ["DAPI", "GFP"]
    assert len(bio.resolution_levels) == 3
    for index, reference in enumerate(expected):
        bio.set_resolution_level(index)
        assert reference.shape[-2:] == (bio.dims.Y, bio.dims.X)
        np.testing.assert_array_equal(bio.get_image_data("CYX"), reference)
    bio.set_resolution_level(0)
    assert (bio.physical_pixel_sizes.Y, bio.physical_pixel_sizes.X) == (0.5, 0.25)

    group = json.loads((root / "zarr.json").read_text())["attributes"]["ome"]
    assert group["multiscales"][0]["type"] == "mean"
    windows = [c["window"] for c in group["omero"]["channels"]]
    assert [(w["min"], w["max"]) for w in windows] == [
        (float(values[0].min()), float(values[0].max())),
        (float(values[1].min()), float(values[1].max())),
    ]
    assert [c["color"] for c in group["omero"]["channels"]] == ["FF00FF", "00FF00"]

    # mikro's own view of the levels: lazy, with physical coordinates.
    again = await m.get_representation(rep.id)
    levels = again.levels
    assert [lv.shape for lv in levels] == [v.shape for v in expected]
    assert float(levels[2].coords["x"][1]) == 1.0 and float(levels[2].coords["y"][1]) == 2.0
    assert list(levels[1].coords["c"].values) == ["DAPI", "GFP"]
    np.testing.assert_array_equal(await m.compute(levels[2]), expected[2])
    np.testing.assert_array_equal(
        await m.compute(again.data_at(1)[:, 100:300, 7:900]), expected[1][:, 100:300, 7:900]
    )


@pytest.mark.parametrize("variety", ["MASK", "LABEL"])
async def test_label_levels_hold_only_labels_of_level_0(m: mikro.Mikro, variety: str) -> None:
    labels = np.zeros((1500, 1300), dtype=np.uint16)
    rng = np.random.default_rng(5)
    for value in rng.choice(np.arange(1, 60000), size=40, replace=False):
        y, x = rng.integers(0, 1400), rng.integers(0, 1200)
        labels[y : y + rng.integers(3, 90), x : x + rng.integers(3, 90)] = value
    rep = await m.create_representation(labels, name=unique("labels"), variety=variety)
    expected = reference_levels(labels, 2, labels=True)
    root = Path(rep.store.path)
    [node] = list(OmeReader(parse_url(str(root)))())
    assert len(node.data) == 2
    present = set(np.unique(labels))
    for level, reference in zip(node.data, expected, strict=True):
        pixels = np.asarray(level)
        np.testing.assert_array_equal(pixels, reference)
        assert set(np.unique(pixels)) <= present
    assert json.loads((root / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]["type"] == (
        "nearest"
    )


async def test_unknown_pixel_size_is_not_invented(m: mikro.Mikro) -> None:
    values = np.arange(64 * 80, dtype=np.uint8).reshape(64, 80)
    rep = await m.create_representation(values, name=unique("nosize"))
    assert rep.physical_size is None  # the API says unknown
    assert len(rep.store.levels) == 1  # small: no pyramid
    [node] = list(OmeReader(parse_url(rep.store.path))())
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, None]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 1.0]
    assert node.metadata["channel_names"] == ["Channel 0"]
    assert "x" not in rep.data.coords  # no physical coordinates from an invented size


async def test_rgb_is_marked_for_viewers(m: mikro.Mikro) -> None:
    values = np.random.default_rng(2).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    rep = await m.create_representation(
        values, name=unique("rgb"), dims="cyx", variety="RGB", channels=[{"name": n} for n in "RGB"]
    )
    ome = json.loads((Path(rep.store.path) / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["omero"]["rgb"] is True
    assert [c["label"] for c in ome["omero"]["channels"]] == ["R", "G", "B"]


async def test_pyramid_can_be_turned_off_or_forced(m: mikro.Mikro) -> None:
    values = np.random.default_rng(3).integers(0, 255, (1200, 1100), dtype=np.uint8)
    off = await m.create_representation(values, name=unique("off"), pyramid=None)
    assert len(off.store.levels) == 1 and not (Path(off.store.path) / "1").exists()
    small = values[:300, :200]
    forced = await m.create_representation(small, name=unique("forced"), pyramid=3)
    assert [lv.shape for lv in forced.store.levels] == [[300, 200], [150, 100], [75, 50], [38, 25]]
    for level, reference in zip(forced.levels, reference_levels(small, 4), strict=True):
        np.testing.assert_array_equal(await m.compute(level), reference)
    with pytest.raises(mikro.ValidationError, match="pyramid"):
        await m.create_representation(small, name=unique("bad"), pyramid=-1)
