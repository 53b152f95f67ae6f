"""The network layer under mikro's async HTTP client: httpcore streams that keep their socket.

httpcore's pool asks every idle connection whether its server has closed it each time a request
starts or ends (``has_expired``: is the idle socket readable?). Its anyio stream finds the socket
through anyio's typed attributes, which build the stream's whole attribute table on every lookup,
``getpeername`` system call included: 30 % of the client's CPU per ``get_representation`` with 32
requests in flight (issue 17). These streams look the socket up once, when the connection is made,
and answer the same question with httpcore's own check (one ``poll`` of it).
"""

# ASYNC109: the timeout parameters are httpcore's interface, which these classes implement.
# ruff: noqa: ASYNC109

from __future__ import annotations

import socket
import ssl
import typing
import urllib.request
from collections.abc import Iterable

import httpcore
import httpx
import sniffio
from httpcore._utils import is_socket_readable  # a poll of the fd, as httpcore's own streams answer

__all__ = ["SocketKeepingBackend", "async_http_transport"]


class _SocketKeepingStream(httpcore.AsyncNetworkStream):
    """httpcore's own stream for asyncio or trio, with its socket looked up once."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        # The same object for the connection's whole life: a TLS stream wraps it, never replaces it.
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _SocketKeepingStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return is_socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class SocketKeepingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's backend of the running loop (anyio's on asyncio, trio's on trio), its streams kept."""

    def __init__(self) -> None:
        self._backends: dict[str, httpcore.AsyncNetworkBackend] = {}

    def _backend(self) -> httpcore.AsyncNetworkBackend:
        library = sniffio.current_async_library()
        backend = self._backends.get(library)
        if backend is None:
            backend = httpcore.TrioBackend() if library == "trio" else httpcore.AnyIOBackend()
            self._backends[library] = backend
        return backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend().connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _SocketKeepingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend().connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _SocketKeepingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend().sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request and response conversion, its error mapping) over a pool of
    httpcore's built with :class:`SocketKeepingBackend`: httpx does not take a network backend."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=SocketKeepingBackend(),
        )


class _CountedStream(httpx.AsyncByteStream):
    """A response's body that tells its pool's tally when the response is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, done: typing.Callable[[], None]) -> None:
        self._stream = stream
        self._done: typing.Callable[[], None] | None = done

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


class _Pools(httpx.AsyncBaseTransport):
    """Several small pools instead of one, each request to the pool with the most free connections.

    httpcore's pool re-checks every connection it holds (closed? expired? idle?) each time a request
    starts or ends, so its cost per request grows with its size: with 20 connections and 32 requests in
    flight that was a third of the client's CPU per ``get_representation``, with 4 a twentieth (issue 17).
    The limits hold as before: the pools' sizes add up to ``max_connections``; a session's transport
    never has more requests in flight than that, so the chosen pool always has a free connection.
    """

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits, total: int) -> None:
        count = -(-total // _POOL_SIZE)
        self._sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
        self._pools = [
            _Transport(
                verify=verify,
                limits=httpx.Limits(
                    max_connections=size,
                    max_keepalive_connections=min(size, limits.max_keepalive_connections or size),
                    keepalive_expiry=limits.keepalive_expiry,
                ),
            )
            for size in self._sizes
        ]
        self._busy = [0] * count

    def _free(self, i: int) -> int:
        return self._sizes[i] - self._busy[i]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = max(range(len(self._pools)), key=self._free)
        self._busy[i] += 1

        def done() -> None:
            self._busy[i] -= 1

        try:
            response = await self._pools[i].handle_async_request(request)
        except BaseException:
            done()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(response.stream, done)
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


#: Connections per httpcore pool (see _Pools).
_POOL_SIZE = 4


def _environment_proxies() -> bool:
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def async_http_transport(*, verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """The transport for an ``httpx.AsyncClient`` with these settings, or ``None`` for httpx's own.

    ``None`` when the environment names an HTTP proxy: httpx routes through those only when the client
    is given no transport, and a proxied request's pool is httpx's to build.
    """
    if _environment_proxies():
        return None
    total = limits.max_connections
    if total is None or total <= _POOL_SIZE:
        return _Transport(verify=verify, limits=limits)
    return _Pools(verify=verify, limits=limits, total=total)
