"""An open websocket keeps no more rights than its token: once the token is rotated the socket is
closed with 4403, and it cannot start a subscription that replays history."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from httpx_ws import WebSocketDisconnect

from mikro.server import Settings, rotate_token
from tests.server._helpers import Api, make_representation
from tests.server.test_subscriptions import REP_EVENTS, connect

pytestmark = pytest.mark.anyio


async def _rotate(mikro_server: Any, api: Api) -> None:
    name = (await api.data("{ me { username } }"))["me"]["username"]
    settings = Settings(data_dir=mikro_server.data_dir)
    await anyio.to_thread.run_sync(rotate_token, settings, name)


async def test_a_rotated_token_closes_its_websocket(mikro_server: Any, new_api: Any) -> None:
    alice = new_api("ws-rotated")
    await make_representation(alice, "before")
    async with connect(mikro_server.ws_url, {"token": alice.token}) as sub:
        await sub.subscribe(REP_EVENTS, {"after": 0})
        assert (await sub.next())["representations"]["kind"] == "CREATE"
        await _rotate(mikro_server, alice)
        with pytest.raises(WebSocketDisconnect) as closed:
            with anyio.fail_after(30):
                while True:
                    message = await sub.ws.receive_json()
                    assert message["type"] in ("ping", "pong"), message
        assert closed.value.code == 4403


async def test_no_replay_after_rotation(mikro_server: Any, new_api: Any) -> None:
    alice = new_api("ws-replay")
    await make_representation(alice, "history")
    async with connect(mikro_server.ws_url, {"token": alice.token}) as sub:
        await _rotate(mikro_server, alice)
        # Whether the watcher has closed the socket yet or not, the replay must not be served.
        try:
            await sub.subscribe(REP_EVENTS, {"after": 0})
            with anyio.fail_after(30):
                message = await sub.ws.receive_json()
            assert message["type"] == "error" or "errors" in message.get("payload", {}), message
            assert "representations" not in str(message.get("payload", {}).get("data") or "")
        except WebSocketDisconnect as closed:
            assert closed.code == 4403
