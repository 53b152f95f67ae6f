"""``m.watch_representations`` / ``m.watch_rois`` against the real reference server, on both backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest

import mikro
from mikro import EventKind, RepresentationEvent, RoiEvent
from mikro.client._watch import WatchMixin, subscription_document
from mikro.graphql._subscriptions import EventStream, ReconnectPolicy, SubscriptionSettings
from tests.fixtures_servers import MikroServer, ServerFactory
from tests.subscriptions._images import create_image
from tests.subscriptions._sockets import open_connections

pytestmark = pytest.mark.anyio

EVENTS = 20  # replayed events that deletes race with

RECONNECT_FAST = SubscriptionSettings(
    reconnect=ReconnectPolicy(max_attempts=None, max_seconds=90, initial=0.1, maximum=1.0, jitter=0.1)
)


@asynccontextmanager
async def session(server: MikroServer, token: str) -> AsyncIterator[mikro.Mikro]:
    async with mikro.connect(server.url, token=token) as m:
        assert isinstance(m, WatchMixin), "mikro.Mikro must inherit mikro.client._watch.WatchMixin"
        yield m


async def take(events: EventStream[Any], count: int) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(60):
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
    return out


def _dataset_name() -> str:
    return f"watch-{uuid.uuid4().hex[:8]}"


async def test_three_images_in_a_dataset_give_exactly_three_create_events(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        dataset = await m.create_dataset(_dataset_name())
        elsewhere = await m.create_dataset(_dataset_name())
        # after=0 on a fresh dataset: whatever the timing, every event of it arrives, once, in order.
        async with m.watch_representations(dataset=dataset, after=0) as events:
            made = [await create_image(m, f"img-{i}", dataset) for i in range(3)]
            received = await take(events, 3)
            # Exactly those three: an image elsewhere is filtered out, the next one here comes next.
            await create_image(m, "other", elsewhere)
            sentinel = await create_image(m, "sentinel", dataset)
            [after_them] = await take(events, 1)

    assert all(isinstance(e, RepresentationEvent) for e in received)
    assert [e.kind for e in received] == [EventKind.CREATE] * 3
    assert [e.id for e in received] == [r.id for r in made]
    assert [e.representation.name for e in received if e.representation] == ["img-0", "img-1", "img-2"]
    assert received[0].representation is not None and received[0].representation.shape == [2, 4, 4]
    assert received[0].representation.dataset is not None
    assert received[0].representation.dataset.id == dataset.id
    cursors = [e.cursor for e in received]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3
    assert after_them.id == sentinel.id and after_them.cursor > cursors[-1]


async def test_updates_and_deletes_say_so(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        dataset = await m.create_dataset(_dataset_name())
        async with m.watch_representations(dataset=dataset, after=0) as events:
            image = await create_image(m, "before", dataset)
            await m.update_representation(image, name="after")
            await m.delete_representation(image)
            created, updated, deleted = await take(events, 3)
    assert (created.kind, updated.kind, deleted.kind) == (
        EventKind.CREATE,
        EventKind.UPDATE,
        EventKind.DELETE,
    )
    assert updated.representation is not None and updated.representation.name == "after"
    assert deleted.id == image.id and deleted.representation is None


async def test_roi_events_carry_typed_rois(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        image = await create_image(m, "with-rois")
        async with m.watch_rois(representation=image, after=0) as events:
            roi = await m.create_roi(image, kind="RECTANGLE", vectors=[[0, 0, 0, 1, 1], [0, 0, 0, 3, 3]])
            # An event's object is read when the event is delivered: deleted before, it would be None.
            (created,) = await take(events, 1)
            await m.delete_roi(roi)
            (deleted,) = await take(events, 1)
    assert isinstance(created, RoiEvent) and created.kind is EventKind.CREATE
    assert created.roi is not None and created.roi.id == roi.id
    assert created.roi.vectors == [[0, 0, 0, 1, 1], [0, 0, 0, 3, 3]]
    assert created.roi.representation is not None and created.roi.representation.id == image.id
    assert deleted.kind is EventKind.DELETE and deleted.id == roi.id and deleted.roi is None


async def test_two_watches_share_one_websocket_and_leaving_one_keeps_the_other(
    mikro_server: MikroServer,
) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        # Keep-alive pings many times a second: the server's pongs keep the one socket alive.
        m.watch_settings = SubscriptionSettings(ping_interval=0.02, pong_timeout=10)
        dataset = await m.create_dataset(_dataset_name())
        async with m.watch_representations(after=0) as everything:
            async with m.watch_representations(dataset=dataset, after=0) as in_dataset:
                first = await create_image(m, "first", dataset)
                assert [e.id for e in await take(in_dataset, 1)] == [first.id]
                assert [e.id for e in await take(everything, 1)] == [first.id]
            # The dataset watch is gone; the other one keeps receiving on the same socket.
            second = await create_image(m, "second", dataset)
            assert [e.id for e in await take(everything, 1)] == [second.id]
            assert m.subscriptions is not None
            assert m.subscriptions.connections_opened == 1
            assert m.subscriptions.connected
    # Leaving the session closed the websocket (and the HTTP pool) for real.
    assert open_connections(mikro_server.port) == 0


async def test_watches_started_at_once_share_one_websocket_and_end_with_the_session(
    mikro_server: MikroServer,
) -> None:
    token = mikro_server.add_user("watcher")
    seen: list[list[str]] = [[], []]
    entered = [anyio.Event(), anyio.Event()]

    async def watch(index: int, m: mikro.Mikro) -> None:
        async with m.watch_representations(after=0) as events:
            entered[index].set()
            async for event in events:
                seen[index].append(event.id)

    async with anyio.create_task_group() as tg, session(mikro_server, token) as m:
        # Both first watches race to open the session's websocket.
        tg.start_soon(watch, 0, m)
        tg.start_soon(watch, 1, m)
        with anyio.fail_after(60):
            await entered[0].wait()
            await entered[1].wait()
        image = await create_image(m, "one")
        with anyio.fail_after(60):
            while not (seen[0] and seen[1]):
                await anyio.sleep(0.05)
        assert m.subscriptions is not None and m.subscriptions.connections_opened == 1
    # Leaving the session ended both loops without an error, so the task group could exit.
    assert seen == [[image.id], [image.id]]
    with pytest.raises(mikro.NotConnectedError):
        async with m.watch_representations():
            pass


async def test_a_slow_watch_does_not_stall_a_fast_one(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        dataset = await m.create_dataset(_dataset_name())
        async with (
            m.watch_representations(dataset=dataset, after=0, buffer=2) as slow,
            m.watch_representations(dataset=dataset, after=0) as fast,
        ):
            made = [await create_image(m, f"img-{i}", dataset) for i in range(5)]
            # The slow watch is not read until the fast one has everything.
            assert [e.id for e in await take(fast, 5)] == [r.id for r in made]
            assert slow.overflows >= 1
            # Then the slow one still yields every event once, in order (replayed after its pause).
            assert [e.id for e in await take(slow, 5)] == [r.id for r in made]


@pytest.mark.slow
@pytest.mark.timeout(300)  # three server starts; each imports the whole server stack
async def test_server_restarts_mid_stream_lose_nothing(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    token = server.add_user("watcher")
    async with session(server, token) as m:
        m.watch_settings = RECONNECT_FAST
        dataset = await m.create_dataset(_dataset_name())
        async with m.watch_representations(dataset=dataset, after=0) as events:
            before = await create_image(m, "before", dataset)
            assert [e.id for e in await take(events, 1)] == [before.id]
            # SIGKILL (the socket just dies), then SIGTERM (the server closes it on its way out); each
            # time the server comes back on the same data dir and port, and images are made meanwhile.
            for stop in (server.kill, server.stop):
                # In a worker thread: the event loop (and the client reconnecting on it) keeps running.
                await anyio.to_thread.run_sync(stop)
                await anyio.to_thread.run_sync(server.start)
                meanwhile = [await create_image(m, f"meanwhile-{i}", dataset) for i in range(2)]
                received = await take(events, 2)
                assert [e.id for e in received] == [r.id for r in meanwhile]
                assert all(e.kind is EventKind.CREATE for e in received)
        assert m.subscriptions is not None and m.subscriptions.connections_opened >= 3


async def test_a_bad_token_raises_authentication_error(mikro_server: MikroServer) -> None:
    async with session(mikro_server, "not-a-token") as m:
        with pytest.raises(mikro.AuthenticationError):
            async with m.watch_representations():
                pytest.fail("the server accepted a bad token")


async def test_a_watch_on_another_users_dataset_is_refused(mikro_server: MikroServer) -> None:
    owner = mikro_server.add_user("owner")
    intruder = mikro_server.add_user("intruder")
    async with session(mikro_server, owner) as m:
        dataset = await m.create_dataset(_dataset_name())
    async with session(mikro_server, intruder) as m:
        with pytest.raises(mikro.NotFoundError):
            async with m.watch_representations(dataset=dataset, after=0) as events:
                await take(events, 1)


def _gql_events(ws_url: str, token: str, dataset_id: str, count: int) -> list[dict[str, Any]]:
    """The same subscription through the independent ``gql`` client (asyncio, in this worker thread)."""
    from gql import Client, GraphQLRequest
    from gql.transport.websockets import WebsocketsTransport

    async def collect() -> list[dict[str, Any]]:
        transport = WebsocketsTransport(
            url=ws_url, init_payload={"token": token}, subprotocols=["graphql-transport-ws"]
        )
        request = GraphQLRequest(
            subscription_document("WatchRepresentations"),
            variable_values={"dataset": dataset_id, "after": 0},
        )
        out: list[dict[str, Any]] = []
        async with Client(transport=transport) as gql_session:
            async for result in gql_session.subscribe(request):
                out.append(result["representations"])
                if len(out) == count:
                    break
        return out

    return asyncio.run(asyncio.wait_for(collect(), 60))


async def test_an_independent_gql_client_sees_the_same_events(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    theirs: list[dict[str, Any]] = []

    async def gql_watch(dataset_id: str) -> None:
        theirs.extend(await anyio.to_thread.run_sync(_gql_events, mikro_server.ws_url, token, dataset_id, 3))

    async with session(mikro_server, token) as m, anyio.create_task_group() as tg:
        dataset = await m.create_dataset(_dataset_name())
        # Both clients watch at the same time, each on its own websocket.
        tg.start_soon(gql_watch, dataset.id)
        async with m.watch_representations(dataset=dataset, after=0) as events:
            made = [await create_image(m, f"img-{i}", dataset) for i in range(3)]
            ours = await take(events, 3)
    assert [(e["cursor"], e["kind"], e["id"]) for e in theirs] == [
        (e.cursor, e.kind.value, e.id) for e in ours
    ]
    assert [e["id"] for e in theirs] == [r.id for r in made]
    assert [RepresentationEvent.model_validate(e).model_dump() for e in theirs] == [
        e.model_dump() for e in ours
    ]


async def test_events_whose_objects_are_deleted_as_they_are_sent_never_fail(
    mikro_server: MikroServer,
) -> None:
    """An event is checked (its object and every row it cannot be shown without still exist), then its
    fields are resolved one by one: a delete landing in between leaves the event whole or without its
    object, and never fails the watch. Each round replays many events (ROIs of an image; updates of an
    image with an origin and an original file) and deletes what they show while they are resolved."""
    token = mikro_server.add_user("racer")
    async with session(mikro_server, token) as m:
        for n in range(3):
            dataset = await m.create_dataset(_dataset_name())
            original = await m.upload_file(b"raw bytes", name=f"raw-{n}.bin")
            origin = await m.create_representation(np.zeros((4, 4), np.uint8), name=f"o{n}")
            image = await m.create_representation(
                np.ones((4, 4), np.uint8), name=f"i{n}", origins=[origin], original_file=original
            )
            await m.create_metric(image, "area", n)
            rois = [await m.create_roi(image, "POINT", [[0, 0, 0, 1, i]]) for i in range(EVENTS)]
            for i in range(EVENTS):
                await m.update_representation(image, dataset=dataset, tags=[f"t{i}"])

            async with m.watch_rois(image, after=0) as roi_events:
                # The first event says the server has the watch (a watch on a deleted image is refused).
                replayed = await take(roi_events, 1)
                await m.delete_representation(image)
                replayed += await take(roi_events, EVENTS - 1)
            assert [event.id for event in replayed] == [roi.id for roi in rois]
            assert all(e.roi is None or e.roi.representation.id == image.id for e in replayed)

            second = await m.create_representation(
                np.ones((4, 4), np.uint8), name=f"j{n}", origins=[origin], original_file=original
            )
            for i in range(EVENTS):
                await m.update_representation(second, dataset=dataset, tags=[f"t{i}"])
            async with m.watch_representations(dataset=dataset, after=0) as image_events:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(m.delete_representation, origin)
                    tg.start_soon(m.delete_file, original)
                updates = [e for e in await take(image_events, 2 * EVENTS + 1) if e.id == second.id]
            assert [e.kind for e in updates][-EVENTS:] == [EventKind.UPDATE] * EVENTS
            assert all(e.representation is not None and e.representation.store.id for e in updates)


async def test_deleting_a_file_updates_the_images_made_from_it(mikro_server: MikroServer) -> None:
    token = mikro_server.add_user("watcher")
    async with session(mikro_server, token) as m:
        dataset = await m.create_dataset(_dataset_name())
        original = await m.upload_file(b"raw bytes", name="raw.bin")
        async with m.watch_representations(dataset=dataset, after=0) as events:
            image = await m.create_representation(
                np.ones((4, 4), np.uint8), name="made", dataset=dataset, original_file=original
            )
            await m.delete_file(original)
            created, updated = await take(events, 2)
    assert created.representation is not None and created.representation.original_file is not None
    assert created.representation.original_file.id == original.id
    assert updated.kind is EventKind.UPDATE and updated.id == image.id
    assert updated.representation is not None and updated.representation.original_file is None
