"""``build_pyramid`` on an image stored without one: the levels are right, readers never see part of
a pyramid, and a build cancelled halfway changes nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader as OmeReader
from ome_zarr_models.v05 import Image as OmeImage

import mikro
from tests.fixtures_servers import MikroServer, ServerFactory, unique
from tests.pyramid._reference import reference_levels

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_ambient_config")]


@pytest.fixture
async def m(server: MikroServer) -> AsyncIterator[mikro.Mikro]:
    token = server.add_user("builder")
    async with mikro.connect(server.url, token=token, timeout=60) as session:
        yield session


def _values() -> np.ndarray[Any, Any]:
    return np.random.default_rng(9).integers(0, 60000, (2, 1300, 2200), dtype=np.uint16)


async def test_build_pyramid_adds_the_levels(m: mikro.Mikro) -> None:
    values = _values()
    rep = await m.create_representation(
        values, name=unique("flat"), dims="cyx", pixel_size={"x": 0.1, "y": 0.1}, pyramid=None
    )
    assert len(rep.store.levels) == 1
    built = await m.build_pyramid(rep)
    expected = reference_levels(values, 3)
    assert [lv.shape for lv in built.store.levels] == [list(v.shape) for v in expected]
    for level, reference in zip(built.levels, expected, strict=True):
        np.testing.assert_array_equal(await m.compute(level), reference)
    assert float(built.data_at(2).coords["x"][1]) == pytest.approx(0.4)
    with pytest.raises(mikro.ValidationError, match="already has a pyramid"):
        await m.build_pyramid(built)


async def test_readers_see_no_pyramid_or_all_of_it(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    values = _values()
    async with mikro.connect(mikro_server.url, token=token, timeout=60) as m:
        rep = await m.create_representation(values, name=unique("watched"), dims="cyx", pyramid=None)
        root = Path(rep.store.path)
        expected = reference_levels(values, 3)
        seen: list[int] = []
        problems: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            # What a third-party viewer does: read the group, then every array it lists.
            while not stop.is_set():
                ome = json.loads((root / "zarr.json").read_text())["attributes"]["ome"]
                paths = [d["path"] for d in ome["multiscales"][0]["datasets"]]
                seen.append(len(paths))
                for index, path in enumerate(paths):
                    corner = zarr.open_array(str(root / path), mode="r")[:, -5:, -5:]
                    if not np.array_equal(corner, expected[index][:, -5:, -5:]):
                        problems.append(f"level {path} read while incomplete")

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            built = await m.build_pyramid(rep)
            await anyio.sleep(0.2)
        finally:
            stop.set()
            await anyio.to_thread.run_sync(watcher.join)
        assert problems == []
        assert set(seen) <= {1, 3} and seen[-1] == 3 and seen[0] == 1
        OmeImage.from_zarr(zarr.open_group(str(root), mode="r"))
        [node] = list(OmeReader(parse_url(str(root)))())
        for level, reference in zip(node.data, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(level), reference)
        assert len(built.store.levels) == 3


async def test_a_cancelled_build_changes_nothing(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("canceller")
    async with mikro.connect(mikro_server.url, token=token, timeout=60) as m:
        # 16 planes: four blocks of level 0 (4 planes each), so the build can stop after the first.
        values = np.random.default_rng(1).integers(0, 999, (16, 1100, 1100), dtype=np.uint16)
        rep = await m.create_representation(values, name=unique("cancelled"), dims="zyx", pyramid=None)
        root = Path(rep.store.path)
        group_before = (root / "zarr.json").read_bytes()
        files_before = sorted(p for p in root.rglob("*") if p.is_file())
        calls = 0
        with anyio.CancelScope() as scope:

            def progress(done: int, total: int) -> None:
                nonlocal calls
                calls += 1
                assert done < total
                scope.cancel()  # halfway: after the first block of level 0 has gone through

            await m.build_pyramid(rep, progress=progress)
        assert scope.cancelled_caught and calls >= 1
        assert (root / "zarr.json").read_bytes() == group_before
        assert sorted(p for p in root.rglob("*") if p.is_file()) == files_before
        again = await m.get_representation(rep.id)
        assert len(again.store.levels) == 1
        # And a later build still works.
        assert len((await m.build_pyramid(again)).store.levels) == 2


def _write_grants(server: MikroServer, store_id: str) -> int:
    with sqlite3.connect(server.database_path) as db:
        query = "select count(*) from grants where store_id = ? and write"
        (count,) = db.execute(query, (int(store_id),)).fetchone()
    return int(count)


async def test_a_build_outliving_its_grant_renews_it(server_factory: ServerFactory) -> None:
    server = server_factory.start(grant_ttl=1)
    token = server.add_user("slow-builder")
    async with mikro.connect(server.url, token=token, timeout=60, max_threads=1) as m:
        values = np.random.default_rng(2).integers(0, 999, (16, 1100, 1100), dtype=np.uint16)
        rep = await m.create_representation(values, name=unique("slow"), dims="zyx", pyramid=None)
        before = _write_grants(server, rep.store.id)
        first_block = anyio.Event()

        async def hold_the_worker_thread() -> None:
            # The build's one worker thread is the test's until the grant the build started with has
            # expired: its later blocks need a renewed one. The event loop keeps running meanwhile.
            await first_block.wait()
            async with m.thread_limiter:
                await anyio.sleep(1.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_the_worker_thread)
            built = await m.build_pyramid(rep, progress=lambda done, total: first_block.set())
        # requestLevelsUpload, then at least one renewal of the same prefix's write grant.
        assert _write_grants(server, rep.store.id) - before >= 2
        expected = reference_levels(values, 2)
        assert [lv.shape for lv in built.store.levels] == [list(v.shape) for v in expected]
        np.testing.assert_array_equal(await m.compute(built.levels[1]), expected[1])


async def test_a_renewal_names_a_levels_prefix_of_an_image_without_pyramid(m: mikro.Mikro) -> None:
    rep = await m.create_representation(_values(), name=unique("renew"), dims="cyx", pyramid=None)
    renew = "mutation($s: ID!, $p: String) { requestLevelsUpload(store: $s, prefix: $p) { prefix } }"
    for bad in ("../other", "levels-xyz", "0"):
        with pytest.raises(mikro.MikroError, match="prefix must be a levels-"):
            await m.execute(renew, {"s": rep.store.id, "p": bad})
    first = (await m.execute(renew, {"s": rep.store.id}))["requestLevelsUpload"]["prefix"]
    segment = first.rstrip("/").rsplit("/", 1)[-1]
    again = (await m.execute(renew, {"s": rep.store.id, "p": segment}))["requestLevelsUpload"]["prefix"]
    assert again == first
    built = await m.build_pyramid(rep)
    with pytest.raises(mikro.MikroError, match="already has a pyramid"):
        await m.execute(renew, {"s": built.store.id, "p": segment})
