"""mikro: an async-first client (asyncio and trio) for microscopy data on a GraphQL server."""

from mikro._exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    GrantError,
    GraphQLError,
    HTTPStatusError,
    MikroError,
    NotConnectedError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    StorageError,
    TimeoutError,
    TransportError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "GrantError",
    "GraphQLError",
    "HTTPStatusError",
    "MikroError",
    "NotConnectedError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "StorageError",
    "TimeoutError",
    "TransportError",
    "ValidationError",
    "__version__",
]
