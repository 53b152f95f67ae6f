"""Live subscriptions: one graphql-transport-ws websocket per client, shared, and reconnecting.

Many subscriptions share one websocket (multiplexed by operation id). The socket is opened when the
first subscription starts and closed ``idle_timeout`` seconds after the last one ended (or when the
client closes). One reader task owns the socket; each subscription has its own bounded buffer.

Events carry a monotonic ``cursor`` and every subscription document takes an ``after`` argument.
That is what makes the two hard cases lossless:

* **Reconnect.** When the socket drops, the client reconnects with exponential backoff and jitter and
  subscribes every live subscription again with ``after`` = the last cursor it buffered, so the server
  replays what happened meanwhile (or sends a ``GAP`` event if its log no longer reaches back). A
  subscription that had not received any event yet has no cursor to resume from: it gets a ``GAP``
  marker with cursor 0 ("something may have been missed"). The consumer sees no error for a drop;
  after ``ReconnectPolicy`` gives up, every consumer gets a :class:`mikro.ConnectError`.
* **Slow consumers.** The reader never waits for a consumer. When a subscription's buffer is full, the
  client stops that subscription on the server (``complete``) and keeps what is buffered; once the
  consumer has drained half of the buffer it subscribes again with ``after`` = the last buffered cursor
  and the server replays the rest. Nothing is dropped silently and other subscriptions keep flowing.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import anyio
import httpx
import tenacity
import wsproto.utilities
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketUpgradeError,
    aconnect_ws,
)

from mikro._exceptions import (
    AuthenticationError,
    ConnectError,
    HTTPStatusError,
    MikroError,
    NotConnectedError,
    ProtocolError,
    TimeoutError,
)
from mikro.graphql import _ws_protocol as proto
from mikro.graphql._errors import error_from_graphql, error_from_httpx
from mikro.graphql._tls import tls_context

__all__ = ["EventStream", "ReconnectPolicy", "SubscriptionClient", "SubscriptionSettings"]

T = TypeVar("T")
Payload = dict[str, Any]

#: The kind of an event that stands for "events were lost here".
GAP = "GAP"

#: The largest event a subscription accepts: httpx-ws (0.10 on) closes the connection with 1009 on a
#: larger message. It is also the size of each socket read, which costs no memory: a read returns what
#: has arrived.
MAX_EVENT_BYTES = 64 * 2**20


@dataclass(frozen=True, kw_only=True)
class ReconnectPolicy:
    """How long to keep reconnecting a dropped websocket before raising ``ConnectError`` into consumers.

    Waits grow as ``initial * 2**n`` plus up to ``jitter`` seconds, capped at ``maximum``; ``None``
    disables a limit. The count starts again after a connection that delivered events or stayed up
    ``stable_after`` seconds, so a long-lived watch survives any number of separate outages.
    """

    max_attempts: int | None = 10
    max_seconds: float | None = 120.0
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.5
    stable_after: float = 10.0

    def retrying(self) -> tenacity.Retrying:
        """tenacity's stop and wait strategies for these limits (the loop itself is anyio's)."""
        stop: tenacity.stop.stop_base = tenacity.stop_never
        if self.max_attempts is not None:
            stop = tenacity.stop_after_attempt(self.max_attempts)
        if self.max_seconds is not None:
            stop = stop | tenacity.stop_after_delay(self.max_seconds)
        wait = tenacity.wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.jitter)
        return tenacity.Retrying(stop=stop, wait=wait)


@dataclass(frozen=True, kw_only=True)
class SubscriptionSettings:
    """Timeouts and limits of the subscription websocket (seconds, counts)."""

    #: how long the server may take to answer ``connection_init`` with ``connection_ack``
    ack_timeout: float = 10.0
    #: TCP connect and HTTP upgrade timeout
    connect_timeout: float = 10.0
    #: send a protocol ``ping`` this often; ``None`` disables the keep-alive
    ping_interval: float | None = 20.0
    #: a ``pong`` that does not come within this time means the socket is dead (then: reconnect)
    pong_timeout: float = 10.0
    #: close the socket this long after the last subscription ended
    idle_timeout: float = 5.0
    #: events buffered per subscription before it pauses (see the module docstring)
    buffer: int = 256
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)


class _Operation:
    """One subscription as the client tracks it across reconnections and pauses."""

    def __init__(
        self, document: str, variables: Mapping[str, Any], field: str, after: int | None, buffer: int
    ) -> None:
        self.document = document
        self.variables = dict(variables)
        self.field = field
        self.cursor = after
        self.buffer = buffer
        self.op_id: str | None = None
        self.subscribed_before = False
        self.paused = False
        self.overflows = 0
        self.error: BaseException | None = None
        self.send: MemoryObjectSendStream[Payload]
        self.receive: MemoryObjectReceiveStream[Payload]
        self.send, self.receive = anyio.create_memory_object_stream[Payload](buffer)
        # Set once the subscribe message was written to an acknowledged socket, or the operation failed.
        self.ready = anyio.Event()

    def variables_now(self) -> dict[str, Any]:
        return {**self.variables, "after": self.cursor}


@dataclass(frozen=True)
class _End:
    """Why one connection ended: idle (no error), a transient error (reconnect) or a fatal one."""

    error: BaseException | None = None
    fatal: bool = False
    uptime: float = 0.0
    #: whether the connection delivered at least one event (it made progress before it dropped)
    progressed: bool = False


class _SocketEndedError(Exception):
    def __init__(self, end: _End) -> None:
        super().__init__(str(end.error))
        self.end = end


class _Connection:
    """One acknowledged websocket: its outbox (drained by the writer task) and how it ended."""

    def __init__(self, ws: AsyncWebSocketSession, scope: anyio.CancelScope) -> None:
        self.ws = ws
        self.scope = scope
        self.outbox_send: MemoryObjectSendStream[tuple[Payload, _Operation | None]]
        self.outbox_receive: MemoryObjectReceiveStream[tuple[Payload, _Operation | None]]
        # Unbounded: only control messages go here, at most a few per subscription.
        self.outbox_send, self.outbox_receive = anyio.create_memory_object_stream[
            tuple[Payload, _Operation | None]
        ](math.inf)
        self.pong: anyio.Event | None = None
        self.end: _End | None = None
        self.opened_at = time.monotonic()
        self.delivered = 0

    def post(self, message: Payload, subscribing: _Operation | None = None) -> None:
        if self.end is not None:
            return
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.outbox_send.send_nowait((message, subscribing))

    def finish(self, error: BaseException | None, *, fatal: bool = False) -> None:
        if self.end is None:
            self.end = _End(error, fatal, time.monotonic() - self.opened_at, self.delivered > 0)
        self.scope.cancel()


def _http_url(url: str) -> str:
    """httpx speaks http(s) only: the upgrade request for ``ws://`` goes to ``http://``."""
    if url.startswith("ws://"):
        return "http://" + url.removeprefix("ws://")
    if url.startswith("wss://"):
        return "https://" + url.removeprefix("wss://")
    return url


