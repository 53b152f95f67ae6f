"""The ASGI application: ``/graphql`` over HTTP POST and websockets (graphql-transport-ws)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from mikro.server._auth import AuthUser, token_from_header
from mikro.server._context import Context
from mikro.server._database import SharedReader
from mikro.server._idempotency import graphql_error_response, run_idempotent
from mikro.server._loaders import Loaders
from mikro.server._pubsub import PubSub
from mikro.server._schema import build_schema
from mikro.server._services import Services
from mikro.server._settings import Settings

__all__ = ["create_app"]

_USER_KEY = "mikro.user"
_READER_KEY = "mikro.reader"


class _GraphQLView(GraphQL[Context, None]):
    def __init__(self, services: Services) -> None:
        super().__init__(
            build_schema(),
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        if isinstance(request, WebSocket):
            # The context of a websocket lives as long as the connection: no caching loaders.
            return Context(
                services=self.services,
                loaders=Loaders(self.services.db.read, cache=False),
                request=request,
                response=response,
                connection_params={},
            )
        reader: SharedReader = request.scope[_READER_KEY]
        user: AuthUser = request.scope[_USER_KEY]
        return Context(
            services=self.services,
            loaders=Loaders(reader.session, caller=user),
            user=user,
            request=request,
            response=response,
            reader=reader,
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
        return cast(UnsetType, UNSET)


class _HttpGate:
    """Authenticates every HTTP request before GraphQL sees it (401 with a GraphQL-shaped body)."""

    def __init__(self, services: Services, view: _GraphQLView) -> None:
        self.services = services
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        user = await self.services.auth.authenticate(token_from_header(headers.get("authorization")))
        if user is None:
            await graphql_error_response(send, 401, "UNAUTHENTICATED", "missing or invalid bearer token")
            return
        scope[_USER_KEY] = user
        # One read session for the whole request (its resolvers and DataLoaders), not one per read.
        async with self.services.db.shared_reader() as reader:
            scope[_READER_KEY] = reader
            key = headers.get("idempotency-key")
            if key is not None:
                await run_idempotent(self.services, user, key, self.view, scope, receive, send)
            else:
                await self.view(scope, receive, send)


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
    view = _GraphQLView(services)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with services:
            yield

    gate = _HttpGate(services, view)
    routes: list[BaseRoute] = [Route("/graphql", gate, methods=["POST"]), WebSocketRoute("/graphql", view)]
    if services.settings.bench_floor:
        from mikro.server._bench_floor import floor_routes

        routes += floor_routes(services)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
    )
    app.state.services = services
    return _App(app, gate)
