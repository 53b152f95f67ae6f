"""A scripted graphql-transport-ws peer for the protocol's edge cases (not mikro's server).

The reference server never closes with 4409, never ignores a ping and never sends garbage; this small
raw-ASGI app does, on demand, over a real socket (uvicorn on loopback, in a thread). The path picks the
behaviour: ``/<tag>/<mode>[/<arg>]``; ``tag`` keeps each test's statistics apart.

Events have the shape of mikro's: ``{"cursor": n, "kind": ..., "id": ...}`` under the field ``ticks``;
the log holds cursors 1..10 and a ``subscribe`` replays those after its ``after`` variable.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import uvicorn

FIELD = "ticks"
DOCUMENT = "subscription Ticks($after: Int) { ticks(after: $after) { cursor kind id } }"
LOG = [{"cursor": n, "kind": "CREATE", "id": str(n)} for n in range(1, 11)]

Receive = Any
Send = Any


@dataclass
class Stats:
    """What the peer saw for one tag."""

    connections: int = 0
    inits: list[Any] = field(default_factory=list)
    subscribes: list[dict[str, Any]] = field(default_factory=list)
    completes: list[str] = field(default_factory=list)
    pongs: int = 0
    client_close_codes: list[int] = field(default_factory=list)


class _Disconnected(Exception):
    pass


class ScriptedApp:
    def __init__(self) -> None:
        self.stats: dict[str, Stats] = defaultdict(Stats)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not here"})
            return
        if scope["type"] != "websocket":
            return
        parts = scope["path"].strip("/").split("/")
        tag, mode, arg = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
        stats = self.stats[tag]
        await receive()  # websocket.connect
        if mode == "refuse":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        if "graphql-transport-ws" not in scope.get("subprotocols", []):
            await send({"type": "websocket.close", "code": 1002})
            return
        stats.connections += 1
        await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
        peer = _Peer(receive, send, stats)
        with contextlib.suppress(_Disconnected):
            await peer.run(mode, arg)


class _Peer:
    def __init__(self, receive: Receive, send: Send, stats: Stats) -> None:
        self._receive = receive
        self._send = send
        self.stats = stats

    async def recv(self) -> dict[str, Any]:
        event = await self._receive()
        if event["type"] == "websocket.disconnect":
            self.stats.client_close_codes.append(event.get("code", 1000))
            raise _Disconnected
        message: dict[str, Any] = json.loads(event.get("text") or event.get("bytes") or "null")
        if message.get("type") == "subscribe":
            self.stats.subscribes.append(message)
        elif message.get("type") == "complete":
            self.stats.completes.append(message["id"])
        elif message.get("type") == "pong":
            self.stats.pongs += 1
        return message

    async def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int) -> None:
        await self._send({"type": "websocket.close", "code": code})

    async def next(self, op_id: str, event: dict[str, Any]) -> None:
        await self.send({"id": op_id, "type": "next", "payload": {"data": {FIELD: event}}})

    async def run(self, mode: str, arg: str) -> None:
        init = await self.recv()
        self.stats.inits.append(init.get("payload"))
        if mode == "close":
            await self.close(int(arg))
            return
        if mode == "noack":
            while True:
                await self.recv()
        await self.send({"type": "connection_ack"})
        sent_on_this_socket = 0
        while True:
            message = await self.recv()
            kind = message.get("type")
            if kind == "ping" and mode != "nopong":
                await self.send({"type": "pong"})
            if kind != "subscribe":
                continue
            op_id = message["id"]
            after = (message["payload"].get("variables") or {}).get("after") or 0
            if mode == "error":
                error = {"message": "no such dataset", "extensions": {"code": "NOT_FOUND"}}
                await self.send({"id": op_id, "type": "error", "payload": [error]})
            elif mode == "garbage":
                await self.send("this is not json")
            elif mode == "complete":
                for event in LOG[:2]:
                    await self.next(op_id, event)
                await self.send({"id": op_id, "type": "complete"})
            elif mode == "pinger":
                # The event comes only once the client has answered the server's ping.
                await self.send({"type": "ping"})
                while (await self.recv()).get("type") != "pong":
                    pass
                await self.next(op_id, {"cursor": 1, "kind": f"PONGS_{self.stats.pongs}", "id": None})
            elif mode == "token":
                await self.next(
                    op_id, {"cursor": 1, "kind": "CREATE", "id": json.dumps(self.stats.inits[-1])}
                )
            elif mode == "big":
                await self.next(op_id, {"cursor": 1, "kind": "CREATE", "id": "x" * int(arg)})
            elif mode == "dropfirst" and self.stats.connections == 1:
                # The first socket dies before the subscription saw any event.
                await self.close(1011)
                return
            elif mode in ("replay", "flaky", "dropfirst"):
                for event in LOG:
                    if event["cursor"] <= after:
                        continue
                    if mode == "flaky" and sent_on_this_socket == int(arg):
                        # The socket dies mid-stream (1011: internal error, a transient close).
                        await self.close(1011)
                        return
                    await self.next(op_id, event)
                    sent_on_this_socket += 1
            # "nopong": subscriptions are accepted and stay silent.


@dataclass
class ScriptedServer:
    base_url: str
    app: ScriptedApp

    def url(self, tag: str, mode: str, arg: object = "") -> str:
        return f"{self.base_url}/{tag}/{mode}/{arg}".rstrip("/")

    def stats(self, tag: str) -> Stats:
        return self.app.stats[tag]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a thread, stopped by ``stop()``."""

    def __init__(self, app: ScriptedApp, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="wsproto"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="scripted-ws-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the scripted websocket server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
