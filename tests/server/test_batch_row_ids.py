"""A batch's rows go in with one INSERT per table, their ids matched back by a unique key (a store's key,
an image's store, a thumbnail's image, an event's owner sequence) rather than by the order of
RETURNING: every grant, image, thumbnail and event of a batch still carries its own id, on SQLite and
on PostgreSQL, and the batch's answer shows the thumbnails as a later read does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import aconnect_ws

from tests.server._helpers import Api, array_node, b64, png_bytes, write_zarr_json
from tests.server.test_subscriptions import REP_EVENTS

pytestmark = pytest.mark.anyio

UPLOADS = "mutation($n: Int!) { requestUploads(count: $n) { storeId path } }"
CREATE_MANY = """mutation($inputs: [RepresentationInput!]!) {
  createRepresentations(inputs: $inputs) { id name shape store { id path } thumbnails { ...T } } }
fragment T on Thumbnail { id width height createdAt }"""
THUMBNAILS = """query($id: ID!) { representation(id: $id) { thumbnails { ...T } } }
fragment T on Thumbnail { id width height createdAt }"""
IMAGES = 6


async def test_each_grant_image_and_event_of_a_batch_has_its_own_id(
    server_factory: Any, database_settings: dict[str, Any]
) -> None:
    server = await anyio.to_thread.run_sync(lambda: server_factory.start(**database_settings))
    token = await anyio.to_thread.run_sync(server.add_user, "batcher")
    async with httpx.AsyncClient(timeout=60) as http:
        api = Api(http, server.url, token)
        grants = (await api.data(UPLOADS, {"n": IMAGES}))["requestUploads"]
        assert len({g["storeId"] for g in grants}) == IMAGES

        def write() -> None:
            # Each store gets its own depth: an image read from another grant's store would show it.
            for z, grant in enumerate(grants, start=1):
                root = Path(grant["path"])
                write_zarr_json(root, {"zarr_format": 3, "node_type": "group", "attributes": {}})
                write_zarr_json(root / "0", array_node([z, 8, 8], [1, 8, 8], "uint16", ["z", "y", "x"]))

        await anyio.to_thread.run_sync(write)
        async with aconnect_ws(server.ws_url, http, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send_json({"type": "connection_init", "payload": {"token": token}})
            assert (await ws.receive_json())["type"] == "connection_ack"
            # From cursor 0: a new user's replay holds this batch's events only, however soon they come.
            payload = {"query": REP_EVENTS, "variables": {"after": 0}}
            await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
            inputs: list[dict[str, Any]] = [
                {"store": g["storeId"], "name": f"b{i}"} for i, g in enumerate(grants)
            ]
            for i in range(0, IMAGES, 2):  # every other image brings a thumbnail of its own size
                inputs[i]["thumbnail"] = {"png": b64(png_bytes(4 + i, 3))}
            reps = (await api.data(CREATE_MANY, {"inputs": inputs}))["createRepresentations"]
            with anyio.fail_after(30):
                events = [(await ws.receive_json())["payload"]["data"]["representations"] for _ in reps]
        read = [(await api.data(THUMBNAILS, {"id": r["id"]}))["representation"]["thumbnails"] for r in reps]

    assert [r["name"] for r in reps] == [f"b{i}" for i in range(IMAGES)]
    assert [r["store"] for r in reps] == [{"id": g["storeId"], "path": g["path"]} for g in grants]
    assert [r["shape"] for r in reps] == [[z, 8, 8] for z in range(1, IMAGES + 1)]
    assert [[(th["width"], th["height"]) for th in r["thumbnails"]] for r in reps] == [
        [(4 + i, 3)] if i % 2 == 0 else [] for i in range(IMAGES)
    ]
    assert [r["thumbnails"] for r in reps] == read
    assert [(e["kind"], e["representation"]["id"]) for e in events] == [("CREATE", r["id"]) for r in reps]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(set(cursors))
