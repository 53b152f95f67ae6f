"""Subscriptions over websockets (graphql-transport-ws): live events, replay with ``after``, filters,
auth, and one test driven by the independent ``gql`` client library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws

from tests.server._helpers import Api, make_representation

pytestmark = pytest.mark.anyio

REP_EVENTS = """subscription($d: ID, $after: Int) { representations(dataset: $d, after: $after) {
    cursor kind id representation { id name } } }"""
ROI_EVENTS = """subscription($r: ID!, $after: Int) { rois(representation: $r, after: $after) {
    cursor kind id roi { id label } } }"""


class Subscriber:
    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self.ws = ws
        self._next_id = 0

    async def subscribe(self, query: str, variables: dict[str, Any]) -> str:
        self._next_id += 1
        op = str(self._next_id)
        payload = {"query": query, "variables": variables}
        await self.ws.send_json({"id": op, "type": "subscribe", "payload": payload})
        return op

    async def next(self, timeout: float = 20) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while True:
                message = await self.ws.receive_json()
                if message["type"] == "ping":
                    await self.ws.send_json({"type": "pong"})
                    continue
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                return dict(message["payload"]["data"])


@asynccontextmanager
async def connect(url: str, init: dict[str, Any]) -> AsyncIterator[Subscriber]:
    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(url, client, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send_json({"type": "connection_init", "payload": init})
        with anyio.fail_after(20):
            assert (await ws.receive_json())["type"] == "connection_ack"
        yield Subscriber(ws)


async def test_representation_events(mikro_server: Any, new_api: Any) -> None:
    alice, bob = new_api("alice"), new_api("bob")
    async with connect(mikro_server.ws_url, {"token": alice.token}) as sub:
        # after: 0 replays this fresh user's (empty) history first, so no event can slip past
        # between subscribing and the first mutation.
        await sub.subscribe(REP_EVENTS, {"after": 0})
        await make_representation(bob, "bob's")  # another user's event never reaches alice
        rep = await make_representation(alice, "first")
        created = (await sub.next())["representations"]
        assert created["kind"] == "CREATE"
        assert created["representation"] == {"id": rep["id"], "name": "first"}

        await alice.data(
            'mutation($id: ID!) { updateRepresentation(id: $id, input: {name: "renamed"}) { id } }',
            {"id": rep["id"]},
        )
        updated = (await sub.next())["representations"]
        assert updated["kind"] == "UPDATE" and updated["representation"]["name"] == "renamed"
        assert updated["cursor"] > created["cursor"]

        await alice.data("mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep["id"]})
        deleted = (await sub.next())["representations"]
        assert deleted == {
            "cursor": deleted["cursor"],
            "kind": "DELETE",
            "id": rep["id"],
            "representation": None,
        }


async def test_replay_after_a_cursor_then_live(mikro_server: Any, api: Api) -> None:
    reps = [await make_representation(api, f"r{i}") for i in range(3)]
    async with connect(mikro_server.ws_url, {"Authorization": f"Bearer {api.token}"}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": 0})
        history = [(await sub.next())["representations"] for _ in reps]
    assert [e["representation"]["name"] for e in history] == ["r0", "r1", "r2"]
    cursors = [e["cursor"] for e in history]
    assert cursors == sorted(cursors)

    async with connect(mikro_server.ws_url, {"token": api.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": cursors[0]})
        replayed = [(await sub.next())["representations"] for _ in range(2)]
        assert [e["cursor"] for e in replayed] == cursors[1:]
        live = await make_representation(api, "live")
        event = (await sub.next())["representations"]
        assert event["representation"] == {"id": live["id"], "name": "live"}
        assert event["cursor"] > cursors[-1]


async def test_dataset_filter(mikro_server: Any, api: Api) -> None:
    create = "mutation($n: String!) { createDataset(input: {name: $n}) { id } }"
    d1 = (await api.data(create, {"n": "d1"}))["createDataset"]["id"]
    d2 = (await api.data(create, {"n": "d2"}))["createDataset"]["id"]
    async with connect(mikro_server.ws_url, {"token": api.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"d": d1, "after": 0})
        await make_representation(api, "elsewhere", dataset=d2)
        await make_representation(api, "here", dataset=d1)
        assert (await sub.next())["representations"]["representation"]["name"] == "here"


async def test_roi_events(mikro_server: Any, api: Api) -> None:
    rep = await make_representation(api)
    other = await make_representation(api, "other")
    create = (
        "mutation($r: ID!, $l: String) { createRoi(input: {representation: $r, kind: POINT, label: $l, "
        "vectors: [[0,0,0,1,1]]}) { id } }"
    )
    async with connect(mikro_server.ws_url, {"token": api.token}) as sub:
        await sub.subscribe(ROI_EVENTS, {"r": rep["id"], "after": 0})
        await api.data(create, {"r": other["id"], "l": "not this one"})
        roi = (await api.data(create, {"r": rep["id"], "l": "this one"}))["createRoi"]
        created = (await sub.next())["rois"]
        assert created["kind"] == "CREATE" and created["roi"] == {"id": roi["id"], "label": "this one"}
        await api.data("mutation($id: ID!) { deleteRoi(id: $id) }", {"id": roi["id"]})
        deleted = (await sub.next())["rois"]
        assert deleted["kind"] == "DELETE" and deleted["id"] == roi["id"] and deleted["roi"] is None


@pytest.mark.parametrize("init", [{"token": "wrong"}, {}, {"Authorization": "Bearer wrong"}])
async def test_bad_token_closes_with_4403(mikro_server: Any, init: dict[str, Any]) -> None:
    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(mikro_server.ws_url, client, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": init})
        with anyio.fail_after(20), pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert closed.value.code == 4403


async def test_subscribing_to_another_users_image_is_forbidden(mikro_server: Any, new_api: Any) -> None:
    alice, bob = new_api("alice"), new_api("bob")
    rep = await make_representation(alice)
    async with connect(mikro_server.ws_url, {"token": bob.token}) as sub:
        await sub.subscribe(ROI_EVENTS, {"r": rep["id"]})
        with anyio.fail_after(20):
            message = await sub.ws.receive_json()
    # graphql-transport-ws reports a failing subscription either as `error` or as one `next` with errors.
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "NOT_FOUND", message


@pytest.mark.single_backend(reason="gql's websockets transport runs on asyncio only")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_gql_library_subscription(mikro_server: Any, api: Api) -> None:
    from gql import Client, GraphQLRequest
    from gql.transport.websockets import WebsocketsTransport

    first = await make_representation(api, "before")
    transport = WebsocketsTransport(
        url=mikro_server.ws_url,
        init_payload={"token": api.token},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    request = GraphQLRequest(REP_EVENTS, variable_values={"after": 0})
    names = []
    async with Client(transport=transport) as session:
        with anyio.fail_after(30):
            async for event in session.subscribe(request):
                names.append(event["representations"]["representation"]["name"])
                if len(names) == 1:
                    assert event["representations"]["representation"]["id"] == first["id"]
                    await make_representation(api, "while subscribed")
                else:
                    break
    assert names == ["before", "while subscribed"]


def test_slow_subscriber_loses_nothing(server_factory: Any) -> None:
    """A subscriber that falls behind the live stream (here: a buffer of one event, and one mutation
    that publishes a burst of events) is cut off and catches up from the event table: every event
    arrives exactly once, in order. (Sync: this checks the server, not the client's event loop.)"""
    from httpx_ws import connect_ws

    server = server_factory.start(pubsub_buffer=1)
    token = server.add_user("slow")
    rep = anyio.run(_representation, server.url, token)
    query = "subscription($r: ID!) { rois(representation: $r, after: 0) { cursor kind id } }"
    create = (
        "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, "
        "vectors: [[0,0,0,1,1]]}) { id } }"
    )
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:

        def post(q: str) -> dict[str, Any]:
            body = http.post(server.url, json={"query": q, "variables": {"r": rep}}).json()
            assert not body.get("errors"), body
            return dict(body["data"])

        with connect_ws(server.ws_url, http, subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"token": token}})
            assert ws.receive_json(timeout=30)["type"] == "connection_ack"
            ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"r": rep}}}
            )
            rois = [post(create)["createRoi"]["id"] for _ in range(5)]
            # Deleting the image deletes its ROIs in one transaction: five events published at once.
            post("mutation($r: ID!) { deleteRepresentation(id: $r) }")
            events = [ws.receive_json(timeout=30)["payload"]["data"]["rois"] for _ in range(10)]
    assert [(e["kind"], e["id"]) for e in events] == [("CREATE", r) for r in rois] + [
        ("DELETE", r) for r in rois
    ]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(set(cursors))
    assert "subscriber fell behind; catching up from the event table" in server.stderr()


