"""``m.ingest(..., cluster=client)``: files read, encoded and uploaded by dask.distributed worker processes.

One LocalCluster of two spawned worker processes serves the module (its startup costs seconds). The
workers reach the real test server's store themselves (the folder store by path, S3 through moto's
endpoint) and the session registers what they wrote; everything is compared with the same files ingested
in this process by another user.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import dask
import numpy as np
import pytest
import tifffile
from distributed import Client

import mikro
from mikro.ingest import IngestProgress, IngestReport
from tests.fixtures_cluster import worker_store_count
from tests.fixtures_servers import MikroServer
from tests.ingest import _files
from tests.ingest.test_encoding import SIDE, stored_codecs

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


def _session(server: MikroServer, name: str) -> mikro.Mikro:
    return mikro.connect(server.url, token=server.add_user(name), timeout=30)


@pytest.fixture
async def pair(server: MikroServer) -> AsyncIterator[tuple[mikro.Mikro, mikro.Mikro]]:
    """Two users on the folder-store server, then on the S3 one: one ingests on the cluster, one here."""
    async with _session(server, "cluster") as on_cluster, _session(server, "local") as here:
        yield on_cluster, here


def write_folder(folder: Path) -> dict[str, Any]:
    """OME-TIFFs written by tifffile (a two-scene one, named channels and pixel sizes), a plain TIFF
    large enough to be read lazily (dask) on the worker, and a corrupt file."""
    folder.mkdir()
    stack, plane = _files.ome_tiff(folder / "cells.ome.tif")
    fields = []
    for i in range(2):
        data = _files.values((2, 24, 20), seed=10 + i)
        tifffile.imwrite(
            folder / f"field{i}.ome.tif",
            data,
            metadata={
                "axes": "CYX",
                "Channel": {"Name": ["DAPI", "GFP"]},
                "PhysicalSizeX": 0.5,
                "PhysicalSizeY": 0.5,
            },
        )
        fields.append(data)
    large = _files.values((3, 1024, 768), seed=20)  # 4.5 MiB: above the size read whole
    tifffile.imwrite(folder / "large.tif", large, metadata=None, photometric="minisblack")
    _files.broken_tiff(folder / "broken.tif")
    return {"stack": stack, "plane": plane, "fields": fields, "large": large}


def _lines(report: IngestReport) -> dict[str, tuple[Any, ...]]:
    return {
        Path(f.path).name: (
            f.status,
            f.created,
            f.skipped,
            f.bytes,
            f.error,
            f.fingerprint,
            bool(f.original_file),
        )
        for f in report.files
    }


def _dumped(model: Any) -> Any:
    return None if model is None else model.model_dump()


def _described(rep: mikro.Representation) -> tuple[Any, ...]:
    return (
        rep.name,
        rep.dims,
        rep.shape,
        rep.dtype,
        rep.variety,
        [(c.name, c.excitation_wavelength, c.emission_wavelength) for c in rep.channels],
        _dumped(rep.physical_size),
        _dumped(rep.acquisition),
        rep.acquisition_date,
        (rep.source_fingerprint, rep.source_scene, rep.source_scene_name, rep.source_scene_count),
        [_dumped(level) for level in rep.store.levels],
    )


async def test_cluster_ingest_matches_the_local_one(
    pair: tuple[mikro.Mikro, mikro.Mikro], cluster: Client, tmp_path: Path
) -> None:
    on_cluster, here = pair
    written = write_folder(tmp_path / "plate")
    puts_before = await anyio.to_thread.run_sync(worker_store_count, cluster, "puts")

    # A dry run lists the same images (shapes, dims, metadata) as here, and writes nothing.
    planned = await on_cluster.ingest(tmp_path / "plate", cluster=cluster, dry_run=True)
    planned_here = await here.ingest(tmp_path / "plate", dry_run=True)
    assert [(f.status, f.planned, f.error) for f in planned.files] == [
        (f.status, f.planned, f.error) for f in planned_here.files
    ]
    assert sum(len(f.planned) for f in planned.files) == 5
    assert await on_cluster.list_representations() == [] and [f async for f in on_cluster.iter_files()] == []

    report = await on_cluster.ingest(tmp_path / "plate", cluster=cluster)
    local = await here.ingest(tmp_path / "plate")

    # The same report: created / failed per file, bytes, fingerprints, kept originals, the reader's reason.
    assert _lines(report) == _lines(local)
    lines = _lines(report)
    assert lines["cells.ome.tif"][:3] == ("created", 2, 0)
    assert lines["broken.tif"][0] == "failed" and lines["broken.tif"][4]
    assert [f.status for f in report.failed] == ["failed"] and not report.ok
    assert report.created == local.created == 5
    # The workers wrote the pixels (and originals); this process only registered them.
    assert await anyio.to_thread.run_sync(worker_store_count, cluster, "puts") > puts_before

    mine = {(r.source_fingerprint, r.source_scene): r for r in await on_cluster.list_representations()}
    theirs = {(r.source_fingerprint, r.source_scene): r for r in await here.list_representations()}
    assert mine.keys() == theirs.keys() and len(mine) == 5
    for key, rep in mine.items():
        assert _described(rep) == _described(theirs[key])
        np.testing.assert_array_equal(
            await on_cluster.compute(rep.data), await here.compute(theirs[key].data)
        )

    by_name = {r.name: r for r in mine.values()}
    first = next(r for r in mine.values() if r.source_scene == 0 and r.name.startswith("cells"))
    np.testing.assert_array_equal(
        await on_cluster.compute(first.data), written["stack"].transpose(1, 0, 2, 3)
    )
    assert [c.name for c in first.channels] == _files.OME_CHANNELS
    assert first.physical_size is not None and (first.physical_size.x, first.physical_size.z) == (0.25, 1.5)
    field = by_name["field1.ome.tif"]
    np.testing.assert_array_equal(await on_cluster.compute(field.data), written["fields"][1])
    assert [c.name for c in field.channels] == ["DAPI", "GFP"]
    assert field.physical_size is not None and (field.physical_size.x, field.physical_size.y) == (0.5, 0.5)
    np.testing.assert_array_equal(await on_cluster.compute(by_name["large.tif"].data), written["large"])
    original = first.original_file
    assert original is not None and original.content_hash == first.source_fingerprint
    copy = await on_cluster.download_file(original, tmp_path / "copy.tif")
    assert copy.read_bytes() == (tmp_path / "plate" / "cells.ome.tif").read_bytes()

    # A rerun (on dask's default scheduler, as a script's `Client(cluster)` makes it) skips every image.
    with dask.config.set(scheduler="dask.distributed"), cluster.as_current():
        again = await on_cluster.ingest(tmp_path / "plate", cluster="auto")
    assert (again.created, again.skipped) == (0, 5)
    assert {Path(f.path).name: f.status for f in again.files if f.status != "failed"} == {
        "cells.ome.tif": "skipped",
        "field0.ome.tif": "skipped",
        "field1.ome.tif": "skipped",
        "large.tif": "skipped",
    }
    assert len(await on_cluster.list_representations()) == 5


def _unfinished_stores(server: MikroServer, token: str) -> int:
    """The user's stores reserved and never finished (a half image's leftovers)."""
    with sqlite3.connect(server.database_path) as db:
        (count,) = db.execute(
            "select count(*) from stores s join users u on s.creator_id = u.id "
            "where u.token_hash = ? and not s.populated",
            (hashlib.sha256(token.encode()).hexdigest(),),
        ).fetchone()
    return int(count)


async def test_cancelled_cluster_ingest_leaves_no_half_image(
    mikro_server: MikroServer, cluster: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "plate"
    _files.small_tiffs(folder, 8)
    token = mikro_server.add_user("cancel")
    async with mikro.connect(mikro_server.url, token=token, timeout=30) as m:
        with anyio.CancelScope() as scope:

            def stop(p: IngestProgress) -> None:
                if p.files_done >= 1:
                    scope.cancel()

            await m.ingest(folder, cluster=cluster, on_progress=stop)
        assert scope.cancelled_caught
        kept = await m.list_representations()
        # Only whole images are left: each with its original, and its file's pixels.
        assert 1 <= len(kept) < 8
        for rep in kept:
            source = folder / rep.name
            np.testing.assert_array_equal(await m.compute(rep.data), tifffile.imread(source))
        # No original kept without its image.
        files = [f async for f in m.iter_files()]
        assert sorted(f.name for f in files) == sorted(r.name for r in kept)
    # The session is closed: every store reserved for an image not registered was given back.
    assert _unfinished_stores(mikro_server, token) == 0

    async with mikro.connect(mikro_server.url, token=token, timeout=30) as m:
        report = await m.ingest(folder, cluster=cluster)
        assert report.ok and (report.created, report.skipped) == (8 - len(kept), len(kept))
        assert len(await m.list_representations()) == 8


async def test_an_original_left_by_a_killed_run_is_kept_once_on_the_cluster(
    mikro_server: MikroServer, cluster: Client, tmp_path: Path
) -> None:
    """The originals an earlier run left (one with none of its file's images) are found for the cluster's
    files too (one lookup for them all): their images link to them, no file is stored twice."""
    folder = tmp_path / "plate"
    _files.small_tiffs(folder, 3)
    async with _session(mikro_server, "left") as m:
        left = await m.upload_file(folder / "img001.tif")
        report = await m.ingest(folder, cluster=cluster)
        assert report.ok and report.created == 3, report.to_dict()
        by_name = {Path(f.path).name: f for f in report.files}
        assert by_name["img001.tif"].original_file == left.id
        files = [f async for f in m.iter_files()]
        assert len(files) == 3 and len({f.content_hash for f in files}) == 3
        (rep_id,) = by_name["img001.tif"].images
        original = (await m.get_representation(rep_id)).original_file
        assert original is not None and original.id == left.id


async def test_a_cluster_of_forked_workers_is_refused(
    m: mikro.Mikro, forked_cluster: Client, tmp_path: Path
) -> None:
    tifffile.imwrite(tmp_path / "one.tif", _files.values((16, 16)), photometric="minisblack")
    with pytest.raises(mikro.MikroError, match="forked: obstore is not fork-safe"):
        await m.ingest(tmp_path, cluster=forked_cluster)
    assert await m.list_representations() == []


@pytest.mark.single_backend("runs the `mikro ingest` command in a process of its own (no event loop here)")
def test_cli_ingests_on_the_scheduler_it_is_given(
    mikro_server: MikroServer, cluster: Client, tmp_path: Path
) -> None:
    from tests.ingest.test_cli import _cli, _images

    folder = tmp_path / "plate"
    _files.small_tiffs(folder, 3)
    _files.broken_tiff(folder / "broken.tif")
    token = mikro_server.add_user("cli")
    address = cluster.scheduler.address
    proc = _cli(mikro_server, token, str(folder), "--scheduler", address, "--json", str(tmp_path / "r.json"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err.decode()
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["created"], report["failed"]) == (3, 1)
    assert f"failed: {folder / 'broken.tif'}" in err.decode()
    assert len(_images(mikro_server, token)) == 3


async def test_a_worker_renews_a_write_grant_that_expired_before_it_started(
    short_grant_server: MikroServer, cluster: Client, tmp_path: Path
) -> None:
    server = short_grant_server
    first, second = tmp_path / "first.tif", tmp_path / "second.tif"
    tifffile.imwrite(first, _files.values((16, 16), seed=1), photometric="minisblack")
    tifffile.imwrite(second, _files.values((2, 16, 16), seed=2), photometric="minisblack")
    workers = list(cluster.scheduler_info()["workers"])
    busy: list[Any] = []

    def hold_the_workers(p: IngestProgress) -> None:
        # Called once `first` is found stored, before `second` gets its stores: every worker then sleeps
        # past the 1 s grant `second`'s task will carry, so the task starts with it expired.
        if not busy:
            busy.extend(cluster.submit(time.sleep, 1.5, workers=[w], pure=False) for w in workers)

    async with mikro.connect(server.url, token=server.add_user("late"), timeout=30) as m:
        assert (await m.ingest(first, cluster=cluster, keep_original=False)).ok
        report = await m.ingest(
            [first, second], cluster=cluster, keep_original=False, on_progress=hold_the_workers
        )
        assert busy and report.ok and (report.created, report.skipped) == (1, 1)
        rep = await m.get_representation(report.files[1].images[0])
        # Reserved with one grant; the worker asked for another one before writing (counted before this
        # process reads the image with a grant of its own).
        assert server.grants(rep.store.id) >= 2
        np.testing.assert_array_equal(await m.compute(rep.data), tifffile.imread(second))


async def test_cluster_workers_store_the_encoding_asked_for(
    mikro_server: MikroServer, cluster: Client, tmp_path: Path
) -> None:
    values = _files.values((2, SIDE, SIDE), seed=5)
    tifffile.imwrite(tmp_path / "scan.tif", values, photometric="minisblack")
    async with _session(mikro_server, "encoding") as m:
        report = await m.ingest(
            tmp_path / "scan.tif", cluster=cluster, keep_original=False, compression=None, pyramid=None
        )
        assert report.ok and report.created == 1, report.to_dict()
        rep = await m.get_representation(report.files[0].images[0])
        np.testing.assert_array_equal(await m.compute(rep.data), values)
    # Without the options, an image this large would get a pyramid level and blosc (test_encoding).
    assert len(rep.store.levels) == 1
    assert not {"blosc", "zstd", "gzip"} & set(stored_codecs(rep))
