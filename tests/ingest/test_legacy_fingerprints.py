"""Upgrading from SHA-256 fingerprints: what mikro stored before BLAKE3 is found, nothing ingested twice."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import mikro
from tests.ingest import _files

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


async def _as_before(m: mikro.Mikro, path: Path, scenes: list[int], count: int) -> mikro.File:
    """Store what mikro before BLAKE3 stored for ``scenes`` of ``path``: the original with a ``sha256:``
    content hash, images whose fingerprint is the file's bare SHA-256 hex."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    original = await m._store_file(path, None, None, {"tags": []}, content_hash=f"sha256:{digest}")
    for scene in scenes:
        await m.create_representation(
            np.zeros((4, 4), np.uint16),
            name=f"{path.name} [{scene}]",
            source_fingerprint=digest,
            source_scene=scene,
            source_scene_count=count,
            original_file=original,
        )
    return original


async def test_rerun_after_upgrading_ingests_nothing_twice(m: mikro.Mikro, tmp_path: Path) -> None:
    folder = tmp_path / "plate"
    _files.small_tiffs(folder, 2)  # img000.tif, img001.tif: one scene each
    _files.ome_tiff(folder / "cells.ome.tif")  # two scenes
    old = await _as_before(m, folder / "img000.tif", [0], 1)
    partial = await _as_before(m, folder / "cells.ome.tif", [0], 2)  # interrupted after its first scene
    assert await m.legacy_source_fingerprints()

    report = await m.ingest(folder)
    assert report.ok, report.to_dict()
    by_name = {Path(f.path).name: f for f in report.files}
    assert (by_name["img000.tif"].status, by_name["img000.tif"].skipped) == ("skipped", 1)
    cells = by_name["cells.ome.tif"]
    assert (cells.created, cells.skipped, cells.original_file) == (1, 1, partial.id)
    assert by_name["img001.tif"].created == 1
    reps = [r async for r in m.iter_representations()]
    assert len(reps) == 4  # two stored before, one scene of cells and img001 now
    assert sorted(f.id for f in await m.list_files()) == sorted(
        [old.id, partial.id, by_name["img001.tif"].original_file]
    )
    for rep in reps:
        if rep.id in cells.images + by_name["img001.tif"].images:
            assert rep.source_fingerprint is not None and rep.source_fingerprint.startswith("blake3:")

    # Again: everything is found, under either spelling.
    again = await m.ingest(folder)
    assert again.ok and (again.created, again.skipped) == (0, 4)
    # The original stored before is still read and checked with its own algorithm.
    copy = await m.download_file(old, tmp_path / "copy.tif")
    assert copy.read_bytes() == (folder / "img000.tif").read_bytes()


async def test_a_new_user_has_no_legacy_fingerprints(m: mikro.Mikro, tmp_path: Path) -> None:
    _files.small_tiffs(tmp_path / "plate", 1)
    assert not await m.legacy_source_fingerprints()
    report = await m.ingest(tmp_path / "plate")
    (line,) = report.files
    (rep,) = [r async for r in m.iter_representations()]
    assert line.fingerprint is not None and line.fingerprint.startswith("blake3:")
    assert rep.source_fingerprint == line.fingerprint
    assert not await m.legacy_source_fingerprints()