async def _representation(url: str, token: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return str((await make_representation(Api(http, url, token)))["id"])


def test_lagging_live_subscriber_gets_no_history(server_factory: Any) -> None:
    """A subscriber without `after` that is cut off before any event matched it resumes from where it
    joined: it never receives events from before it subscribed."""
    import time

    from httpx_ws import connect_ws

    server = server_factory.start(pubsub_buffer=1)
    token = server.add_user("live")
    watched = anyio.run(_representation, server.url, token)
    query = "subscription($r: ID!) { rois(representation: $r) { cursor kind id } }"
    create = (
        "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, "
        "vectors: [[0,0,0,1,1]]}) { id } }"
    )
    lagged = "subscriber fell behind; catching up from the event table"
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:

        def post(q: str, rep: str) -> dict[str, Any]:
            body = http.post(server.url, json={"query": q, "variables": {"r": rep}}).json()
            assert not body.get("errors"), body
            return dict(body["data"])

        history = [post(create, watched)["createRoi"]["id"] for _ in range(3)]
        with connect_ws(server.ws_url, http, subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"token": token}})
            assert ws.receive_json(timeout=30)["type"] == "connection_ack"
            ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"r": watched}}}
            )
            # The protocol does not acknowledge a subscribe, so repeat the burst until the server says the
            # subscriber lagged: deleting another image publishes its three ROI events at once, none for
            # the watched image, so the subscriber overflows its one-event buffer before anything matched.
            deadline = time.monotonic() + 60
            while lagged not in server.stderr():
                assert time.monotonic() < deadline, "the subscriber never lagged"
                other = anyio.run(_representation, server.url, token)
                for _ in range(3):
                    post(create, other)
                post("mutation($r: ID!) { deleteRepresentation(id: $r) }", other)
            fresh = [post(create, watched)["createRoi"]["id"] for _ in range(2)]
            events = [ws.receive_json(timeout=30)["payload"]["data"]["rois"] for _ in fresh]
    assert [(e["kind"], e["id"]) for e in events] == [("CREATE", r) for r in fresh]
    assert not set(history) & {e["id"] for e in events}
    assert "subscriber fell behind; catching up from the event table" in server.stderr()


