"""napari opens a stored image by its path through napari-ome-zarr: the whole pyramid, each channel
named and coloured as the user said.

No window (no Qt): napari's headless ``ViewerModel.open(path, plugin=None)`` runs the same reader
selection as ``napari <path>``. napari's builtin reader also claims ``*.zarr`` folders (and
``viewer.open``'s default, ``plugin="napari"``, is that builtin reader), so with no plugin named napari
asks which reader to use, until the user's settings prefer napari-ome-zarr for ``*.zarr``; from then
on it is picked by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mikro
from tests.fixtures_servers import MikroServer, unique
from tests.pyramid._reference import reference_levels

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


@pytest.fixture(scope="module")
def napari_settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # napari's settings file for this process (not the user's): set once per process, so module-wide.
    import npe2
    from napari.settings import get_settings

    settings = get_settings(tmp_path_factory.mktemp("napari") / "settings.yaml")
    npe2.PluginManager.instance().discover()  # what napari does at start-up: find the installed plugins
    return settings


@pytest.fixture
async def m(mikro_server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = mikro_server.add_user("napari")
    async with mikro.connect(mikro_server.url, token=token, timeout=60) as session:
        yield session


async def test_napari_opens_the_path_as_named_coloured_multiscale_channels(
    m: mikro.Mikro, napari_settings: Any
) -> None:
    from napari.components import ViewerModel
    from napari.errors import MultipleReaderError

    values = np.random.default_rng(5).integers(0, 3000, (2, 1100, 1300), dtype=np.uint16)
    rep = await m.create_representation(
        values,
        name=unique("napari"),
        dims="cyx",
        pixel_size={"x": 0.5, "y": 0.5},
        channels=[{"name": "DAPI", "color": "0000FF"}, {"name": "GFP", "color": "00FF00"}],
    )
    path = rep.store.path
    assert Path(path).suffix == ".zarr"
    viewer = ViewerModel()
    napari_settings.plugins.extension2reader = {}
    with pytest.raises(MultipleReaderError) as choice:  # the GUI shows its reader dialog here
        viewer.open(path, plugin=None)
    assert "napari-ome-zarr" in choice.value.available_plugins

    expected = reference_levels(values, 2)
    named = viewer.open(path, plugin="napari-ome-zarr")
    napari_settings.plugins.extension2reader = {"*.zarr/": "napari-ome-zarr"}
    for layers in (named, ViewerModel().open(path, plugin=None)):
        # napari-ome-zarr names a channel's layer "<image name>: <channel name>".
        assert [layer.name for layer in layers] == [f"{rep.name}: DAPI", f"{rep.name}: GFP"]
        colours = [tuple(layer.colormap.colors[-1][:3]) for layer in layers]
        assert colours == [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]
        for index, layer in enumerate(layers):
            assert layer.multiscale
            assert len(layer.data) == len(expected)
            for level, reference in zip(layer.data, expected, strict=True):
                np.testing.assert_array_equal(np.asarray(level), reference[index])
            assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
