"""Files written by other tools come back from the server exactly: values, dims, channel names and
wavelengths, pixel sizes (converted to micrometres), acquisition metadata, one image per scene."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

import mikro
from tests.fixtures_servers import MikroServer
from tests.ingest import _files

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


@pytest.fixture
async def m_any(server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    """A session on the folder-store server, then on the S3 one."""
    token = server.add_user("ingest")
    async with mikro.connect(server.url, token=token, timeout=30) as session:
        yield session


async def test_ome_tiff_scenes_values_and_metadata(m_any: mikro.Mikro, tmp_path: Path) -> None:
    m = m_any
    path = tmp_path / "cells.ome.tif"
    stack, plane = _files.ome_tiff(path)
    report = await m.ingest(path)
    assert report.ok and report.created == 2, report.to_dict()
    (line,) = report.files
    reps = [await m.get_representation(i) for i in line.images]
    first, second = sorted(reps, key=lambda r: r.source_scene or 0)

    assert first.dims == ["c", "z", "y", "x"] and first.shape == [3, 2, 40, 30]
    np.testing.assert_array_equal(await m.compute(first.data), stack.transpose(1, 0, 2, 3))
    assert [c.name for c in first.channels] == _files.OME_CHANNELS
    assert [c.emission_wavelength for c in first.channels] == [461.0, 510.0, 610.0]
    assert [c.excitation_wavelength for c in first.channels] == [358.0, 488.0, 587.0]
    assert first.physical_size is not None
    assert (first.physical_size.x, first.physical_size.y, first.physical_size.z) == (0.25, 0.25, 1.5)
    assert first.acquisition_date == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    acq = first.acquisition
    assert acq is not None and acq.time_increment == 2.0
    assert acq.instrument is not None and (acq.instrument.manufacturer, acq.instrument.model) == (
        "Zeiss",
        "LSM 980",
    )
    assert acq.objective is not None
    assert (acq.objective.lens_na, acq.objective.nominal_magnification, acq.objective.immersion) == (
        1.4,
        63.0,
        "Oil",
    )
    assert acq.stage_position is not None
    assert (acq.stage_position.x, acq.stage_position.y, acq.stage_position.z) == (1500.0, 2500.0, 0.5)
    assert (first.source_scene, first.source_scene_name, first.source_scene_count) == (0, "Image:0", 2)

    assert second.dims == ["y", "x"] and second.dtype == "uint8"
    np.testing.assert_array_equal(await m.compute(second.data), plane)
    # Nothing about the second image is known: nothing is made up.
    assert second.physical_size is None and second.acquisition is None and second.acquisition_date is None
    assert first.source_fingerprint == second.source_fingerprint == line.fingerprint
    found = await m.list_representations(source_fingerprint=line.fingerprint)
    assert sorted(r.id for r in found) == sorted(line.images)

    # The original is kept as it is, linked to both images.
    assert first.original_file is not None and second.original_file is not None
    assert first.original_file.id == second.original_file.id == line.original_file
    assert first.original_file.name == "cells.ome.tif"
    assert first.original_file.content_hash == line.fingerprint
    copy = await m.download_file(first.original_file, tmp_path / "copy.tif")
    assert copy.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("layout", ["tiles", "one strip"])
async def test_a_tiff_read_block_by_block_comes_back_exactly(
    m: mikro.Mikro, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A scene larger than one shard is read lazily in blocks of whole tiles, or of rows read from the
    file where a page is one uncompressed strip (the thresholds lowered here so that a small file takes
    that path): values, dims and their order as when read whole."""
    from mikro.ingest import _readers

    monkeypatch.setattr(_readers, "WHOLE_READ_BYTES", 0)
    monkeypatch.setattr(_readers, "BLOCK_BYTES", 2 * 32 * 32 * 2)  # two 32x32 uint16 tiles
    data = _files.values((2, 3, 96, 80), seed=3)  # z, c, y, x; 80 is no multiple of the tile
    path = tmp_path / "tiled.ome.tif"
    tiles = {"tile": (32, 32)} if layout == "tiles" else {"byteorder": ">"}  # big-endian: swapped on read
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZCYX"}, **tiles)
    report = await m.ingest(path)
    assert report.ok and report.created == 1, report.to_dict()
    rep = await m.get_representation(report.files[0].images[0])
    assert rep.dims == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(await m.compute(rep.data), data.transpose(1, 0, 2, 3))