async def test_cursors_say_nothing_about_other_users(mikro_server: Any, new_api: Any) -> None:
    """A user's cursors count their own events only: another user's mutations between two of theirs do
    not move them, live or in a replay, and a replay after any of them is complete."""
    alice, bob = new_api("alice"), new_api("bob")
    mine = [await make_representation(alice, "a0")]
    async with connect(mikro_server.ws_url, {"token": alice.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": 0})
        first = (await sub.next())["representations"]
        for n in range(3):
            await make_representation(bob, f"b{n}")
        mine.append(await make_representation(alice, "a1"))
        second = (await sub.next())["representations"]
    assert (first["cursor"], second["cursor"]) == (1, 2)
    for n in range(3):
        await make_representation(bob, f"b{n + 3}")
    mine.append(await make_representation(alice, "a2"))

    async with connect(mikro_server.ws_url, {"token": alice.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": 0})
        replayed = [(await sub.next())["representations"] for _ in mine]
        await sub.subscribe(REP_EVENTS, {"after": 1})
        resumed = [(await sub.next())["representations"] for _ in mine[1:]]
    assert [(e["cursor"], e["representation"]["id"]) for e in replayed] == [
        (n + 1, rep["id"]) for n, rep in enumerate(mine)
    ]
    assert resumed == replayed[1:]


async def test_an_admin_sees_every_event_in_one_order(mikro_server: Any, new_api: Any) -> None:
    admin, carol = new_api("root", admin=True), new_api("carol")
    async with connect(mikro_server.ws_url, {"token": admin.token}) as sub:
        await sub.subscribe(REP_EVENTS, {})
        await make_representation(carol, "c0")
        await make_representation(admin, "admin's")
        await make_representation(carol, "c1")
        events = [(await sub.next())["representations"] for _ in range(3)]
    assert [e["representation"]["name"] for e in events] == ["c0", "admin's", "c1"]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(set(cursors))


async def test_a_cursor_never_handed_out_replays_after_a_gap(mikro_server: Any, new_api: Any) -> None:
    """A cursor ahead of the user's events (one kept from before an upgrade to per-user cursors) is
    answered with a GAP at the user's newest cursor, then their events: nothing new is skipped."""
    dave = new_api("dave")
    await make_representation(dave, "d0")
    async with connect(mikro_server.ws_url, {"token": dave.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": 1000})
        gap = (await sub.next())["representations"]
        new = await make_representation(dave, "d1")
        event = (await sub.next())["representations"]
    assert (gap["kind"], gap["cursor"]) == ("GAP", 1)
    assert (event["cursor"], event["representation"]["id"]) == (2, new["id"])
