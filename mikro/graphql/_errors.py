"""Turn HTTP responses and httpx failures into mikro's exceptions, in one place.

Every error that leaves the transport is a :class:`mikro.MikroError`; the original exception stays
reachable as ``__cause__``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pydantic_core

from mikro._exceptions import (
    AuthenticationError,
    ConflictError,
    ConnectError,
    GraphQLError,
    HTTPStatusError,
    MikroError,
    NotFoundError,
    PermissionDeniedError,
    TimeoutError,
    TransportError,
    ValidationError,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryableStatusError",
    "error_from_graphql",
    "error_from_httpx",
    "is_retryable",
    "result_from_response",
]

#: Statuses a proxy or an overloaded server answers with, after which the same request may succeed.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_CODE_TO_ERROR: dict[str, type[GraphQLError]] = {
    "UNAUTHENTICATED": AuthenticationError,
    "FORBIDDEN": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "CONFLICT": ConflictError,
    "BAD_USER_INPUT": ValidationError,
    "GRAPHQL_VALIDATION_FAILED": ValidationError,
    "GRAPHQL_PARSE_FAILED": ValidationError,
}


class RetryableStatusError(HTTPStatusError):
    """A 429/502/503/504 answer; ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def error_from_graphql(errors: Sequence[Mapping[str, Any]], *, status_code: int = 200) -> GraphQLError:
    """The typed error for a GraphQL ``errors`` list (described by its first entry)."""
    first = errors[0] if errors else {}
    message = str(first.get("message", "unknown GraphQL error"))
    extensions = first.get("extensions") or {}
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    path = first.get("path")
    cls: type[GraphQLError] | None = _CODE_TO_ERROR.get(str(code), GraphQLError) if code else None
    if cls is None:
        if status_code == 401:
            cls = AuthenticationError
        elif status_code == 403:
            cls = PermissionDeniedError
        elif not path and "locations" in first:
            # An error with source locations but no execution path was raised while parsing or
            # validating the document: the request itself is invalid, nothing was executed.
            cls = ValidationError
        else:
            cls = GraphQLError
    return cls(message, code=str(code) if code else None, path=path, errors=list(errors))


def _json_body(response: httpx.Response) -> Mapping[str, Any] | None:
    # pydantic-core's parser (jiter): faster than the stdlib on long answers, and unlike orjson it
    # keeps integers beyond 64 bits exact.
    try:
        body = pydantic_core.from_json(response.content)
    except ValueError:
        return None
    if isinstance(body, Mapping) and ("data" in body or "errors" in body):
        return body
    return None


def result_from_response(response: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a GraphQL response, or the mapped error it carries."""
    status = response.status_code
    body = _json_body(response)
    if status in RETRYABLE_STATUSES and (body is None or not body.get("errors")):
        raise RetryableStatusError(
            f"HTTP {status} from {response.request.url}",
            status_code=status,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if body is None:
        if status == 401:
            raise AuthenticationError(
                f"HTTP 401 from {response.request.url}: the token was refused", code="UNAUTHENTICATED"
            )
        if status == 404:
            raise HTTPStatusError(
                f"HTTP 404 from {response.request.url}: no GraphQL endpoint there (a mikro server answers "
                "at its base URL + /graphql, e.g. http://127.0.0.1:8080/graphql)",
                status_code=status,
            )
        if status >= 400 or status < 200:
            raise HTTPStatusError(f"HTTP {status} from {response.request.url}", status_code=status)
        raise TransportError(f"HTTP {status} from {response.request.url} without a GraphQL body")
    errors = body.get("errors")
    if errors:
        raise error_from_graphql(errors, status_code=status)
    data = body.get("data")
    if not isinstance(data, dict):
        raise GraphQLError("the server answered without data and without errors")
    return data


def error_from_httpx(exc: httpx.HTTPError, *, url: str, timeout: float | None) -> MikroError:
    """The mikro error for an httpx failure that produced no response."""
    if isinstance(exc, httpx.ConnectTimeout):
        # The server never accepted the connection: for a user that is "unreachable", not "slow".
        return ConnectError(f"could not connect to {url} within {timeout} s")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"could not connect to {url}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(f"no answer from {url} within {timeout} s ({type(exc).__name__})")
    return TransportError(f"request to {url} failed: {type(exc).__name__}: {exc}")


def is_retryable(exc: BaseException) -> bool:
    """Whether the same request may succeed when sent again (the server did not act on it, or says so)."""
    if isinstance(exc, RetryableStatusError):
        return True
    cause = exc.__cause__
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    # A kept-alive connection the server had closed: the request may not have reached the server.
    return isinstance(cause, httpx.RemoteProtocolError)
