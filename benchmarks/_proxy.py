"""A loopback TCP proxy that counts the bytes it forwards: "bytes fetched" measured at the wire."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

__all__ = ["ByteCountingProxy", "counting_proxy"]


class ByteCountingProxy:
    """Forwards 127.0.0.1:port → target; `downstream` counts bytes sent back to clients (responses)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self.downstream = 0
        self.upstream = 0
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="bench-proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.downstream = 0
            self.upstream = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                for src, dst, down in ((server, client, True), (client, server, False)):
                    t = threading.Thread(target=self._pump, args=(src, dst, down), daemon=True)
                    self._threads.append(t)
                    t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 18)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    if down:
                        self.downstream += len(data)
                    else:
                        self.upstream += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._sockets)
        # shutdown() wakes a thread blocked in accept(); close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._acceptor.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)


@contextlib.contextmanager
def counting_proxy(endpoint: str) -> Iterator[ByteCountingProxy]:
    host, port = endpoint.removeprefix("http://").split(":")
    proxy = ByteCountingProxy(host, int(port))
    try:
        yield proxy
    finally:
        proxy.close()
