"""The same server on PostgreSQL (asyncpg) instead of SQLite."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import aconnect_ws

from tests.server._helpers import Api, b64, make_representation, png_bytes
from tests.server.test_subscriptions import REP_EVENTS


def test_server_on_postgresql(server_factory: Any, postgres_url: str) -> None:
    # Sync test driving one async scenario: it checks the database backend, not the client's event
    # loop, and one server start is enough.
    server = server_factory.start(database_url=postgres_url)
    token = server.add_user("pat")

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            api = Api(http, server.url, token)
            sample = await api.data(
                'mutation { createSample(input: {name: "Kidney", tags: ["a", "b"]}) { id } }'
            )
            found = await api.data('{ samples(filter: {search: "kid", tags: ["b", "a"]}) { id tags } }')
            assert found["samples"] == [{"id": sample["createSample"]["id"], "tags": ["a", "b"]}]

            async with aconnect_ws(server.ws_url, http, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send_json({"type": "connection_init", "payload": {"token": token}})
                assert (await ws.receive_json())["type"] == "connection_ack"
                payload = {"query": REP_EVENTS, "variables": {"after": 0}}
                await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
                rep = await make_representation(
                    api, "pg image", channels=[{"name": "GFP"}], physicalSize={"x": 0.5}
                )
                with anyio.fail_after(30):
                    event = (await ws.receive_json())["payload"]["data"]["representations"]
                assert event["kind"] == "CREATE" and event["representation"]["id"] == rep["id"]

            metric = await api.data(
                'mutation($r: ID!) { createMetric(input: {representation: $r, key: "k", value: {a: [1, 2]}}) '
                "{ value representation { channels { name } physicalSize { x } } } }",
                {"r": rep["id"]},
            )
            assert metric["createMetric"] == {
                "value": {"a": [1, 2]},
                "representation": {"channels": [{"name": "GFP"}], "physicalSize": {"x": 0.5}},
            }
            once = 'mutation { createSample(input: {name: "once"}) { id } }'
            first = await api.post(once, headers={"Idempotency-Key": "pg-key"})
            second = await api.post(once, headers={"Idempotency-Key": "pg-key"})
            assert first.json() == second.json()
            assert len((await api.data('{ samples(filter: {search: "once"}) { id } }'))["samples"]) == 1
            # A thumbnail's PNG (bytea) round-trips, and goes with its image.
            png = png_bytes(12, 7)
            thumb = await api.data(
                "mutation($i: ThumbnailInput!) { createThumbnail(input: $i) { id width height } }",
                {"i": {"representation": rep["id"], "png": b64(png)}},
            )
            thumb_id = thumb["createThumbnail"]["id"]
            assert thumb["createThumbnail"] == {"id": thumb_id, "width": 12, "height": 7}
            listed = await api.data(
                "query($r: ID!) { thumbnails(filter: {representation: $r}) { png } }", {"r": rep["id"]}
            )
            assert listed["thumbnails"] == [{"png": b64(png)}]
            await api.data("mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep["id"]})
            gone = await api.code("query($id: ID!) { representation(id: $id) { id } }", {"id": rep["id"]})
            assert gone == "NOT_FOUND"
            assert (
                await api.code("query($id: ID!) { thumbnail(id: $id) { id } }", {"id": thumb_id})
                == "NOT_FOUND"
            )

    anyio.run(scenario)
    assert server.stop() == 0


def test_a_missing_postgresql_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures_servers import skip_unless_ci

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="a skip is a failure in CI"):
        skip_unless_ci("no PostgreSQL")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_unless_ci("no PostgreSQL")
