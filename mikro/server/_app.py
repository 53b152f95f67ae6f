"""The ASGI application: ``/graphql`` over HTTP POST and websockets (graphql-transport-ws)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio
import strawberry
from graphql import OperationType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from mikro.server._auth import AuthUser, token_from_header
from mikro.server._context import Context
from mikro.server._database import SharedReader
from mikro.server._direct import DirectQueries, encode_answer
from mikro.server._idempotency import graphql_error_response, run_idempotent
from mikro.server._limits import LIMIT_CODE, QueryCache, limit_message
from mikro.server._loaders import Loaders
from mikro.server._pubsub import PubSub
from mikro.server._request_body import (
    BadBody,
    Disconnected,
    InputBounds,
    decode_json,
    predecoded_body,
    read_body,
    replay_then_watch,
    reset_predecoded,
    set_predecoded,
    take_predecoded,
)
from mikro.server._schema import build_schema
from mikro.server._services import Services
from mikro.server._settings import Settings
from mikro.server._work_queues import WorkQueues

__all__ = ["create_app"]

_USER_KEY = "mikro.user"
_READER_KEY = "mikro.reader"
_WS_TOKEN_KEY = "mikro.ws_token"
# Seconds between two checks of a websocket's token: a rotated or deleted user's sockets close within
# this (plus auth_cache_ttl where the token cache cannot see the change, see mikro/server/_auth.py).
WS_TOKEN_RECHECK = 1.0


class _RequestAdapter(GraphQL.request_adapter_class):  # type: ignore[misc,valid-type]
    """strawberry's request adapter, handed the body the gate read and decoded (see
    ``predecoded_body``) instead of reading a copy of it from the replayed request."""

    async def get_body(self) -> bytes:
        body = predecoded_body()
        return await super().get_body() if body is None else body


class _GraphQLView(GraphQL[Context, None]):
    request_adapter_class = _RequestAdapter

    def __init__(self, services: Services, schema: strawberry.Schema) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.services = services

    def encode_json(self, data: object) -> str:
        # A str, not bytes: strawberry sends bytes over a websocket as a binary frame, which
        # graphql-transport-ws is not.
        return encode_answer(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        # The gate has decoded this body already (off the loop when large).
        found, payload = take_predecoded(data)
        return payload if found else super().decode_json(data)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        if isinstance(request, WebSocket):
            # The context of a websocket lives as long as the connection: no caching loaders (each
            # subscription event brings caching ones of its own).
            return Context(
                services=self.services,
                loaders=Loaders(self.services.db, cache=False),
                request=request,
                response=response,
                connection_params={},
            )
        return _http_context(
            self.services, request.scope[_USER_KEY], request.scope[_READER_KEY], request, response
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        token = params.get("token")
        if not isinstance(token, str):
            header = params.get("Authorization") or params.get("authorization")
            token = token_from_header(header) if isinstance(header, str) else None
        if token is None and context.request is not None:
            token = token_from_header(context.request.headers.get("authorization"))
        user = await self.services.auth.authenticate(token)
        if user is None:
            # graphql-transport-ws: the server closes with 4403 Forbidden.
            raise ConnectionRejectionError()
        context.user = user
        context.token = token
        if context.request is not None:
            context.request.scope[_WS_TOKEN_KEY].token = token
        return cast(UnsetType, UNSET)


def _http_context(
    services: Services, user: AuthUser, reader: SharedReader, request: Any = None, response: Any = None
) -> Context:
    """The context of an HTTP request's resolvers."""
    return Context(
        services=services,
        loaders=Loaders(reader, caller=user),
        user=user,
        request=request,
        response=response,
        reader=reader,
    )


