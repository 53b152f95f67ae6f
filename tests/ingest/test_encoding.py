"""``m.ingest(compression=..., pyramid=...)``: what a lab chooses for its images is what is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import mikro

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]

#: Larger than the coarsest level a pyramid stops at (1024 px): ``pyramid="auto"`` adds a level.
SIDE = 1100


def stored_codecs(rep: mikro.Representation) -> list[str]:
    """The codec names of the image's level-0 array, read from its zarr.json on the folder store."""
    assert rep.store.array_path is not None
    meta = json.loads((Path(rep.store.path) / rep.store.array_path / "zarr.json").read_text())

    def names(codecs: list[dict[str, Any]]) -> list[str]:
        out = []
        for codec in codecs:
            out.append(codec["name"])
            out += names(codec.get("configuration", {}).get("codecs", []))
        return out

    return names(meta["codecs"])


async def test_ingest_uncompressed_without_pyramid(m: mikro.Mikro, tmp_path: Path) -> None:
    values = np.random.default_rng(3).integers(0, 4000, (2, SIDE, SIDE), dtype=np.uint16)
    for name in ("default", "plain"):
        (tmp_path / name).mkdir()
        # Different content: two sources, not one ingested twice.
        tifffile.imwrite(tmp_path / name / "scan.tif", values + (name == "plain"), photometric="minisblack")

    default = await m.ingest(tmp_path / "default", keep_original=False)
    plain = await m.ingest(tmp_path / "plain", keep_original=False, compression=None, pyramid=None)
    assert default.ok and plain.ok and default.created == plain.created == 1

    by_default = await m.get_representation(default.files[0].images[0])
    chosen = await m.get_representation(plain.files[0].images[0])
    np.testing.assert_array_equal(await m.compute(chosen.data), values + 1)
    assert len(by_default.store.levels) == 2 and len(chosen.store.levels) == 1
    assert "blosc" in stored_codecs(by_default)
    assert not {"blosc", "zstd", "gzip"} & set(stored_codecs(chosen))
