"""Every error mikro raises, mapped once at the boundary where a lower-level error enters mikro.

Hierarchy::

    MikroError
    ├── ConfigurationError        no server URL / token found, or a bad config file
    ├── NotConnectedError         a module-level function used outside any session
    ├── DeadlockError             a blocking (sync) call made from the event loop it would wait on
    ├── NotFetchedError           a model's relation that the call which made the model did not fetch
    ├── TransportError            the request did not get a GraphQL answer
    │   ├── ConnectError          the server could not be reached
    │   ├── TimeoutError          no answer within the configured timeout
    │   ├── HTTPStatusError       an HTTP error status with no GraphQL body
    │   └── ProtocolError         the websocket peer broke graphql-transport-ws
    ├── GraphQLError              the server answered with errors (message, path, code)
    │   ├── AuthenticationError   missing, unknown or expired token
    │   ├── PermissionDeniedError the object belongs to someone else
    │   ├── NotFoundError         no object with that id
    │   ├── ConflictError         the object's state refuses it (a non-empty dataset without recursive=True)
    │   └── ValidationError       bad input, found by the server or by the client before sending
    └── StorageError              pixel or table I/O on the object store failed
        └── GrantError            a storage grant could not be obtained, expired or was revoked

``mikro.TimeoutError`` deliberately shadows the builtin inside this module only; import it as
``mikro.TimeoutError`` (it also subclasses the builtin ``TimeoutError`` so ``except TimeoutError`` works).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "DeadlockError",
    "GrantError",
    "GraphQLError",
    "HTTPStatusError",
    "MikroError",
    "NotConnectedError",
    "NotFetchedError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "StorageError",
    "TimeoutError",
    "TransportError",
    "ValidationError",
]


class MikroError(Exception):
    """Base class of every error raised by mikro."""


class ConfigurationError(MikroError):
    """mikro could not find how to reach the server (URL, token) or the configuration is invalid."""


class NotConnectedError(MikroError):
    """A module-level function (``aget_representation`` ...) was called outside any session."""


class DeadlockError(MikroError):
    """A sync-facade call was made from the thread running that session's event loop.

    The call would wait for the loop it is blocking, forever. Inside async code, ``await`` the async
    session's method instead (``m.async_session`` or ``mikro.aget_*``).
    """


class NotFetchedError(MikroError):
    """A relation of a model that the call which made the model did not fetch (it is not absent).

    The message names the call that fetches it (``m.get_dataset(id)`` ...).
    """


class TransportError(MikroError):
    """The request did not produce a GraphQL answer."""


class ConnectError(TransportError):
    """The server could not be reached."""


class TimeoutError(TransportError, builtins.TimeoutError):
    """The server did not answer within the configured timeout."""


class HTTPStatusError(TransportError):
    """The server answered with an HTTP error status and no GraphQL body."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ProtocolError(TransportError):
    """The websocket peer did not follow the ``graphql-transport-ws`` protocol."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class GraphQLError(MikroError):
    """The server answered with one or more GraphQL errors; the first one is described here."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        path: Sequence[str | int] | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = list(path) if path is not None else None
        self.errors = list(errors)

    def __str__(self) -> str:
        where = f" at {'.'.join(map(str, self.path))}" if self.path else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{self.message}{code}{where}"


class AuthenticationError(GraphQLError):
    """The token is missing, unknown or expired."""


class PermissionDeniedError(GraphQLError):
    """The object exists but belongs to another user."""


class NotFoundError(GraphQLError):
    """No object with that id exists."""


class ConflictError(GraphQLError):
    """The object's state refuses the change (``CONFLICT``): e.g. deleting a dataset that is not empty."""


class ValidationError(GraphQLError):
    """The input is invalid (found by the server, or by the client before anything was sent)."""


class StorageError(MikroError):
    """Reading or writing pixels or tables on the object store failed."""


class GrantError(StorageError):
    """A storage grant could not be obtained, has expired or was revoked."""
