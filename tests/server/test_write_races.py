"""Writes that race a delete of what they refer to: ROIs created on an image while it is deleted. Each
creation either lands before the delete (and goes with it) or is told NOT_FOUND; never an internal
error, on SQLite and on PostgreSQL (where, before events were written last, a creation and a delete
could deadlock on the event-order lock, and a ROI could be inserted for an image deleted after it was
read, and a delete waited for as long as creations kept coming: 15 s under four writers in a loop)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from tests.server._helpers import Api, make_representation

pytestmark = pytest.mark.anyio

IMAGES = 6
WRITERS = 4
ROI = (
    "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, vectors: [[0,0,0,1,1]]}) { id } }"
)
DELETE = "mutation($id: ID!) { deleteRepresentation(id: $id) }"
ROIS = "query { rois { id } }"


async def test_rois_created_while_their_image_is_deleted(
    server_factory: Any, database_settings: dict[str, Any]
) -> None:
    server = await anyio.to_thread.run_sync(lambda: server_factory.start(**database_settings))
    token = await anyio.to_thread.run_sync(server.add_user, "racer")
    async with httpx.AsyncClient(timeout=20) as http:
        api = Api(http, server.url, token)
        codes: list[str] = []
        created = 0
        for i in range(IMAGES):
            rep = (await make_representation(api, f"r{i}"))["id"]

            async def writer(rep: str) -> None:
                nonlocal created
                while True:
                    body = (await api.post(ROI, {"r": rep})).json()
                    if body.get("errors"):
                        codes.extend(error["extensions"]["code"] for error in body["errors"])
                        return
                    created += 1

            async def deleter(rep: str, delay: float) -> None:
                await anyio.sleep(delay)
                await api.data(DELETE, {"id": rep})

            async with anyio.create_task_group() as tg:
                for _ in range(WRITERS):
                    tg.start_soon(writer, rep)
                tg.start_soon(deleter, rep, 0.02 * i)

        assert codes == ["NOT_FOUND"] * (IMAGES * WRITERS)
        assert created > 0  # creations did race the deletes
        # The ROIs that landed went with their images.
        assert (await api.data(ROIS))["rois"] == []
    assert await anyio.to_thread.run_sync(server.stop) == 0
