"""Several server processes on one database: a watch on one process sees what the others did, in
cursor order, with no GAP (the event table is the truth; LISTEN/NOTIFY or polling wakes the watch);
``mikro serve --workers N`` shares its port, idempotency keys and events between its processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import numpy as np
import pytest

import mikro
from tests.fixtures_servers import MikroServer, unique

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.single_backend(
        reason="under test is how server processes share events, ports and keys; the client's watches "
        "are the same code on both backends and run on both in tests/subscriptions"
    ),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def two_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MikroServer, MikroServer]]:
    """Two `mikro serve` processes on one database and one store (SQLite: the same data dir, as
    `--workers` has it; PostgreSQL: their own data dirs, as on two hosts, one object store)."""
    settings: dict[str, Any] = {}
    first_dir = tmp_path_factory.mktemp("scale-a")
    second_dir = first_dir
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("postgres_cluster").create_database()
        second_dir = tmp_path_factory.mktemp("scale-b")
        # One object store for both "hosts": the second keeps its objects where the first does.
        (second_dir / "objects").symlink_to(first_dir / "objects", target_is_directory=True)
        (first_dir / "objects").mkdir()
    first = MikroServer(first_dir, settings).start()
    second = MikroServer(second_dir, {**settings, "admin_token": first.admin_token})
    second._log_dir = second_dir.with_name(second_dir.name + "-logs-b")
    try:
        yield first, second.start()
    finally:
        second.stop()
        first.stop()


async def _collect(events: Any, count: int) -> list[Any]:
    got: list[Any] = []
    with anyio.move_on_after(60):
        async for event in events:
            assert event.kind is not mikro.EventKind.GAP, "a watch lost events"
            got.append(event)
            if len(got) == count:
                return got
    raise AssertionError(f"the watch got {len(got)} of {count} events: {[(e.kind, e.id) for e in got]}")


async def test_watches_see_every_process_s_events_in_order(
    two_servers: tuple[MikroServer, MikroServer],
) -> None:
    a, b = two_servers
    token = a.add_user("watcher")
    async with mikro.connect(a.url, token=token) as on_a, mikro.connect(b.url, token=token) as on_b:
        dataset = await on_a.create_dataset(unique("scale"))
        image = await on_b.create_representation(
            np.zeros((4, 4), np.uint8), name="plate", dims="yx", dataset=dataset
        )
        async with (
            on_a.watch_rois(image, after=0) as on_a_rois,
            on_b.watch_rois(image, after=0) as on_b_rois,
            on_a.watch_representations(dataset=dataset, after=0) as on_a_images,
        ):
            # Once both watches have this one, they are live: what follows is not a replay.
            created = [(await on_a.create_roi(image, "POINT", [[0, 0, 0, 0, 0]], label="sync")).id]
            for events in (on_a_rois, on_b_rois):
                assert [event.id for event in await _collect(events, 1)] == created
            created.clear()

            async def draw(client: Any, n: int) -> None:
                for i in range(n):
                    roi = await client.create_roi(image, "POINT", [[0, 0, 0, i, i]], label=f"p{i}")
                    created.append(roi.id)

            async with anyio.create_task_group() as tg:  # both processes write at once
                tg.start_soon(draw, on_a, 5)
                tg.start_soon(draw, on_b, 5)
            await on_a.delete_roi(created[0])

            for events in (on_a_rois, on_b_rois):
                got = await _collect(events, len(created) + 1)
                cursors = [event.cursor for event in got]
                assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
                assert sorted(event.id for event in got[:-1]) == sorted(created)
                assert {event.kind for event in got[:-1]} == {mikro.EventKind.CREATE}
                assert (got[-1].kind, got[-1].id) == (mikro.EventKind.DELETE, created[0])
            # The image made through B reached the watch on A (replayed from the table).
            (first,) = await _collect(on_a_images, 1)
            assert (first.kind, first.id) == (mikro.EventKind.CREATE, image.id)


async def test_a_watch_resumed_on_the_other_process_misses_nothing(
    two_servers: tuple[MikroServer, MikroServer],
) -> None:
    a, b = two_servers
    token = a.add_user("resumer")
    async with mikro.connect(a.url, token=token) as on_a, mikro.connect(b.url, token=token) as on_b:
        image = await on_a.create_representation(np.zeros((4, 4), np.uint8), name="resume", dims="yx")
        async with on_a.watch_rois(image, after=0) as events:
            await on_b.create_roi(image, "POINT", [[0, 0, 0, 1, 1]])
            (seen,) = await _collect(events, 1)
        made_meanwhile = [(await on_a.create_roi(image, "POINT", [[0, 0, 0, 2, i]])).id for i in range(3)]
        async with on_b.watch_rois(image, after=seen.cursor) as events:
            assert [e.id for e in await _collect(events, 3)] == made_meanwhile


@pytest.fixture(scope="module")
def three_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MikroServer]:
    """`mikro serve --workers 3` on SQLite."""
    server = MikroServer(tmp_path_factory.mktemp("workers"), {"workers": 3}).start()
    try:
        yield server
    finally:
        assert server.stop() == 0  # SIGTERM stops the workers and the parent cleanly


async def test_workers_share_the_port_events_and_idempotency_keys(three_workers: MikroServer) -> None:
    server = three_workers
    token = server.add_user("worker-user")
    create = {"query": 'mutation { createSample(input: {name: "once"}) { id } }'}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": unique("key")}
    async with mikro.connect(server.url, token=token) as m:
        image = await m.create_representation(np.zeros((4, 4), np.uint8), name="w", dims="yx")
        async with m.watch_rois(image) as events, httpx.AsyncClient(timeout=60) as http:
            # New connections land on any worker: each request opens its own.
            answers: list[Any] = []

            async def post() -> None:
                async with httpx.AsyncClient(timeout=60) as own:
                    answers.append((await own.post(server.url, json=create, headers=headers)).json())

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(post)
            done = [answer for answer in answers if "data" in answer]
            assert done and all(answer == done[0] for answer in done)  # one sample, whoever answered
            samples = await m.list_samples(name_contains="once")
            assert [s.id for s in samples] == [done[0]["data"]["createSample"]["id"]]

            made = []
            for i in range(6):
                async with mikro.connect(server.url, token=token) as fresh:  # a new connection each
                    made.append((await fresh.create_roi(image, "POINT", [[0, 0, 0, 0, i]])).id)
            assert [e.id for e in await _collect(events, 6)] == made
            assert (await http.post(server.url, json=create, headers=headers)).json() == done[0]
