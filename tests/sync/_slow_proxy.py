"""A tiny HTTP proxy on loopback in front of the reference server that can hold requests (a slow server).

Not a stand-in for mikro's server: every request is forwarded to the real one. While ``hold`` is set, a
request is parked until ``release`` is set, which makes any call through it as slow as the test needs.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_HEADERS = {"host", "connection", "content-length"}


class SlowProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.answered_while_held = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                held = proxy.hold.is_set()
                if held:
                    proxy.arrived.set()
                    proxy.release.wait(60)
                request = urllib.request.Request(
                    proxy.upstream,
                    data=body,
                    method="POST",
                    headers={k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload = response.status, response.read()
                        ctype = response.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
                if held:
                    proxy.answered_while_held += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype or "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up on this request (it was cancelled)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/graphql"

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