class EventStream(Generic[T]):
    """One subscription: ``async with`` starts it, ``async for`` reads its events, leaving stops it.

    Entering waits until the subscription was sent on an acknowledged socket, so a refused token or an
    unreachable server raises right there. Errors that end the subscription later (the server's
    ``error`` message, giving up reconnecting) are raised by the iteration, after the events buffered
    before them.
    """

    def __init__(
        self,
        client: SubscriptionClient,
        document: str,
        variables: Mapping[str, Any],
        *,
        field: str,
        parse: Callable[[Payload], T],
        after: int | None,
        buffer: int,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._client = client
        self._args = (document, dict(variables), field, after, buffer)
        self._parse = parse
        self._op: _Operation | None = None
        #: cursor of the last event this stream returned (pass it as ``after`` to resume later)
        self.cursor: int | None = after

    @property
    def overflows(self) -> int:
        """How many times the buffer filled up and the subscription paused to replay later."""
        return self._op.overflows if self._op is not None else 0

    async def __aenter__(self) -> Self:
        if self._op is not None:
            raise RuntimeError("this subscription was already entered")
        op = _Operation(*self._args)
        self._op = op
        self._client._register(op)
        try:
            await op.ready.wait()
        except BaseException:
            self._client._unregister(op)
            raise
        if op.error is not None:
            self._client._unregister(op)
            raise op.error
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._op is not None:
            self._client._unregister(self._op)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        op = self._op
        if op is None:
            raise RuntimeError("use the subscription inside `async with` before iterating it")
        payload: Payload | None
        try:
            payload = await op.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # Closed: the server completed it, the client closed, or the block was left (maybe by
            # another task than this one, which then just stops iterating).
            payload = None
        if payload is None:
            if op.error is not None:
                raise op.error
            raise StopAsyncIteration
        self._client._consumed(op)
        cursor = payload.get("cursor")
        if isinstance(cursor, int) and cursor > (self.cursor or 0):
            self.cursor = cursor
        return self._parse(payload)


class SubscriptionClient:
    """graphql-transport-ws client shared by every subscription of one session.

    Use as ``async with SubscriptionClient(url, token=...) as client:``; its task group owns the
    connection task, which runs only while there are subscriptions (plus ``idle_timeout``).
    """

    def __init__(
        self, url: str, *, token: str | None = None, settings: SubscriptionSettings | None = None
    ) -> None:
        self.url = _http_url(url)
        self._token = token
        self.settings = settings or SubscriptionSettings()
        self._ids = itertools.count(1)
        # Insertion-ordered, so subscriptions are re-sent in the order they were made.
        self._live: dict[_Operation, None] = {}
        self._by_id: dict[str, _Operation] = {}
        self._conn: _Connection | None = None
        self._running = False
        self._closed = False
        self._tg: TaskGroup | None = None
        self._changed: anyio.Event | None = None
        #: how many websockets this client has opened so far (one per connect or reconnect)
        self.connections_opened = 0

    async def __aenter__(self) -> Self:
        self._changed = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._closed = True
        for op in list(self._live):
            self._end_op(op, None)
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(exc_type, exc, tb)

    @property
    def connected(self) -> bool:
        """Whether an acknowledged websocket is open right now."""
        return self._conn is not None

    def subscribe(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        field: str,
        parse: Callable[[Payload], T],
        after: int | None = None,
        buffer: int | None = None,
    ) -> EventStream[T]:
        """A subscription to ``document``, whose root ``field`` yields events with a ``cursor``.

        The document must declare ``$after: Int``; the client sets it when it resubscribes.
        ``parse`` turns one event (the JSON object under ``field``) into what the iteration returns;
        it runs in the consumer's task.
        """
        return EventStream(
            self,
            document,
            variables or {},
            field=field,
            parse=parse,
            after=after,
            buffer=buffer if buffer is not None else self.settings.buffer,
        )

    # -- bookkeeping, called from consumers' tasks and the connection task (never across threads) --

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_changed(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    def _register(self, op: _Operation) -> None:
        if self._closed or self._tg is None:
            op.error = NotConnectedError("the session that owned this subscription is closed")
            op.send.close()
            op.ready.set()
            return
        self._live[op] = None
        self._notify()
        if self._conn is not None:
            self._start(op, self._conn)
        if not self._running:
            self._running = True
            self._tg.start_soon(self._run, name="mikro subscriptions websocket")

    def _start(self, op: _Operation, conn: _Connection) -> None:
        if conn.end is not None:
            return  # this socket is closing: the next one subscribes every live operation
        op_id = str(next(self._ids))
        op.op_id = op_id
        self._by_id[op_id] = op
        conn.post(proto.subscribe(op_id, op.document, op.variables_now()), op)

    def _stop(self, op: _Operation) -> None:
        """Forget ``op``'s server-side operation (telling the server, if connected)."""
        if op.op_id is None:
            return
        self._by_id.pop(op.op_id, None)
        if self._conn is not None:
            self._conn.post(proto.complete(op.op_id))
        op.op_id = None

    def _unregister(self, op: _Operation) -> None:
        self._stop(op)
        self._live.pop(op, None)
        op.send.close()
        op.receive.close()
        if self._changed is not None:
            self._notify()

    def _end_op(self, op: _Operation, error: BaseException | None) -> None:
        """End ``op`` for its consumer: it reads what is buffered, then the end (or ``error``)."""
        if op.op_id is not None:
            self._by_id.pop(op.op_id, None)
            op.op_id = None
        self._live.pop(op, None)
        if error is not None and op.error is None:
            op.error = error
        op.send.close()
        op.ready.set()
        self._notify()

    def _fail_all(self, error: BaseException) -> None:
        for op in list(self._live):
            self._end_op(op, error)

    def _consumed(self, op: _Operation) -> None:
        """A consumer took an event: resume a paused subscription once half its buffer is free."""
        if not op.paused or op not in self._live:
            return
        if op.receive.statistics().current_buffer_used <= op.buffer // 2:
            op.paused = False
            if self._conn is not None:
                self._start(op, self._conn)

    def _push_gap(self, op: _Operation) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            op.send.send_nowait({"cursor": 0, "kind": GAP, "id": None})

    # -- the connection task --

    async def _run(self) -> None:
        try:
            while self._live and not self._closed:
                await self._connect_until_idle()
        finally:
            self._running = False

    async def _connect_until_idle(self) -> None:
        policy = self.settings.reconnect
        retrying = policy.retrying()
        state = tenacity.RetryCallState(retrying, None, (), {})
        while self._live:
            end = await self._connect_once()
            if end.error is None:
                return
            if end.fatal:
                self._fail_all(end.error)
                return
            if end.progressed or end.uptime >= policy.stable_after:
                # A connection that worked for a while is a new start, not one more failed attempt.
                state = tenacity.RetryCallState(retrying, None, (), {})
            state.set_exception((type(end.error), end.error, end.error.__traceback__))
            if retrying.stop(state):
                elapsed = time.monotonic() - state.start_time
                give_up = ConnectError(
                    f"gave up reconnecting the subscription websocket to {self.url} after "
                    f"{state.attempt_number} attempts in {elapsed:.1f} s: {end.error}"
                )
                give_up.__cause__ = end.error
                self._fail_all(give_up)
                return
            await anyio.sleep(retrying.wait(state))
            state.prepare_for_next_attempt()

    async def _connect_once(self) -> _End:
        settings = self.settings
        try:
            async with (
                httpx.AsyncClient(
                    timeout=httpx.Timeout(settings.connect_timeout), verify=tls_context(self.url)
                ) as http,
                aconnect_ws(  # type: ignore[var-annotated]
                    self.url,
                    http,
                    subprotocols=[proto.SUBPROTOCOL],
                    # The protocol's own ping/pong is the keep-alive (see _keepalive).
                    keepalive_ping_interval_seconds=None,
                    max_message_size_bytes=MAX_EVENT_BYTES,
                ) as ws,
            ):
                self.connections_opened += 1
                return await self._serve(ws)
        except WebSocketUpgradeError as exc:
            return _refused_upgrade(exc.response, self.url)
        except httpx.HTTPError as exc:
            error = error_from_httpx(exc, url=self.url, timeout=settings.connect_timeout)
            error.__cause__ = exc
            return _End(error)
        except Exception as exc:
            # Whatever else the websocket stack raised (an ExceptionGroup from httpx-ws's task group,
            # an OSError): this attempt failed, the next may not; the cause stays attached.
            error = ConnectError(f"the subscription websocket to {self.url} failed: {exc!r}")
            error.__cause__ = exc
            return _End(error)

    async def _serve(self, ws: AsyncWebSocketSession) -> _End:
        settings = self.settings
        if ws.subprotocol != proto.SUBPROTOCOL:
            return _End(
                ProtocolError(f"the server did not accept the {proto.SUBPROTOCOL} subprotocol"), fatal=True
            )
        try:
            await ws.send_json(proto.connection_init(self._token))
            with anyio.fail_after(settings.ack_timeout):
                await _await_ack(ws)
        except _SocketEndedError as exc:
            return exc.end
        except ProtocolError as exc:
            await _close_quietly(ws, proto.CloseCode.BAD_REQUEST)
            return _End(exc, fatal=True)
        except builtins.TimeoutError:
            return _End(TimeoutError(f"no connection_ack from {self.url} within {settings.ack_timeout} s"))
        except (HTTPXWSException, wsproto.utilities.LocalProtocolError) as exc:
            error = ConnectError(f"the subscription websocket to {self.url} closed during the handshake")
            error.__cause__ = exc
            return _End(error)

        conn: _Connection | None = None
        try:
            async with anyio.create_task_group() as tg:
                conn = _Connection(ws, tg.cancel_scope)
                self._conn = conn
                self._on_connected(conn)
                tg.start_soon(self._read, conn)
                tg.start_soon(self._write, conn)
                tg.start_soon(self._keepalive, conn)
                tg.start_soon(self._watch_idle, conn)
        finally:
            if conn is not None:
                self._on_disconnected(conn)
        end = (conn.end if conn is not None else None) or _End(
            ConnectError("the subscription websocket ended")
        )
        if end.fatal and isinstance(end.error, ProtocolError) and end.error.close_code is None:
            await _close_quietly(ws, proto.CloseCode.BAD_REQUEST)
        return end

    def _on_connected(self, conn: _Connection) -> None:
        for op in list(self._live):
            if op.paused:
                continue
            if op.subscribed_before and op.cursor is None:
                # It never received an event, so there is no cursor to replay from.
                self._push_gap(op)
            self._start(op, conn)

    def _on_disconnected(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None
        for op in self._by_id.values():
            op.op_id = None
        self._by_id.clear()
        conn.outbox_send.close()

    async def _read(self, conn: _Connection) -> None:
        while True:
            try:
                message = await _receive(conn.ws)
                self._dispatch(conn, message)
            except _SocketEndedError as exc:
                conn.finish(exc.end.error, fatal=exc.end.fatal)
                return
            except ProtocolError as exc:
                conn.finish(exc, fatal=True)
                return

    async def _write(self, conn: _Connection) -> None:
        async with conn.outbox_receive:
            async for message, subscribing in conn.outbox_receive:
                try:
                    await conn.ws.send_json(message)
                except (HTTPXWSException, wsproto.utilities.LocalProtocolError, OSError) as exc:
                    error = ConnectError("sending on the subscription websocket failed")
                    error.__cause__ = exc
                    conn.finish(error)
                    return
                if subscribing is not None:
                    subscribing.subscribed_before = True
                    subscribing.ready.set()

    async def _keepalive(self, conn: _Connection) -> None:
        interval = self.settings.ping_interval
        if interval is None:
            return
        while True:
            await anyio.sleep(interval)
            pong = conn.pong = anyio.Event()
            conn.post(proto.ping())
            with anyio.move_on_after(self.settings.pong_timeout):
                await pong.wait()
            if not pong.is_set():
                conn.finish(
                    TimeoutError(f"no pong within {self.settings.pong_timeout} s: the socket is dead")
                )
                return

    async def _watch_idle(self, conn: _Connection) -> None:
        while True:
            if self._live:
                await self._wait_changed()
                continue
            with anyio.move_on_after(self.settings.idle_timeout):
                while not self._live:
                    await self._wait_changed()
            if not self._live:
                conn.finish(None)
                return

    def _dispatch(self, conn: _Connection, message: Payload) -> None:
        kind = message.get("type")
        if kind == proto.MessageType.NEXT:
            self._on_next(conn, message)
        elif kind == proto.MessageType.ERROR:
            op = self._by_id.get(str(message.get("id")))
            if op is not None:
                payload = message.get("payload")
                errors = payload if isinstance(payload, list) else [payload or {}]
                self._end_op(op, error_from_graphql(errors))
        elif kind == proto.MessageType.COMPLETE:
            op = self._by_id.get(str(message.get("id")))
            if op is not None:
                self._end_op(op, None)
        elif kind == proto.MessageType.PING:
            conn.post(proto.pong())
        elif kind == proto.MessageType.PONG:
            if conn.pong is not None:
                conn.pong.set()
        else:
            raise ProtocolError(f"unexpected graphql-transport-ws message type {kind!r}")

    def _on_next(self, conn: _Connection, message: Payload) -> None:
        op = self._by_id.get(str(message.get("id")))
        if op is None:
            return  # a late event of an operation this client already completed
        payload = message.get("payload")
        data = payload.get("data") if isinstance(payload, dict) else None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        event = data.get(op.field) if isinstance(data, dict) else None
        if errors or not isinstance(event, dict):
            error: MikroError = (
                error_from_graphql(errors)
                if errors
                else ProtocolError(f"a `next` message without data for {op.field!r}")
            )
            self._stop(op)
            self._end_op(op, error)
            return
        cursor = event.get("cursor")
        is_gap = event.get("kind") == GAP
        if isinstance(cursor, int) and op.cursor is not None and cursor <= op.cursor and not is_gap:
            return  # already buffered: replay and live stream overlapped
        try:
            op.send.send_nowait(event)
        except anyio.WouldBlock:
            # Pause rather than wait or drop: the server replays from the last buffered cursor later.
            op.overflows += 1
            op.paused = True
            self._stop(op)
            return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._stop(op)
            self._live.pop(op, None)
            return
        conn.delivered += 1
        if isinstance(cursor, int):
            op.cursor = cursor if op.cursor is None else max(op.cursor, cursor)


async def _receive(ws: AsyncWebSocketSession) -> Payload:
    """The next protocol message; ``_SocketEndedError`` says how the socket ended if it did."""
    try:
        message = await ws.receive_json()
    except WebSocketDisconnect as exc:
        error = proto.error_for_close(exc.code, exc.reason)
        raise _SocketEndedError(_End(error, proto.is_fatal_close(exc.code))) from exc
    except WebSocketInvalidTypeReceived as exc:
        raise ProtocolError(
            "the server sent a binary or control frame instead of a JSON text message"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("the server sent a message that is not JSON") from exc
    except HTTPXWSException as exc:
        error = ConnectError("the subscription websocket connection was lost")
        error.__cause__ = exc
        raise _SocketEndedError(_End(error)) from exc
    if not isinstance(message, dict):
        raise ProtocolError("the server sent a JSON message that is not an object")
    return message


async def _await_ack(ws: AsyncWebSocketSession) -> None:
    """Read until ``connection_ack``, answering pings (the protocol allows them at any time)."""
    while True:
        message = await _receive(ws)
        kind = message.get("type")
        if kind == proto.MessageType.CONNECTION_ACK:
            return
        if kind != proto.MessageType.PING:
            raise ProtocolError(f"expected connection_ack, the server sent {kind!r}")
        await ws.send_json(proto.pong())


async def _close_quietly(ws: AsyncWebSocketSession, code: int) -> None:
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(1.0),
        contextlib.suppress(HTTPXWSException, wsproto.utilities.LocalProtocolError, OSError),
    ):
        await ws.close(code)


def _refused_upgrade(response: httpx.Response, url: str) -> _End:
    status = response.status_code
    if status in (401, 403):
        return _End(
            AuthenticationError(f"the server refused the websocket (HTTP {status})", code="UNAUTHENTICATED"),
            fatal=True,
        )
    error = HTTPStatusError(
        f"the server refused the websocket upgrade at {url} (HTTP {status})", status_code=status
    )
    return _End(error, fatal=status < 500 and status != 429)