class _HttpGate:
    """Authenticates every HTTP request before GraphQL sees it (401 with a GraphQL-shaped body), reads
    its body within ``max_request_bytes``, and runs it within ``request_timeout`` for as long as the
    client stays connected."""

    def __init__(
        self,
        services: Services,
        view: _GraphQLView,
        cache: QueryCache,
        queues: WorkQueues,
        direct: DirectQueries,
    ) -> None:
        self.services = services
        self.view = view
        self.cache = cache
        self.queues = queues
        self.direct = direct
        self.bounds = InputBounds(services.settings.max_input_values, services.settings.max_input_depth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _Headers.of(scope)
        user = await self.services.auth.authenticate(token_from_header(headers.authorization))
        if user is None:
            await graphql_error_response(send, 401, "UNAUTHENTICATED", "missing or invalid bearer token")
            return
        with self.queues.owned_by(user.id):
            await self._serve(user, headers, scope, receive, send)

    async def _serve(
        self, user: AuthUser, headers: _Headers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        settings = self.services.settings
        try:
            body = await read_body(receive, settings.max_request_bytes, headers.content_length)
            payload = await decode_json(body, self.bounds) if headers.is_json else None
        except Disconnected:
            return
        except BadBody as exc:
            await graphql_error_response(send, exc.status, LIMIT_CODE, str(exc))
            return
        scope[_USER_KEY] = user
        response = _GraphQLShaped(send)

        # Only a body the gate decoded as JSON is handed on decoded (strawberry decodes only JSON bodies).
        token = set_predecoded(body, payload) if headers.is_json else None
        try:
            with anyio.CancelScope() as left:
                replay, watch = replay_then_watch(body, receive, left)
                # A plain asyncio task, not a task group: the server runs on asyncio (uvicorn), and a
                # task group's start and wait cost every request about 0.1 ms of the loop's CPU. The
                # watcher only waits for the client's disconnect, so it is cancelled, not awaited.
                watcher = asyncio.get_running_loop().create_task(watch())
                try:
                    with anyio.move_on_after(settings.request_timeout) as deadline:
                        await self._run(user, headers, body, payload, scope, replay, response.send)
                finally:
                    watcher.cancel()
        finally:
            if token is not None:
                reset_predecoded(token)
        if deadline.cancelled_caught and not response.started:
            message = f"the request ran longer than {settings.request_timeout:g} s"
            await graphql_error_response(send, 200, LIMIT_CODE, limit_message("request_timeout", message))

    async def _run(
        self,
        user: AuthUser,
        headers: _Headers,
        body: bytes,
        payload: object,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        # One read session for the whole request (its resolvers and DataLoaders), not one per read.
        async with self.services.db.shared_reader() as reader:
            scope[_READER_KEY] = reader
            key = headers.idempotency_key
            if key is not None:
                mutation = await self._is_mutation(payload)
                view = self.view
                await run_idempotent(self.services, user, key, mutation, body, view, scope, receive, send)
            elif (query := self.direct.take(headers.content_type, payload)) is not None:
                await self.direct.answer(query, _http_context(self.services, user, reader), send)
            else:
                await self.view(scope, receive, send)

    async def _is_mutation(self, payload: object) -> bool:
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return False
        name = payload.get("operationName")
        kind = await self.cache.operation_type(payload["query"], name if isinstance(name, str) else None)
        return kind == OperationType.MUTATION


class _GraphQLShaped:
    """Passes a response on, except that a plain-text error (strawberry's own HTTP 400s: a body that
    is not a GraphQL request, an unknown operation name ...) is sent as a GraphQL error with a code,
    so that clients parse one format."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self._plain_status: int | None = None
        self._plain: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            content_type = dict(message.get("headers") or []).get(b"content-type", b"")
            if message["status"] >= 400 and b"json" not in content_type:
                self._plain_status = int(message["status"])
                return
        elif self._plain_status is not None and message["type"] == "http.response.body":
            self._plain.append(message.get("body", b""))
            if not message.get("more_body", False):
                text = b"".join(self._plain).decode("utf-8", "replace")
                await graphql_error_response(self._send, self._plain_status, "BAD_USER_INPUT", text)
            return
        await self._send(message)


@dataclass(frozen=True, slots=True)
class _Headers:
    """The request headers the gate reads, found in one pass (the first of each name, as Starlette's
    ``Headers.get`` finds it, which scanned and decoded them all once per name)."""

    authorization: str | None = None
    content_length: str | None = None
    content_type: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, scope: Scope) -> _Headers:
        found: dict[str, str] = {}
        for name, value in scope["headers"]:
            field = _READ_HEADERS.get(name)
            if field is not None and field not in found:
                found[field] = value.decode("latin-1")
        return cls(**found)

    @property
    def is_json(self) -> bool:
        return "json" in (self.content_type or "")


_READ_HEADERS = {
    b"authorization": "authorization",
    b"content-length": "content_length",
    b"content-type": "content_type",
    b"idempotency-key": "idempotency_key",
}


@dataclass
class _WsToken:
    token: str | None = None


class _WsGate:
    """Runs a websocket beside a watcher that re-checks its token and closes it with 4403 once the
    token no longer authenticates (rotated, or its user deleted)."""

    def __init__(self, services: Services, view: _GraphQLView, queues: WorkQueues) -> None:
        self.services = services
        self.view = view
        self.queues = queues

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Its user is known only once the socket is open: its large documents queue by client address.
        client = scope.get("client")
        with self.queues.owned_by(("websocket", client[0] if client else None)):
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        holder = scope[_WS_TOKEN_KEY] = _WsToken()
        closed = False

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        async def watch(cancel: anyio.CancelScope) -> None:
            nonlocal closed
            while True:
                await anyio.sleep(WS_TOKEN_RECHECK)
                if holder.token is not None and await self.services.auth.authenticate(holder.token) is None:
                    closed = True
                    await send({"type": "websocket.close", "code": 4403, "reason": "Forbidden"})
                    cancel.cancel()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            await self.view(scope, receive, guarded_send)
            tg.cancel_scope.cancel()


class _App:
    """``POST /graphql`` straight to the gate, everything else (websockets, lifespan, other paths)
    through Starlette: its router and middleware cost more per request than a trivial query itself."""

    def __init__(self, starlette: Starlette, gate: _HttpGate) -> None:
        self.starlette = starlette
        self.gate = gate
        self.state = starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/graphql" and scope["method"] == "POST":
            await self.gate(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


def create_app(settings: Settings | None = None, *, pubsub: PubSub | None = None) -> _App:
    """The server as an ASGI app; its lifespan opens the database, object store and pub/sub."""
    services = Services(settings or Settings(), pubsub)
    cache = QueryCache(services.settings.query_cache_bytes, services.settings.max_query_tokens)
    schema = build_schema(services.settings, cache)
    view = _GraphQLView(services, schema)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with services:
            yield

    queues = WorkQueues()
    gate = _HttpGate(services, view, cache, queues, DirectQueries(schema, cache, services.settings))
    routes: list[BaseRoute] = [
        Route("/graphql", gate, methods=["POST"]),
        WebSocketRoute("/graphql", _WsGate(services, view, queues)),
    ]
    if services.settings.bench_floor:
        from mikro.server._bench_floor import floor_routes

        routes += floor_routes(services)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
    )
    app.state.services = services
    return _App(app, gate)
