"""A tiny HTTP server on loopback whose answers a test scripts: fixed replies, stalls, or forwarding
to an upstream (the real mikro server) — the stand-in for a flaky proxy in front of the server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Forward:
    """Send the request upstream; with ``then_status`` drop the upstream answer and reply that status."""

    then_status: int | None = None
    #: After answering, close the connection without a ``Connection: close``, as a server does when an
    #: idle keep-alive connection times out (``dropped`` is set once its FIN is sent).
    then_close: bool = False


@dataclass
class Stall:
    """Hold the request until the test ends (or ``release`` is set), then close without answering."""

    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Seen:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    peer: tuple[str, int]  # the client's end of the connection the request came on


class ScriptedServer:
    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.script: deque[Reply | Forward | Stall] = deque()
        self.seen: list[Seen] = []
        self.stalls: list[Stall] = []
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._upstream_client = httpx.Client(timeout=30)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.seen.append(
                        Seen(time.monotonic(), headers, json.loads(raw or b"{}"), self.client_address)
                    )
                    action = server.script.popleft() if server.script else None
                if action is None:
                    action = Forward() if server.upstream else Reply(200, {"data": {"ok": True}})
                if isinstance(action, Stall):
                    server.stalls.append(action)
                    action.release.wait(60)
                    self.close_connection = True
                    return
                then_close = isinstance(action, Forward) and action.then_close
                if isinstance(action, Forward):
                    assert server.upstream is not None
                    fwd = {
                        k: v
                        for k, v in headers.items()
                        if k in ("authorization", "idempotency-key", "content-type")
                    }
                    upstream = server._upstream_client.post(server.upstream, content=raw, headers=fwd)
                    if action.then_status is not None:
                        action = Reply(action.then_status, "upstream answer lost")
                    else:
                        action = Reply(
                            upstream.status_code, upstream.content, {"content-type": "application/json"}
                        )
                body = action.body
                if isinstance(body, dict):
                    data = json.dumps(body).encode()
                    content_type = "application/json"
                elif isinstance(body, str):
                    data, content_type = body.encode(), "text/plain"
                else:
                    data, content_type = (body or b""), "application/octet-stream"
                self.send_response(action.status)
                merged = {"content-type": content_type, **action.headers}
                for key, value in merged.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if then_close:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_WR)
                    self.close_connection = True
                    server.dropped.set()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="scripted-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        for stall in self.stalls:
            stall.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)
        self._upstream_client.close()
