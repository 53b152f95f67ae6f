"""Small files go up in groups (one ``create_representations`` batch each): a bad file in a group fails
alone, and a group cancelled while its images are written leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import tifffile

import mikro
from mikro._config import cores
from mikro.ingest import IngestProgress
from tests.fixtures_servers import MikroServer
from tests.ingest import _files

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]

GOOD = 6


async def _all(m: mikro.Mikro) -> list[mikro.Representation]:
    return [r async for r in m.iter_representations(page_size=500)]


def _objects(server: MikroServer) -> set[str]:
    root = server.data_dir / "objects"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


async def test_a_bad_file_in_a_group_fails_alone(m: mikro.Mikro, tmp_path: Path) -> None:
    folder = tmp_path / "plate"
    _files.small_tiffs(folder, GOOD)
    # Read without complaint, refused when its image is checked: the group's batch fails as a whole.
    tifffile.imwrite(folder / "complex.tif", np.ones((8, 8), np.complex64))
    _files.broken_tiff(folder / "corrupt.tif")  # refused when read: goes up alone from the start

    report = await m.ingest(folder)
    status = {Path(f.path).name: (f.status, f.error) for f in report.files}
    assert "complex64" in str(status.pop("complex.tif"))
    assert status.pop("corrupt.tif")[0] == "failed"
    assert status == {f"img{i:03d}.tif": ("created", None) for i in range(GOOD)}
    assert not report.ok and report.created == GOOD

    reps = {r.name: r for r in await _all(m)}
    assert sorted(reps) == sorted(status)
    originals = {f.id: f.name for f in await m.list_files()}
    assert sorted(originals.values()) == sorted(status)
    for i in range(GOOD):
        rep = reps[f"img{i:03d}.tif"]
        assert rep.original_file is not None and originals[rep.original_file.id] == rep.name
        np.testing.assert_array_equal(await m.compute(rep.data), _files.values((16, 16), seed=i))


async def test_a_group_cancelled_while_written_leaves_nothing(
    m: mikro.Mikro, mikro_server: MikroServer, tmp_path: Path
) -> None:
    folder = tmp_path / "plate"
    _files.small_tiffs(folder, GOOD)
    before = _objects(mikro_server)
    with anyio.CancelScope() as scope:

        def cancel_once_written(p: IngestProgress) -> None:
            # Bytes are done once a group's images are on the store, before their rows are created.
            if p.bytes_done and not p.images_created:
                scope.cancel()

        await m.ingest(folder, on_progress=cancel_once_written)
    assert scope.cancelled_caught
    assert await _all(m) == [] and await m.list_files() == []
    assert _objects(mikro_server) == before

    report = await m.ingest(folder)
    assert report.ok and report.created == GOOD
    assert len(await _all(m)) == GOOD and len(await m.list_files()) == GOOD


async def test_many_small_files_are_recorded_in_few_requests(
    m: mikro.Mikro, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 192 files: 8 groups of 24 (not 12 of 16), each one createFiles and one createRepresentations
    # request: the server's cost per request is what a small file's ingest costs most of.
    files = 192
    _files.small_tiffs(tmp_path / "plate", files)
    sent: list[str] = []
    execute, validated = m._execute, m._execute_validated

    async def counted(operation: str, variables: Any) -> dict[str, Any]:
        sent.append(operation)
        return await execute(operation, variables)

    async def counted_validated(operation: str, variables: Any, shape: Any) -> Any:
        sent.append(operation)
        return await validated(operation, variables, shape)

    monkeypatch.setattr(m, "_execute", counted)
    monkeypatch.setattr(m, "_execute_validated", counted_validated)
    report = await m.ingest(tmp_path / "plate", concurrency=8)
    assert report.ok and report.created == files
    assert sent.count("CreateRepresentationIds") == sent.count("CreateFileRecords") == 8
    reps = await _all(m)
    originals = {f.id: f.name for f in await m.list_files(limit=1000)}
    assert (
        sorted(originals.values())
        == sorted(r.name for r in reps)
        == [f"img{i:03d}.tif" for i in range(files)]
    )
    assert all(r.original_file is not None and originals[r.original_file.id] == r.name for r in reps)
    last = next(r for r in reps if r.name == f"img{files - 1:03d}.tif")
    np.testing.assert_array_equal(await m.compute(last.data), _files.values((16, 16), seed=files - 1))


@pytest.mark.parametrize("max_threads", [1, 8])
async def test_small_files_go_up_on_one_thread_per_core(
    server: MikroServer, tmp_path: Path, max_threads: int
) -> None:
    # A group's reading and its writes to a folder store take the session's `local_limiter` (GIL-bound
    # work: more threads than cores only hand the GIL back and forth); writes to S3 take its threads.
    # With one thread for both, nothing waits on the other: every file is stored, with its original.
    files = 40
    _files.small_tiffs(tmp_path / "plate", files)
    token = server.add_user("threads")
    async with mikro.connect(server.url, token=token, timeout=30, max_threads=max_threads) as m:
        assert m.local_limiter.total_tokens == min(max_threads, cores())
        report = await m.ingest(tmp_path / "plate", concurrency=4)
        assert report.ok and report.created == files
        reps = await _all(m)
        originals = {f.id: f.name for f in await m.list_files(limit=1000)}
        assert (
            sorted(r.name for r in reps)
            == sorted(originals.values())
            == sorted(f"img{i:03d}.tif" for i in range(files))
        )
        assert all(r.original_file is not None and originals[r.original_file.id] == r.name for r in reps)
        last = next(r for r in reps if r.name == f"img{files - 1:03d}.tif")
        np.testing.assert_array_equal(await m.compute(last.data), _files.values((16, 16), seed=files - 1))