async def test_plain_and_imagej_tiff(m: mikro.Mikro, tmp_path: Path) -> None:
    plain = _files.plain_tiff(tmp_path / "plain.tif")
    hyper = _files.imagej_tiff(tmp_path / "hyper.tif")
    report = await m.ingest(tmp_path, keep_original=False)
    assert report.ok and report.created == 2
    assert await m.list_files() == []
    by_name = {r.name: r for r in await m.list_representations()}

    stack = by_name["plain.tif"]
    assert stack.dims == ["z", "y", "x"]
    np.testing.assert_array_equal(await m.compute(stack.data), plain)
    # A TIFF without a physical resolution has unknown pixel sizes (not bioio's 1 µm).
    assert stack.physical_size is None and [c.name for c in stack.channels] == []

    ij = by_name["hyper.tif"]
    assert ij.dims == ["t", "c", "z", "y", "x"] and ij.shape == [2, 4, 3, 32, 24]
    np.testing.assert_array_equal(await m.compute(ij.data), hyper.transpose(0, 2, 1, 3, 4))
    assert ij.physical_size is not None
    assert (ij.physical_size.x, ij.physical_size.y, ij.physical_size.z, ij.physical_size.t) == (
        0.5,
        0.5,
        2.0,
        3.0,
    )
    assert ij.acquisition is not None and ij.acquisition.time_increment == 3.0


async def test_ome_zarr_written_by_ngff_zarr_and_ome_zarr_py(m: mikro.Mikro, tmp_path: Path) -> None:
    ngff = _files.ngff_zarr(tmp_path / "a.ome.zarr")
    omezarr = _files.ome_zarr_py(tmp_path / "b.ome.zarr")
    report = await m.ingest([tmp_path / "a.ome.zarr", str(tmp_path / "b.*.zarr")])
    assert report.ok and report.created == 2, report.to_dict()
    by_name = {r.name: r for r in await m.list_representations()}

    # A folder is no file: nothing kept beside the images.
    assert all(r.original_file is None for r in by_name.values()) and await m.list_files() == []
    a = by_name["a.ome.zarr"]
    assert a.dims == ["c", "y", "x"]
    np.testing.assert_array_equal(await m.compute(a.data), ngff)
    assert a.physical_size is not None and (a.physical_size.y, a.physical_size.x) == (0.5, 0.25)

    b = by_name["b.ome.zarr"]
    assert b.dims == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(await m.compute(b.data), omezarr)
    assert [c.name for c in b.channels] == ["Hoechst", "Actin"]
    # Nanometres in the file, micrometres in mikro.
    assert b.physical_size is not None
    assert (b.physical_size.z, b.physical_size.y, b.physical_size.x) == pytest.approx((0.8, 0.3, 0.3))


async def test_czi_written_by_pylibczirw(m: mikro.Mikro, tmp_path: Path) -> None:
    data = _files.czi(tmp_path / "zeiss.czi")
    report = await m.ingest(tmp_path / "zeiss.czi")
    assert report.ok and report.created == 1, report.to_dict()
    rep = await m.get_representation(report.files[0].images[0])
    assert rep.dims == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(await m.compute(rep.data), data)
    assert [c.name for c in rep.channels] == ["DAPI", "GFP"]
    assert rep.physical_size is not None
    assert (rep.physical_size.x, rep.physical_size.y, rep.physical_size.z) == pytest.approx((0.1, 0.1, 0.5))
    # The stored OME-Zarr carries them too, where OME-Zarr has a place: channel labels and scales.
    ome = json.loads((Path(rep.store.path) / "zarr.json").read_text())["attributes"]["ome"]
    assert [c["label"] for c in ome["omero"]["channels"]] == ["DAPI", "GFP"]
    level0 = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert level0[-3:] == pytest.approx([0.5, 0.1, 0.1])
