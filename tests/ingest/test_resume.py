"""Rerun, resume after a cancellation, bad files next to good ones, a file changing while it is read."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest
import tifffile

import mikro
from mikro.ingest import IngestProgress
from tests.fixtures_servers import MikroServer
from tests.ingest import _files

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]

FILES = 50


async def _all(m: mikro.Mikro) -> list[mikro.Representation]:
    return [r async for r in m.iter_representations(page_size=500)]


async def test_cancelled_part_way_then_rerun_stores_each_file_once(m: mikro.Mikro, tmp_path: Path) -> None:
    _files.small_tiffs(tmp_path / "plate", FILES)
    with anyio.CancelScope() as scope:

        def stop_part_way(p: IngestProgress) -> None:
            if p.images_created >= 10:
                scope.cancel()

        # One slot: small files go up in groups of 16, and with the default four slots all 50 can be in
        # flight at once, finishing together before the cancellation lands (a busy machine did).
        await m.ingest(tmp_path / "plate", on_progress=stop_part_way, concurrency=1)
    assert scope.cancelled_caught
    stored = len(await _all(m))
    assert 10 <= stored < FILES

    report = await m.ingest(tmp_path / "plate")
    assert report.ok and (report.created, report.skipped) == (FILES - stored, stored)
    reps = await _all(m)
    assert len(reps) == FILES
    assert len({r.source_fingerprint for r in reps}) == FILES
    # One original per file, however the first run was cut: an upload it finished is reused.
    files = [f async for f in m.iter_files(page_size=500)]
    assert len(files) == FILES and all(r.original_file is not None for r in reps)

    again = await m.ingest(tmp_path / "plate")
    assert (again.created, again.skipped) == (0, FILES)
    assert {f.status for f in again.files} == {"skipped"}


async def test_files_hashed_batch_by_batch_ahead_of_their_upload(
    m: mikro.Mikro, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With batches of a few files (the batch size lowered here), each batch is hashed and looked up
    while the one before uploads: every file is stored once, in the report's order, and a rerun skips all."""
    from mikro.ingest import _pipeline

    monkeypatch.setattr(_pipeline, "HASH_AHEAD_BYTES", 3 * 1024)  # about 3 small files a batch
    _files.small_tiffs(tmp_path / "plate", 12)
    _files.broken_tiff(tmp_path / "plate" / "img005.tif")  # a bad one mid-way
    seen: list[IngestProgress] = []
    report = await m.ingest(tmp_path / "plate", on_progress=seen.append)
    assert [Path(f.path).name for f in report.files] == [f"img{i:03d}.tif" for i in range(12)]
    assert report.created == 11 and [Path(f.path).name for f in report.failed] == ["img005.tif"]
    assert seen[-1].files_done == seen[-1].files_total == 12
    assert seen[-1].bytes_done == seen[-1].bytes_total == sum(f.bytes for f in report.files)
    again = await m.ingest(tmp_path / "plate")
    assert (again.created, again.skipped) == (0, 11)
    assert len({r.source_fingerprint for r in await _all(m)}) == 11


async def test_a_changed_file_is_a_new_source(m: mikro.Mikro, tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, _files.values((16, 16), seed=1), photometric="minisblack")
    first = await m.ingest(path)
    tifffile.imwrite(path, _files.values((16, 16), seed=2), photometric="minisblack")
    second = await m.ingest(path)
    assert (first.created, second.created, second.skipped) == (1, 1, 0)
    assert first.files[0].fingerprint != second.files[0].fingerprint


