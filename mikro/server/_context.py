"""The per-request (or per-websocket) context handed to every resolver."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from mikro.server._auth import AuthUser
from mikro.server._errors import Unauthenticated

if TYPE_CHECKING:
    from mikro.server._database import SharedReader, Statement
    from mikro.server._loaders import Loaders
    from mikro.server._services import Services

__all__ = ["Context", "context_from", "context_of"]


@dataclass
class Context:
    services: Services
    loaders: Loaders
    user: AuthUser | None = None
    request: Any = None
    response: Any = None
    # Filled by strawberry from the websocket's connection_init payload.
    connection_params: dict[str, Any] | None = field(default=None)
    # The HTTP request's shared read session (None over websockets).
    reader: SharedReader | None = None
    # The websocket's token, checked again when a subscription starts.
    token: str | None = None

    def require_user(self) -> AuthUser:
        if self.user is None:
            raise Unauthenticated("missing or invalid token")
        return self.user

    async def current_user(self) -> AuthUser:
        """The caller, its token checked again now if this is a long-lived websocket: a subscription
        started after a rotation or deletion must not replay what its user may no longer see."""
        user = self.require_user()
        if self.token is not None and await self.services.auth.authenticate(self.token) is None:
            raise Unauthenticated("the token of this connection is no longer valid")
        return user

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for reading: the request's shared one over HTTP, a fresh one otherwise.

        Inside the block, only run queries: do not await a DataLoader there (it reads through the
        same shared session and would wait for this block to end).
        """
        if self.reader is not None:
            return self.reader.session()
        return self.services.db.read()

    async def rows(self, statements: Sequence[Statement]) -> list[Sequence[Any]]:
        """The rows of each of ``statements``, read together (see `Database.rows`)."""
        return await (self.services.db if self.reader is None else self.reader).rows(statements)


def context_of(info: Info[Any, Any]) -> Context:
    return context_from(info.root_value, info.context)


def context_from(root_value: Any, context: Any) -> Context:
    """The context fields are resolved with, from the operation's root value and context."""
    # A subscription event is the root value its fields are resolved from, and brings the context
    # they are resolved with: its websocket's, with loaders of the event's own (see _subscription.py).
    event_context = getattr(root_value, "_context", None)
    return cast(Context, context if event_context is None else event_context)
