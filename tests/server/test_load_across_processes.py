"""Load across processes (bounded in time and count, loopback only): 3 server processes on one
PostgreSQL database and one store; 24 clients spread over them create, update, delete and list images
and ROIs while 6 watches (2 on each process) record events. Every acknowledged mutation is seen by
every watch, in one cursor order, with no GAP, and nothing acknowledged is missing at the end."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from tests.fixtures_servers import MikroServer, unique
from tests.server.test_load_logs import BAD_LINE

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.single_backend(
        reason="under test is three server processes under load; the clients and watches are the same "
        "code on both backends and run on both in tests/subscriptions and tests/client"
    ),
]

CLIENTS = 24
PROCESSES = 3


@pytest.fixture(scope="module")
def three_servers(
    postgres_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[MikroServer]]:
    url = postgres_cluster.create_database()
    first_dir = tmp_path_factory.mktemp("load-0")
    (first_dir / "objects").mkdir()
    servers = [MikroServer(first_dir, {"database_url": url}).start()]
    try:
        for n in range(1, PROCESSES):
            data_dir = tmp_path_factory.mktemp(f"load-{n}")
            (data_dir / "objects").symlink_to(first_dir / "objects", target_is_directory=True)
            settings = {"database_url": url, "admin_token": servers[0].admin_token}
            servers.append(MikroServer(data_dir, settings).start())
        yield servers
    finally:
        for server in servers:
            server.stop()
            # Shown by pytest only when a test failed: what the server logged.
            print(f"--- {server.url} stderr ---\n{server.stderr()[-20000:]}")


async def test_mutations_on_three_processes_reach_every_watch(three_servers: list[MikroServer]) -> None:
    token = three_servers[0].add_user("load")
    urls = [server.url for server in three_servers]
    acknowledged: list[tuple[str, mikro.EventKind, str]] = []  # (stream, kind, id)

    async with mikro.connect(urls[0], token=token) as setup:
        dataset = await setup.create_dataset(unique("load"))
        shared = await setup.create_representation(np.zeros((8, 8), np.uint8), name="shared", dims="yx")

    async def client(n: int) -> None:
        async with mikro.connect(urls[n % PROCESSES], token=token) as m:
            image = await m.create_representation(
                np.full((4, 4), n, np.uint8), name=f"img{n}", dims="yx", dataset=dataset
            )
            acknowledged.append(("rep", mikro.EventKind.CREATE, image.id))
            rois = [await m.create_roi(shared, "POINT", [[0, 0, 0, n, i]], label=f"c{n}") for i in range(2)]
            acknowledged.extend(("roi", mikro.EventKind.CREATE, roi.id) for roi in rois)
            await m.update_roi(rois[0], label=f"c{n}-moved")
            acknowledged.append(("roi", mikro.EventKind.UPDATE, rois[0].id))
            await m.delete_roi(rois[1])
            acknowledged.append(("roi", mikro.EventKind.DELETE, rois[1].id))
            await m.update_representation(image, tags=[f"t{n}"])
            acknowledged.append(("rep", mikro.EventKind.UPDATE, image.id))
            assert image.id in {rep.id for rep in await m.list_representations(dataset=dataset, limit=100)}
            if n % 3 == 0:
                await m.delete_representation(image)
                acknowledged.append(("rep", mikro.EventKind.DELETE, image.id))

    seen: dict[str, list[list[Any]]] = {"rep": [], "roi": []}
    with anyio.fail_after(300):
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(mikro.connect(url, token=token)) for url in urls]
            watches = []
            for m in sessions:  # two watches on each process: images of the dataset, ROIs of `shared`
                for stream, watch in (
                    ("rep", m.watch_representations(dataset=dataset, after=0)),
                    ("roi", m.watch_rois(shared, after=0)),
                ):
                    watches.append((stream, await stack.enter_async_context(watch)))
            async with anyio.create_task_group() as tg:
                for n in range(CLIENTS):
                    tg.start_soon(client, n)
            for stream, events in watches:
                wanted = sum(1 for s, _, _ in acknowledged if s == stream)
                got: list[Any] = []
                async for event in events:
                    assert event.kind is not mikro.EventKind.GAP
                    got.append((event.cursor, event.kind, event.id))
                    if len(got) == wanted:
                        break
                seen[stream].append(got)

        for stream in ("rep", "roi"):
            mine = Counter((kind, id) for s, kind, id in acknowledged if s == stream)
            first = seen[stream][0]
            assert Counter((kind, id) for _, kind, id in first) == mine
            cursors = [cursor for cursor, _, _ in first]
            assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
            assert all(other == first for other in seen[stream])  # one order, on every process

        # Nothing acknowledged is missing: the catalogue agrees with the acknowledged mutations.
        async with mikro.connect(urls[1], token=token) as m:
            deleted = {id for s, kind, id in acknowledged if s == "rep" and kind is mikro.EventKind.DELETE}
            images = {id for s, kind, id in acknowledged if s == "rep" and kind is mikro.EventKind.CREATE}
            listed = {rep.id for rep in await m.list_representations(dataset=dataset, limit=100)}
            assert listed == images - deleted
            kept = {id for s, kind, id in acknowledged if s == "roi" and kind is mikro.EventKind.UPDATE}
            rois = await m.list_rois(representation=shared, limit=100)
            assert {roi.id for roi in rois} == kept
            assert all(roi.label is not None and roi.label.endswith("-moved") for roi in rois)

        # And the servers logged no tracebacks or errors doing it.
        for server in three_servers:
            assert not [line for line in server.stderr().splitlines() if BAD_LINE.search(line)]