async def test_bad_files_are_reported_and_the_others_ingested(m: mikro.Mikro, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = _files.plain_tiff(folder / "good.tif")
    _files.broken_tiff(folder / "corrupt.tif", fill=0x17)
    (folder / "notes.xyz").write_text("not an image")
    tifffile.imwrite(folder / "complex.tif", np.ones((8, 8), np.complex64))
    _files.ome_tiff(folder / "cut.ome.tif")
    whole = (folder / "cut.ome.tif").read_bytes()
    (folder / "cut.ome.tif").write_bytes(whole[: len(whole) // 2])

    report = await m.ingest([folder, tmp_path / "missing.tif"])
    status = {Path(f.path).name: (f.status, f.error) for f in report.files}
    assert status["good.tif"] == ("created", None)
    for name in ("corrupt.tif", "notes.xyz", "complex.tif", "cut.ome.tif", "missing.tif"):
        assert status[name][0] == "failed" and status[name][1], (name, status[name])
    assert "no reader" in str(status["notes.xyz"][1])
    assert "complex64" in str(status["complex.tif"][1])
    assert "no such file" in str(status["missing.tif"][1])
    assert not report.ok
    # Nothing of the failed files was kept (the truncated one's first scene and original included).
    (rep,) = await _all(m)
    assert [f.name for f in await m.list_files()] == ["good.tif"]
    assert rep.name == "good.tif"
    np.testing.assert_array_equal(await m.compute(rep.data), good)


async def test_a_file_changing_while_read_is_reported_not_stored(m: mikro.Mikro, tmp_path: Path) -> None:
    path = tmp_path / "growing.tif"
    _files.plain_tiff(path)

    def append_once(p: IngestProgress) -> None:
        if p.current == str(path) and path.stat().st_size < 10**6:
            with path.open("ab") as f:
                f.write(b"\0" * 10**6)

    report = await m.ingest(path, on_progress=append_once)
    (line,) = report.files
    assert line.status == "failed" and "changed while" in str(line.error)
    assert await _all(m) == []


async def test_dry_run_lists_and_writes_nothing(m: mikro.Mikro, tmp_path: Path) -> None:
    _files.imagej_tiff(tmp_path / "hyper.tif")
    report = await m.ingest(tmp_path, dry_run=True)
    ((planned,),) = [f.planned for f in report.files]
    assert (planned.dims, planned.shape, planned.dtype) == (
        ["t", "c", "z", "y", "x"],
        [2, 4, 3, 32, 24],
        "uint16",
    )
    assert planned.pixel_size == {"x": 0.5, "y": 0.5, "z": 2.0, "t": 3.0}
    assert report.files[0].status == "planned" and await _all(m) == []


async def test_an_original_left_by_a_killed_run_is_kept_once(m: mikro.Mikro, tmp_path: Path) -> None:
    """A killed run can leave a file's original with none of its images: the rerun finds it (one lookup
    per batch of files) and links the images to it instead of storing the file a second time."""
    _files.small_tiffs(tmp_path / "plate", 3)
    # A file too large for the small files' groups: it goes up by itself.
    tifffile.imwrite(tmp_path / "plate" / "stack.tif", _files.values((2, 600, 600)), photometric="minisblack")
    left = [await m.upload_file(tmp_path / "plate" / name) for name in ("img001.tif", "stack.tif")]
    report = await m.ingest(tmp_path / "plate")
    assert report.ok and report.created == 4, report.to_dict()
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["img001.tif"].original_file == left[0].id
    assert by_name["stack.tif"].original_file == left[1].id
    files = [f async for f in m.iter_files()]
    assert len(files) == 4 and len({f.content_hash for f in files}) == 4
    for rep_id in by_name["stack.tif"].images:
        original = (await m.get_representation(rep_id)).original_file
        assert original is not None and original.id == left[1].id


async def test_an_admin_never_takes_another_users_file_as_an_original(
    mikro_server: MikroServer, tmp_path: Path
) -> None:
    _files.small_tiffs(tmp_path / "plate", 1)
    path = tmp_path / "plate" / "img000.tif"
    async with mikro.connect(mikro_server.url, token=mikro_server.add_user("owner"), timeout=30) as owner:
        theirs = await owner.upload_file(path)
    async with mikro.connect(
        mikro_server.url, token=mikro_server.add_user("ingest-admin", admin=True), timeout=30
    ) as m:
        report = await m.ingest(tmp_path / "plate")
        assert report.ok and report.created == 1, report.to_dict()
        (line,) = report.files
        assert line.original_file is not None and line.original_file != theirs.id
        original = await m.get_file(line.original_file)
        assert original.content_hash == theirs.content_hash
        assert original.creator.id == (await m.me()).id
