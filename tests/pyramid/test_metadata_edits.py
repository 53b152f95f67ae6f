"""Metadata edited through the API reaches the store: third-party readers see the new values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader as OmeReader

import mikro
from tests.fixtures_servers import MikroServer, unique

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


@pytest.fixture
async def m(mikro_server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = mikro_server.add_user("edits")
    async with mikro.connect(mikro_server.url, token=token, timeout=60) as session:
        yield session


def _read(path: str) -> dict[str, object]:
    [node] = list(OmeReader(parse_url(path))())
    return dict(node.metadata)


async def test_edits_are_written_back_to_the_group(m: mikro.Mikro) -> None:
    values = np.random.default_rng(4).integers(0, 255, (2, 120, 90), dtype=np.uint8)
    rep = await m.create_representation(
        values, name=unique("before"), dims="cyx", pixel_size={"x": 0.5, "y": 0.5}, pyramid=1
    )
    before = _read(rep.store.path)
    assert before["coordinateTransformations"][1][0]["scale"] == [1.0, 1.0, 1.0]  # type: ignore[index]
    assert before["channel_names"] == ["Channel 0", "Channel 1"]

    new_name = unique("after")
    await m.update_representation(
        rep,
        name=new_name,
        physical_size={"x": 0.3, "y": 0.4},
        channels=[{"name": "DAPI", "color": "#0000FF"}, {"name": "GFP"}],
    )
    after = _read(rep.store.path)
    scales = [t[0]["scale"] for t in after["coordinateTransformations"]]  # type: ignore[attr-defined]
    assert scales == [[1.0, 0.4, 0.3], [1.0, 0.8, 0.6]]
    assert after["channel_names"] == ["DAPI", "GFP"]
    assert after["name"] == new_name
    ome = json.loads((Path(rep.store.path) / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["omero"]["channels"][0]["color"] == "0000FF"
    assert ome["omero"]["channels"][0]["window"]["max"] == float(values[0].max())  # windows kept
    again = await m.get_representation(rep.id)
    assert float(again.data_at(1).coords["x"][1]) == pytest.approx(0.6)


async def test_a_pixel_size_given_later_gets_its_unit(m: mikro.Mikro) -> None:
    rep = await m.create_representation(np.zeros((30, 40), np.uint16), name=unique("unitless"))
    assert [a.get("unit") for a in _read(rep.store.path)["axes"]] == [None, None]  # type: ignore[attr-defined]
    await m.update_representation(rep, physical_size={"x": 2.0, "y": 2.0})
    metadata = _read(rep.store.path)
    assert [a.get("unit") for a in metadata["axes"]] == ["micrometer", "micrometer"]  # type: ignore[attr-defined]
    assert metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 2.0]  # type: ignore[index]
