"""The per-request (or per-websocket) context handed to every resolver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from strawberry.types import Info

from mikro.server._auth import AuthUser
from mikro.server._errors import Unauthenticated

if TYPE_CHECKING:
    from mikro.server._loaders import Loaders
    from mikro.server._services import Services

__all__ = ["Context", "context_of"]


@dataclass
class Context:
    services: Services
    loaders: Loaders
    user: AuthUser | None = None
    request: Any = None
    response: Any = None
    # Filled by strawberry from the websocket's connection_init payload.
    connection_params: dict[str, Any] | None = field(default=None)

    def require_user(self) -> AuthUser:
        if self.user is None:
            raise Unauthenticated("missing or invalid token")
        return self.user


def context_of(info: Info[Any, Any]) -> Context:
    return cast(Context, info.context)
